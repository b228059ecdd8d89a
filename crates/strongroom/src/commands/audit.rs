//! `strongroom audit verify` checks the chain offline; `strongroom audit
//! export` takes a time range of records from a running server.

use anyhow::{Context, Result, bail};
use std::sync::Arc;
use strongroom_crypto::shamir::Share;

use strongroom_store::sqlite::{SqliteAuditStore, SqliteRecordStore, files};
use strongroom_store::{AuditStore, RecordStore};
use strongroom_vault::{VaultIdentity, audit_key};

use crate::cli::AuditCommand;
use crate::commands::read_line;
use crate::config::ServerConfig;
use crate::datadir::DataDir;
use crate::storage::Backend;

/// Runs an audit command. Returns the process exit code.
pub async fn run(cmd: AuditCommand) -> Result<i32> {
    match cmd {
        AuditCommand::Export {
            since,
            until,
            format,
            output,
            client,
        } => {
            export(since, until, &format, output, &client).await?;
            Ok(0)
        }
        AuditCommand::Verify { data_dir, config } => {
            let (dir, backend) = match (&config, &data_dir) {
                (Some(path), _) => {
                    let config = ServerConfig::load(path)?;
                    (DataDir::new(&config.data_dir), config.storage.backend()?)
                }
                (None, Some(dir)) => (DataDir::new(dir), Backend::Sqlite),
                (None, None) => bail!("give --data-dir DIR or --config FILE"),
            };
            let (vault, audit): (Arc<dyn RecordStore>, Arc<dyn AuditStore>) = match &backend {
                Backend::Sqlite => {
                    dir.check_permissions()?;
                    // Only the vault store (for the vault's identity) and the
                    // audit log: both can be read while a server runs.
                    let open_failed =
                        || format!("could not open the stores in {}", dir.root.display());
                    (
                        Arc::new(
                            SqliteRecordStore::open(&dir.root.join(files::VAULT))
                                .with_context(open_failed)?,
                        ),
                        Arc::new(
                            SqliteAuditStore::open(&dir.root.join(files::AUDIT))
                                .with_context(open_failed)?,
                        ),
                    )
                }
                Backend::Postgres(_) => {
                    let stores = crate::storage::open(&backend, &dir).await?;
                    (stores.set.vault, stores.set.audit)
                }
            };
            let identity = VaultIdentity::load(&vault)
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
            let report = strongroom_audit::verify(&audit, &key).await?;
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

/// Streams an export to a new file or stdout.
async fn export(
    since: Option<String>,
    until: Option<String>,
    format: &str,
    output: Option<std::path::PathBuf>,
    client: &crate::cli::ClientArgs,
) -> Result<()> {
    let time = |name: &str, t: &Option<String>| -> Result<Option<String>> {
        t.as_ref()
            .map(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map(|_| t.replace('+', "%2B"))
                    .with_context(|| {
                        format!("--{name} is an RFC 3339 time, e.g. 2026-11-01T00:00:00Z")
                    })
            })
            .transpose()
    };
    let mut path = format!("/v1/audit/export?format={format}");
    if let Some(since) = time("since", &since)? {
        path.push_str(&format!("&since={since}"));
    }
    if let Some(until) = time("until", &until)? {
        path.push_str(&format!("&until={until}"));
    }
    let c = crate::client::Client::new(client, "admin")?;
    let written = match &output {
        Some(file) => {
            let mut out = std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(file)
                    .with_context(|| {
                        format!(
                            "could not create {} (it must not exist yet)",
                            file.display()
                        )
                    })?,
            );
            let n = c.download(&path, &mut out).await?;
            std::io::Write::flush(&mut out).context("could not write the output")?;
            n
        }
        None => c.download(&path, &mut std::io::stdout()).await?,
    };
    if let Some(file) = output {
        eprintln!("Exported {written} bytes to {}", file.display());
    }
    Ok(())
}
