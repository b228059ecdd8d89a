//! `strongroom audit verify` checks the chain offline (and, given a signed
//! checkpoint, that nothing up to it was cut or rewritten); `strongroom
//! audit export` takes a time range of records from a running server, and
//! `strongroom audit checkpoint` a signed checkpoint of its chain head.

use anyhow::{Context, Result, bail};
use std::sync::Arc;
use strongroom_crypto::shamir::Share;

use std::io::Write;
use strongroom_audit::checkpoint::Checkpoint;
use strongroom_store::sqlite::{SqliteAuditStore, SqliteRecordStore, files};
use strongroom_store::{AuditStore, RecordStore};
use strongroom_vault::{VaultIdentity, audit_key, checkpoint_key};

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
        AuditCommand::Checkpoint { output, client } => {
            let c = crate::client::Client::new(&client, "auditor")?;
            let v = c
                .call(reqwest::Method::GET, "/v1/audit/checkpoint", None)
                .await?;
            let text = format!("{}\n", serde_json::to_string_pretty(&v)?);
            match &output {
                Some(file) => {
                    create_new(file)?.write_all(text.as_bytes())?;
                    eprintln!(
                        "Checkpoint of record {} saved to {}; keep it outside the vault.",
                        v.get("seq").unwrap_or(&serde_json::Value::Null),
                        file.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        AuditCommand::Verify {
            data_dir,
            config,
            checkpoint,
        } => {
            // Read first: a missing or unreadable file should not cost the
            // custodians their shares.
            let checkpoint = checkpoint
                .map(|path| -> Result<Checkpoint> {
                    let text = std::fs::read(&path)
                        .with_context(|| format!("could not read {}", path.display()))?;
                    serde_json::from_slice(&text)
                        .with_context(|| format!("{} is not an audit checkpoint", path.display()))
                })
                .transpose()?;
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
            let signer = checkpoint_key(&root)?;
            drop(root);
            let head_key = strongroom_crypto::mac::MacKey::new(&key);
            let head = match strongroom_audit::head::load(&vault, &head_key).await? {
                Some(Err(e)) => {
                    println!("audit log end NOT provable: {e}.");
                    return Ok(1);
                }
                Some(Ok(h)) => Some(h),
                None => None,
            };
            let report = strongroom_audit::verify(&audit, &key, head.as_ref()).await?;
            let chain_ok = describe_report(&report);
            let Some(c) = &checkpoint else {
                return Ok(if chain_ok { 0 } else { 1 });
            };
            // The file is untrusted until its signature checks: its fields
            // are printed quoted, never as they are.
            let problem = if c.vault_id != identity.vault_id {
                Some(format!(
                    "the checkpoint is of vault {:?}, not {}",
                    c.vault_id, identity.vault_id
                ))
            } else if let Err(p) = c.check_signature(&signer.public_key()) {
                Some(p.to_string())
            } else {
                c.check_log(&audit).await?.err().map(|p| p.to_string())
            };
            match problem {
                Some(problem) => {
                    println!("audit log NOT vouched for by the checkpoint: {problem}.");
                    Ok(1)
                }
                None if chain_ok => {
                    println!(
                        "checkpoint of record {} (signed {}) matches: no record up to it was removed or changed",
                        c.seq, c.signed_at
                    );
                    Ok(0)
                }
                None => {
                    println!(
                        "checkpoint of record {} matches its record, but the chain is broken (above)",
                        c.seq
                    );
                    Ok(1)
                }
            }
        }
    }
}

/// Prints what a verification proved, never more; true if nothing is wrong.
fn describe_report(report: &strongroom_audit::VerifyReport) -> bool {
    let at = |time: &Option<String>| {
        time.as_deref()
            .map(|t| format!(", written {t}"))
            .unwrap_or_default()
    };
    let last = report.last_seq;
    match (&report.first_bad, report.sealed_head) {
        (Some((seq, problem)), _) => {
            println!(
                "audit log BROKEN at record {seq}: {problem}. Records 1 to {last} verified{}.",
                at(&report.last_time)
            );
            false
        }
        (None, Some(head)) if head >= last => {
            println!(
                "audit log intact: {} records verified, proven through record {last}{}; \
                 it is the head the vault sealed outside the audit store, so none was cut \
                 from the end",
                report.verified,
                at(&report.last_time)
            );
            true
        }
        (None, Some(head)) => {
            println!(
                "audit log verified through record {last}{}; its end is proven up to record \
                 {head} (the head the vault sealed outside the audit store). The {} records \
                 after it were written since that head was sealed: the chain vouches for them, \
                 but their removal would not have been detected",
                at(&report.last_time),
                last - head
            );
            true
        }
        (None, None) => {
            println!(
                "audit log chain verified through record {last}{}, but its end cannot be \
                 proven: the vault holds no sealed head (a vault not started since sealed \
                 heads were introduced), so records cut off the end would not show",
                at(&report.last_time)
            );
            true
        }
    }
}

/// A file that must not exist yet, created for writing.
fn create_new(file: &std::path::Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .with_context(|| {
            format!(
                "could not create {} (it must not exist yet)",
                file.display()
            )
        })
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
    let c = crate::client::Client::new(client, "auditor")?;
    let written = match &output {
        Some(file) => {
            let mut out = std::io::BufWriter::new(create_new(file)?);
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
