//! `strongroom alerts`.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::AlertsCommand;
use crate::client::Client;

/// Runs an alerts command.
pub async fn run(cmd: AlertsCommand) -> Result<()> {
    match cmd {
        AlertsCommand::List {
            status,
            detector,
            limit,
            json,
            client,
        } => {
            let c = Client::new(&client, "security_officer")?;
            let mut query = vec![format!("limit={}", limit.clamp(1, 500))];
            if let Some(s) = status {
                query.push(format!("status={s}"));
            }
            if let Some(d) = detector {
                query.push(format!("detector={}", encode(&d)));
            }
            let v = c
                .call(
                    Method::GET,
                    &format!("/v1/alerts?{}", query.join("&")),
                    None,
                )
                .await?;
            let alerts = v
                .get("alerts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if json {
                for a in &alerts {
                    println!("{a}");
                }
                return Ok(());
            }
            if alerts.is_empty() {
                eprintln!("no alerts");
            }
            for a in &alerts {
                println!("{}", line(a));
            }
        }
        AlertsCommand::Ack { id, note, client } => {
            let c = Client::new(&client, "security_officer")?;
            let a = c
                .call(
                    Method::POST,
                    &format!("/v1/alerts/{id}/acknowledge"),
                    Some(json!({ "note": note })),
                )
                .await?;
            println!("{}", line(&a));
        }
    }
    Ok(())
}

/// One alert on one line: time, id, severity, detector, status, summary.
fn line(a: &Value) -> String {
    let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let frozen = if a.get("froze_subject").and_then(Value::as_bool) == Some(true) {
        "  [FROZE SUBJECT]"
    } else {
        ""
    };
    format!(
        "{}  {}  {:<8}  {:<18}  {:<12}  {}{frozen}",
        s("created_at"),
        s("id"),
        s("severity").to_uppercase(),
        s("detector"),
        s("status"),
        s("summary"),
    )
}

/// Percent-encodes a query value (detector names are plain, but a user
/// may type anything).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
