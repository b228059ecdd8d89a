//! `strongroom secrets`: the value is read from stdin, never from arguments
//! (which other users can see in the process list and shell history).

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::cli::SecretsCommand;
use crate::client::Client;
use crate::commands::read_line;

fn path_token(token: &str) -> Result<&str> {
    if token.is_empty() || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("'{token}' is not a token (tokens look like sr_vc_…)");
    }
    Ok(token)
}

/// Runs a secrets command.
pub async fn run(cmd: SecretsCommand) -> Result<()> {
    match cmd {
        SecretsCommand::Put {
            class,
            tenant,
            metadata,
            window_secs,
            on_duplicate,
            client,
        } => {
            let c = Client::new(&client, "service")?;
            let Some(value) = read_line("Secret value: ")? else {
                bail!(
                    "no value on stdin: pipe the secret in, e.g. `printf %s \"$CODE\" | strongroom secrets put`"
                );
            };
            if value.is_empty() {
                bail!("the value read from stdin is empty");
            }
            let metadata: Option<Value> = match metadata {
                Some(m) => {
                    Some(serde_json::from_str(&m).context("--metadata must be a JSON object")?)
                }
                None => None,
            };
            let mut body =
                json!({ "class": class, "value": value.as_str(), "on_duplicate": on_duplicate });
            if let Some(obj) = body.as_object_mut() {
                if let Some(t) = tenant {
                    obj.insert("tenant".into(), t.into());
                }
                if let Some(m) = metadata {
                    obj.insert("metadata".into(), m);
                }
                if let Some(w) = window_secs {
                    obj.insert("reveal_window_secs".into(), w.into());
                }
            }
            // The JSON body holds a copy of the value; it is dropped after sending.
            let v = c.call(Method::POST, "/v1/secrets", Some(body)).await?;
            println!("{}", v.get("token").and_then(Value::as_str).unwrap_or(""));
        }
        SecretsCommand::Reveal {
            token,
            purpose,
            json: as_json,
            client,
        } => {
            let c = Client::new(&client, "service")?;
            let v = c
                .call(
                    Method::POST,
                    &format!("/v1/secrets/{}/reveal", path_token(&token)?),
                    Some(json!({ "purpose": purpose })),
                )
                .await?;
            let mut out = std::io::stdout();
            if as_json {
                writeln!(out, "{v}")?;
            } else {
                let value = Zeroizing::new(
                    v.get("value")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                );
                if out.is_terminal() {
                    writeln!(out, "{}", value.as_str())?;
                } else {
                    write!(out, "{}", value.as_str())?;
                }
            }
        }
        SecretsCommand::Show { token, client } => {
            let c = Client::new(&client, "service")?;
            let v = c
                .call(
                    Method::GET,
                    &format!("/v1/secrets/{}", path_token(&token)?),
                    None,
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        SecretsCommand::Delete { token, client } => {
            let c = Client::new(&client, "security_officer")?;
            c.call(
                Method::DELETE,
                &format!("/v1/secrets/{}", path_token(&token)?),
                None,
            )
            .await?;
            println!("deleted {token}");
        }
    }
    Ok(())
}
