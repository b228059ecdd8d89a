//! `strongroom audit verify`: checks the chain offline.

use anyhow::{Context, Result, bail};
use strongroom_crypto::shamir::Share;
use strongroom_store::sqlite::SqliteStores;
use strongroom_vault::{VaultIdentity, audit_key};

use crate::cli::AuditCommand;
use crate::commands::read_line;
use crate::datadir::DataDir;

/// Runs an audit command. Returns the process exit code.
pub async fn run(cmd: AuditCommand) -> Result<i32> {
    match cmd {
        AuditCommand::Verify { data_dir } => {
            let dir = DataDir::new(&data_dir);
            dir.check_permissions()?;
            let stores = SqliteStores::open(&dir.root).context("could not open the stores")?;
            let set = stores.store_set();
            let identity = VaultIdentity::load(&set.vault)
                .await?
                .with_context(|| format!("{} holds no initialised vault", dir.root.display()))?;
            let root = if identity.seal_method == "dev-key-file" {
                dir.read_dev_key()?.context("the dev key file is missing")?
            } else {
                eprintln!(
                    "Verifying needs the root key: give {} key shares, one per line.",
                    identity.threshold
                );
                let mut shares: Vec<Share> = Vec::new();
                while shares.len() < usize::from(identity.threshold) {
                    let Some(line) = read_line(&format!(
                        "Key share ({} of {}): ",
                        shares.len() + 1,
                        identity.threshold
                    ))?
                    else {
                        bail!(
                            "stdin ended after {} of {} shares",
                            shares.len(),
                            identity.threshold
                        );
                    };
                    if line.trim().is_empty() {
                        continue;
                    }
                    shares.push(identity.parse_share(&line)?);
                }
                identity.combine(&shares)?
            };
            let key = audit_key(&root)?;
            drop(root);
            let report = strongroom_audit::verify(&set.audit, &key).await?;
            match report.first_bad {
                None => {
                    println!(
                        "audit log intact: {} records verified (last seq {})",
                        report.verified, report.last_seq
                    );
                    Ok(0)
                }
                Some((seq, problem)) => {
                    println!(
                        "audit log BROKEN at record {seq}: {problem}. {} records before it verified.",
                        report.verified
                    );
                    Ok(1)
                }
            }
        }
    }
}
