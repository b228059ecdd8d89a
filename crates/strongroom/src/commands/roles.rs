//! `strongroom roles`.

use anyhow::{Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::RolesCommand;
use crate::client::Client;

fn list_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn pending_of(role: &Value) -> Option<String> {
    role.get("pending_permissions")
        .filter(|p| !p.is_null())
        .map(|_| list_of(role, "pending_permissions"))
}

/// Runs a roles command.
pub async fn run(cmd: RolesCommand) -> Result<()> {
    match cmd {
        RolesCommand::List(client) => {
            let c = Client::new(&client, "admin")?;
            let v = c.call(Method::GET, "/v1/roles", None).await?;
            for role in v
                .get("roles")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = role.get("name").and_then(Value::as_str).unwrap_or("");
                let kind = if role.get("builtin").and_then(Value::as_bool) == Some(true) {
                    "built-in"
                } else {
                    "custom"
                };
                let granted = list_of(role, "permissions");
                println!(
                    "{name:<20} {kind:<9} {}",
                    if granted.is_empty() {
                        "(nothing yet)"
                    } else {
                        &granted
                    }
                );
                if let Some(pending) = pending_of(role) {
                    println!("{:<31}waiting for approval: {pending}", "");
                }
            }
        }
        RolesCommand::Define {
            name,
            permissions,
            client,
        } => {
            let c = Client::new(&client, "admin")?;
            let v = c
                .call(
                    Method::PUT,
                    &format!("/v1/roles/{name}"),
                    Some(json!({ "permissions": permissions })),
                )
                .await?;
            if v.get("pending_approval").and_then(Value::as_bool) == Some(true) {
                println!(
                    "Role '{name}' waits for approval: permissions={}.",
                    list_of(&v, "pending_permissions")
                );
                println!(
                    "Until a security officer other than you approves it, it grants what it granted:"
                );
                let granted = list_of(&v, "permissions");
                println!(
                    "  {}",
                    if granted.is_empty() {
                        "nothing"
                    } else {
                        &granted
                    }
                );
                println!(
                    "They approve with: strongroom roles approve {name} {}",
                    permissions
                        .iter()
                        .map(|p| format!("--permission {p}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            } else {
                println!("Role '{name}' grants: {}.", list_of(&v, "permissions"));
            }
        }
        RolesCommand::Approve {
            name,
            permissions,
            client,
        } => {
            let c = Client::new(&client, "security_officer")?;
            if permissions.is_empty() {
                // Show what waits, so the officer names exactly what they approve.
                let v = c.call(Method::GET, "/v1/roles", None).await?;
                let role = v
                    .get("roles")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|r| r.get("name").and_then(Value::as_str) == Some(name.as_str()));
                match role.and_then(pending_of) {
                    Some(pending) => bail!(
                        "role '{name}' waits for approval of permissions={pending}\n\
                         if that is right, approve it by naming each one: strongroom roles approve {name} {}",
                        pending
                            .split(',')
                            .map(|p| format!("--permission {p}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    None => bail!("role '{name}' has no change waiting for approval"),
                }
            }
            let v = c
                .call(
                    Method::POST,
                    &format!("/v1/roles/{name}/approve"),
                    Some(json!({ "permissions": permissions })),
                )
                .await?;
            println!("Role '{name}' now grants: {}.", list_of(&v, "permissions"));
        }
    }
    Ok(())
}
