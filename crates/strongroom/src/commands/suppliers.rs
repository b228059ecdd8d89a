//! `strongroom suppliers`.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::SuppliersCommand;
use crate::client::Client;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(0)
}

fn amount(minor: i64, currency: &str) -> String {
    strongroom_vouchers::money::display(minor, currency)
}

/// One purchase on one line.
fn purchase_line(p: &Value) -> String {
    format!(
        "{}  {:<17}  {:<10}  {}/{} codes  charged {}{}",
        s(p, "id"),
        s(p, "state"),
        s(p, "supplier"),
        n(p, "codes_received"),
        n(p, "quantity"),
        amount(n(p, "charged"), s(p, "currency")),
        if s(p, "note").is_empty() {
            String::new()
        } else {
            format!("  ({})", s(p, "note"))
        }
    )
}

/// Runs a suppliers command; returns the exit code.
pub async fn run(cmd: SuppliersCommand) -> Result<i32> {
    match cmd {
        SuppliersCommand::List { client } => {
            let c = Client::new(&client, "stock_manager")?;
            let list = c.call(Method::GET, "/v1/suppliers", None).await?;
            for sup in list.as_array().into_iter().flatten() {
                let spend: Vec<String> = sup
                    .get("spend")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        format!(
                            "{} of {}",
                            amount(n(x, "spent"), s(x, "currency")),
                            amount(n(x, "limit"), s(x, "currency"))
                        )
                    })
                    .collect();
                println!(
                    "{:<12}  tenant {:<10}  circuit {:<8}  credential {:<24}  spent today {}",
                    s(sup, "name"),
                    s(sup, "tenant"),
                    s(sup, "circuit"),
                    sup.get("credential_set_at")
                        .and_then(Value::as_str)
                        .unwrap_or("NOT SET"),
                    spend.join(", ")
                );
            }
        }
        SuppliersCommand::Credential { supplier, client } => {
            let c = Client::new(&client, "security_officer")?;
            let credential = super::read_secret(&format!("Credential for {supplier}: "))?;
            c.call(
                Method::PUT,
                &format!("/v1/suppliers/{supplier}/credential"),
                Some(json!({ "credential": credential.as_str() })),
            )
            .await?;
            eprintln!("credential of {supplier} stored in the vault");
        }
        SuppliersCommand::Replenish { dry_run, client } => {
            let c = Client::new(&client, "stock_manager")?;
            let plan = c
                .call(Method::GET, "/v1/suppliers/replenishment", None)
                .await?;
            let short: Vec<&Value> = plan
                .as_array()
                .into_iter()
                .flatten()
                .filter(|l| n(l, "to_order") > 0)
                .collect();
            if short.is_empty() {
                eprintln!("nothing is below its minimum");
                return Ok(0);
            }
            let total: i64 = short.iter().map(|l| n(l, "to_order")).sum();
            for l in &short {
                eprintln!(
                    "{} {} from {}: {} available, {} on order, buying {} (min {}, target {})",
                    s(l, "sku"),
                    amount(n(l, "face_value"), s(l, "currency")),
                    s(l, "supplier"),
                    n(l, "available"),
                    n(l, "on_order"),
                    n(l, "to_order"),
                    n(l, "min_stock"),
                    n(l, "target_stock")
                );
            }
            if dry_run {
                return Ok(0);
            }
            let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0)).with_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} codes  {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let mut failed = false;
            for l in short {
                bar.set_message(s(l, "sku").to_owned());
                let got = c
                    .call(
                        Method::POST,
                        "/v1/suppliers/replenish",
                        Some(json!({"tenant": s(l, "tenant"), "sku": s(l, "sku"), "face_value": n(l, "face_value")})),
                    )
                    .await;
                bar.inc(u64::try_from(n(l, "to_order")).unwrap_or(0));
                match got {
                    Ok(v) => {
                        if let Some(p) = v.get("purchase").filter(|p| !p.is_null()) {
                            failed |= !matches!(s(p, "state"), "complete");
                            bar.suspend(|| println!("{}", purchase_line(p)));
                        }
                    }
                    Err(e) => {
                        failed = true;
                        bar.suspend(|| eprintln!("{}: {e:#}", s(l, "sku")));
                    }
                }
            }
            bar.finish_and_clear();
            if failed {
                eprintln!("not everything was bought: see the purchases above");
                return Ok(3);
            }
        }
        SuppliersCommand::Purchases { state, client } => {
            let c = Client::new(&client, "stock_manager")?;
            let path = match state {
                Some(st) => format!("/v1/purchases?state={st}"),
                None => "/v1/purchases".into(),
            };
            let list = c.call(Method::GET, &path, None).await?;
            for p in list.as_array().into_iter().flatten() {
                println!("{}", purchase_line(p));
            }
        }
        SuppliersCommand::Approve { id, client } => {
            let c = Client::new(&client, "security_officer")?;
            let p = c
                .call(Method::POST, &format!("/v1/purchases/{id}/approve"), None)
                .await?;
            println!("{}", purchase_line(&p));
        }
        SuppliersCommand::Reconcile { date, client } => {
            let c = Client::new(&client, "stock_manager")?;
            let r = c
                .call(
                    Method::POST,
                    "/v1/suppliers/reconcile",
                    Some(json!({ "day": date })),
                )
                .await?;
            println!(
                "{}: {} purchases, {} codes ordered, {} received, {} in stock",
                s(&r, "day"),
                n(&r, "purchases"),
                n(&r, "ordered"),
                n(&r, "received"),
                n(&r, "in_stock")
            );
            if let Some(charged) = r.get("charged").and_then(Value::as_object) {
                for (currency, minor) in charged {
                    println!("charged {}", amount(minor.as_i64().unwrap_or(0), currency));
                }
            }
            let mismatches = r
                .get("mismatches")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for m in &mismatches {
                println!(
                    "MISMATCH {} line {} ({}): {}: {}",
                    s(m, "purchase_id"),
                    n(m, "line"),
                    s(m, "supplier"),
                    s(m, "kind"),
                    s(m, "detail")
                );
            }
            if !mismatches.is_empty() {
                return Ok(3);
            }
        }
    }
    Ok(0)
}
