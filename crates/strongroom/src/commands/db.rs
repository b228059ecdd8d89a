//! `strongroom db setup` and `strongroom db migrate`.

use anyhow::{Context, Result};
use strongroom_store_postgres::{Names, Store, StoreLogin};

use crate::cli::DbCommand;
use crate::datadir::write_private;

/// Runs a `db` command.
pub async fn run(cmd: DbCommand) -> Result<()> {
    match cmd {
        DbCommand::Setup {
            db,
            out,
            reset_passwords,
        } => {
            let names = Names::new(&db.prefix)?;
            let logins = strongroom_store_postgres::setup(&db.admin_url, &names, reset_passwords)
                .await
                .context("database setup failed")?;
            let settings = settings_toml(&names, &logins);
            match out {
                Some(path) => {
                    write_private(&path, settings.as_bytes())?;
                    eprintln!(
                        "Schemas, roles and grants are in place. Storage settings (with passwords) written to {} (mode 0600).",
                        path.display()
                    );
                }
                None => {
                    eprintln!(
                        "Schemas, roles and grants are in place. Storage settings for the server's configuration:\n"
                    );
                    print!("{settings}");
                }
            }
            Ok(())
        }
        DbCommand::Migrate { db } => {
            let names = Names::new(&db.prefix)?;
            let done = strongroom_store_postgres::migrate(&db.admin_url, &names)
                .await
                .context("migration failed")?;
            for (store, before, after) in done {
                let schema = names.schema(store);
                if before == after {
                    println!("{schema}: at version {after}, nothing to do");
                } else {
                    println!("{schema}: migrated from version {before} to {after}");
                }
            }
            Ok(())
        }
    }
}

/// The `[storage]` section for a server using these logins.
fn settings_toml(names: &Names, logins: &[StoreLogin]) -> String {
    let mut out = String::from("[storage]\nbackend = \"postgres\"\n\n[storage.postgres]\n");
    out.push_str(&format!("prefix = \"{}\"\n", names.prefix()));
    for login in logins {
        let key = match login.store {
            Store::Central => "central_url",
            Store::Vault => "vault_url",
            Store::Archive => "archive_url",
            Store::Audit => "audit_url",
        };
        if login.password.is_none() {
            out.push_str(&format!(
                "# {}: role existed, password unchanged (not shown); --reset-passwords issues a new one\n",
                login.role
            ));
        }
        out.push_str(&format!("{key} = \"{}\"\n", login.url));
    }
    out
}
