//! `strongroom principals`.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::PrincipalsCommand;
use crate::client::Client;

/// Runs a principals command.
pub async fn run(cmd: PrincipalsCommand) -> Result<()> {
    match cmd {
        PrincipalsCommand::Create {
            name,
            kind,
            roles,
            tenants,
            client,
        } => {
            let c = Client::new(&client, "admin")?;
            let v = c
                .call(
                    Method::POST,
                    "/v1/principals",
                    Some(json!({ "name": name, "kind": kind, "roles": roles, "tenants": tenants })),
                )
                .await?;
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            println!("Created principal '{}' ({}).", s("name"), s("id"));
            if v.get("enrolment_code").is_some() {
                println!(
                    "Give this one-time enrolment code to {} alone; it is shown only now:\n",
                    s("name")
                );
                println!("  enrolment_code: {}", s("enrolment_code"));
                println!(
                    "\nThey enrol with: strongroom enrol --username {} --url {}",
                    s("name"),
                    c.base()
                );
            } else {
                println!("The client secret is shown only now; store it in your secret manager:\n");
                println!("  client_id:     {}", s("client_id"));
                println!("  client_secret: {}", s("client_secret"));
            }
            if v.get("pending_approval").and_then(Value::as_bool) == Some(true) {
                println!(
                    "\nIts roles need dual control: it can get no token until a security officer"
                );
                println!(
                    "other than you runs `strongroom principals approve {}`.",
                    s("id")
                );
            }
        }
        PrincipalsCommand::List(client) => {
            let c = Client::new(&client, "admin")?;
            let v = c.call(Method::GET, "/v1/principals", None).await?;
            for p in v
                .get("principals")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let s = |k: &str| match p.get(k) {
                    Some(Value::String(v)) => v.clone(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                println!(
                    "{}  {}  roles={}  tenants={}{}",
                    s("id"),
                    s("name"),
                    s("roles"),
                    s("tenants"),
                    if p.get("disabled").and_then(Value::as_bool) == Some(true) {
                        "  DISABLED"
                    } else if p.get("pending_approval").and_then(Value::as_bool) == Some(true) {
                        "  PENDING APPROVAL"
                    } else {
                        ""
                    }
                );
            }
        }
        PrincipalsCommand::RotateSecret {
            id,
            overlap_secs,
            client,
        } => {
            let c = Client::new(&client, "admin")?;
            let v = c
                .call(
                    Method::POST,
                    &format!("/v1/principals/{id}/rotate-secret"),
                    Some(json!({ "overlap_secs": overlap_secs })),
                )
                .await?;
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            println!("New client secret, shown only now; store it in your secret manager:\n");
            println!("  client_id:     {}", s("client_id"));
            println!("  client_secret: {}", s("client_secret"));
            println!(
                "\nThe previous secret works until {}.",
                s("previous_secret_valid_until")
            );
            if v.get("pending_approval").and_then(Value::as_bool) == Some(true) {
                println!(
                    "This service can reveal or administer: neither secret gets a token until a"
                );
                println!("security officer runs `strongroom principals approve {id}`.");
            }
        }
        PrincipalsCommand::Unlock { id, client } => {
            let c = Client::new(&client, "admin")?;
            c.call(Method::POST, &format!("/v1/principals/{id}/unlock"), None)
                .await?;
            println!("unlocked {id}");
        }
        PrincipalsCommand::Approve { id, client } => {
            let c = Client::new(&client, "security_officer")?;
            c.call(Method::POST, &format!("/v1/principals/{id}/approve"), None)
                .await?;
            println!("approved {id}");
        }
        PrincipalsCommand::Disable { id, client } => {
            let c = Client::new(&client, "admin")?;
            c.call(Method::DELETE, &format!("/v1/principals/{id}"), None)
                .await?;
            println!("disabled {id}");
        }
        PrincipalsCommand::Freeze { id, reason, client } => {
            let c = Client::new(&client, "security_officer")?;
            c.call(
                Method::POST,
                &format!("/v1/principals/{id}/freeze"),
                Some(json!({ "reason": reason })),
            )
            .await?;
            println!("frozen {id}: its requests are refused until it is unfrozen");
        }
        PrincipalsCommand::Unfreeze { id, reason, client } => {
            let c = Client::new(&client, "security_officer")?;
            c.call(
                Method::POST,
                &format!("/v1/principals/{id}/unfreeze"),
                Some(json!({ "reason": reason })),
            )
            .await?;
            println!("unfrozen {id}");
        }
    }
    Ok(())
}
