//! `strongroom operator`: unseal, seal, status, rotate.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::OperatorCommand;
use crate::client::Client;
use crate::commands::read_line;

fn print_status(v: &Value) {
    let sealed = v.get("sealed").and_then(Value::as_bool).unwrap_or(true);
    let get = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let id = v.get("vault_id").and_then(Value::as_str).unwrap_or("?");
    let state = if sealed { "SEALED" } else { "unsealed" };
    if v.get("seal_method").and_then(Value::as_str) == Some("dev-key-file") {
        println!("vault {id}: {state} (development vault: its root key is in a key file)");
    } else {
        println!(
            "vault {id}: {state} ({} of {} shares given, {} needed)",
            get("progress"),
            get("shares"),
            get("threshold")
        );
    }
}

/// Runs an operator command.
pub async fn run(cmd: OperatorCommand) -> Result<()> {
    match cmd {
        OperatorCommand::Status(args) => {
            let c = Client::new(&args, "admin")?;
            print_status(
                &c.call_anonymous(Method::GET, "/v1/sys/seal-status", None)
                    .await?,
            );
        }
        OperatorCommand::Unseal(args) => {
            let c = Client::new(&args, "admin")?;
            let mut status = c
                .call_anonymous(Method::GET, "/v1/sys/seal-status", None)
                .await?;
            while status.get("sealed").and_then(Value::as_bool) == Some(true) {
                let given = status.get("progress").and_then(Value::as_u64).unwrap_or(0);
                let need = status.get("threshold").and_then(Value::as_u64).unwrap_or(0);
                let Some(share) = read_line(&format!("Key share ({} of {need}): ", given + 1))?
                else {
                    anyhow::bail!(
                        "stdin ended with the vault still sealed ({given} of {need} shares given)"
                    );
                };
                if share.trim().is_empty() {
                    continue;
                }
                status = c
                    .call_anonymous(
                        Method::POST,
                        "/v1/sys/unseal",
                        Some(json!({ "share": share.as_str() })),
                    )
                    .await?;
            }
            print_status(&status);
        }
        OperatorCommand::Bootstrap {
            admin,
            security_officer,
            client,
        } => super::people::bootstrap(&admin, &security_officer, &client).await?,
        OperatorCommand::Seal(args) => {
            let c = Client::new(&args, "admin")?;
            c.call(Method::POST, "/v1/sys/seal", None).await?;
            println!("sealed");
        }
        OperatorCommand::Rotate {
            tenant,
            class,
            client,
        } => {
            let c = Client::new(&client, "security_officer")?;
            let v = c
                .call(
                    Method::POST,
                    "/v1/keys/rotate",
                    Some(json!({ "tenant": tenant, "class": class })),
                )
                .await?;
            println!(
                "{}/{} now seals new secrets with key version {}",
                tenant,
                class,
                v.get("version").and_then(Value::as_u64).unwrap_or(0)
            );
        }
    }
    Ok(())
}
