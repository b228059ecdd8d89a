//! `strongroom vouchers`.

use anyhow::{Context, Result};
use futures_util::StreamExt;
use serde_json::Value;

use crate::cli::{ProductsCommand, RetailersCommand, VouchersCommand};
use crate::client::Client;

/// Problems printed after an import; the server lists up to 1,000.
const SHOWN_PROBLEMS: usize = 20;

/// Runs a vouchers command; the exit code is 0 when every row went into
/// stock (or would, in a dry run), 2 when some were refused.
pub async fn run(cmd: VouchersCommand) -> Result<i32> {
    match cmd {
        VouchersCommand::Retailers(cmd) => retailers(cmd).await.map(|()| 0),
        VouchersCommand::Products(cmd) => products(cmd).await.map(|()| 0),
        VouchersCommand::Import {
            file,
            retailer,
            tenant,
            dry_run,
            all_or_nothing,
            client,
        } => {
            let c = Client::new(&client, "stock_manager")?;
            let opened = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("could not open {}", file.display()))?;
            let size = opened.metadata().await.map(|m| m.len()).unwrap_or(0);
            let bar = indicatif::ProgressBar::new(size).with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} uploading {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec}, {eta} left",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            let counted = bar.clone();
            let stream = tokio_util::io::ReaderStream::new(opened).map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    counted.inc(bytes.len() as u64);
                }
                chunk
            });
            let mut query = format!("retailer={}", encode(&retailer));
            if let Some(t) = &tenant {
                query.push_str(&format!("&tenant={}", encode(t)));
            }
            if dry_run {
                query.push_str("&dry_run=true");
            }
            if all_or_nothing {
                query.push_str("&all_or_nothing=true");
            }
            let answer = c
                .upload(
                    &format!("/v1/imports?{query}"),
                    "text/csv",
                    reqwest::Body::wrap_stream(stream),
                )
                .await;
            bar.finish_and_clear();
            let report = answer?;
            Ok(print_report(&report, dry_run))
        }
        VouchersCommand::Archive {
            older_than_days,
            client,
        } => archive(older_than_days, client).await.map(|()| 0),
    }
}

/// Archives batch after batch until none is left, with a progress bar.
async fn archive(older_than_days: Option<u32>, client: crate::cli::ClientArgs) -> Result<()> {
    let c = Client::new(&client, "stock_manager")?;
    let body = serde_json::json!({ "older_than_days": older_than_days, "limit": 500 });
    let mut done = 0u64;
    let mut bar: Option<indicatif::ProgressBar> = None;
    loop {
        let v = c
            .call(
                reqwest::Method::POST,
                "/v1/vouchers/archive",
                Some(body.clone()),
            )
            .await?;
        let archived = v.get("archived").and_then(Value::as_u64).unwrap_or(0);
        let remaining = v.get("remaining").and_then(Value::as_u64).unwrap_or(0);
        done += archived;
        let bar = bar.get_or_insert_with(|| {
            indicatif::ProgressBar::new(done + remaining).with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} archiving {pos}/{len} [{bar:30}] {per_sec}, {eta} left",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            )
        });
        bar.set_length(done + remaining);
        bar.set_position(done);
        if remaining == 0 || archived == 0 {
            bar.finish_and_clear();
            println!(
                "Archived {done} vouchers; {remaining} past the age remain in the live vault."
            );
            return Ok(());
        }
    }
}

async fn retailers(cmd: RetailersCommand) -> Result<()> {
    match cmd {
        RetailersCommand::Add {
            name,
            tenant,
            client,
        } => {
            let c = Client::new(&client, "stock_manager")?;
            let v = c
                .call(
                    reqwest::Method::POST,
                    "/v1/retailers",
                    Some(serde_json::json!({ "name": name, "tenant": tenant })),
                )
                .await?;
            println!(
                "Added retailer '{}' ({}) in tenant {}.",
                text(&v, "name"),
                text(&v, "id"),
                text(&v, "tenant")
            );
        }
        RetailersCommand::List(client) => {
            let c = Client::new(&client, "stock_manager")?;
            let v = c.call(reqwest::Method::GET, "/v1/retailers", None).await?;
            for r in v
                .get("retailers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!(
                    "{}  {:<12} {}",
                    text(r, "id"),
                    text(r, "tenant"),
                    text(r, "name")
                );
            }
        }
    }
    Ok(())
}

async fn products(cmd: ProductsCommand) -> Result<()> {
    match cmd {
        ProductsCommand::Add {
            sku,
            retailer,
            name,
            currency,
            face_values,
            low_stock,
            tenant,
            client,
        } => {
            let mut minor = Vec::with_capacity(face_values.len());
            for amount in &face_values {
                minor.push(
                    strongroom_vouchers::import::parse_amount(amount, &currency)
                        .map_err(|e| anyhow::anyhow!("--face-value {amount}: {e}"))?,
                );
            }
            let c = Client::new(&client, "stock_manager")?;
            let v = c
                .call(
                    reqwest::Method::POST,
                    "/v1/products",
                    Some(serde_json::json!({
                        "tenant": tenant, "retailer": retailer, "sku": sku, "name": name,
                        "currency": currency, "denominations": minor, "low_stock_threshold": low_stock,
                    })),
                )
                .await?;
            println!(
                "Added product {} ({}): {}",
                text(&v, "sku"),
                text(&v, "name"),
                face_value_list(&v)
            );
        }
        ProductsCommand::List(client) => {
            let c = Client::new(&client, "stock_manager")?;
            let v = c.call(reqwest::Method::GET, "/v1/products", None).await?;
            for p in v
                .get("products")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!(
                    "{:<20} {:<12} {:<30} {}",
                    text(p, "sku"),
                    text(p, "tenant"),
                    text(p, "name"),
                    face_value_list(p)
                );
            }
        }
    }
    Ok(())
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// A product's face values for people: `10.00 GBP, 25.00 GBP`.
fn face_value_list(product: &Value) -> String {
    let currency = text(product, "currency");
    product
        .get("denominations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .map(|d| strongroom_vouchers::money::display(d, &currency))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_report(report: &Value, dry_run: bool) -> i32 {
    let n = |k: &str| report.get(k).and_then(Value::as_u64).unwrap_or(0);
    let id = report
        .get("import_id")
        .and_then(Value::as_str)
        .unwrap_or("-");
    println!("{} {id}", if dry_run { "Dry run" } else { "Import" });
    println!("  rows read     {:>10}", n("rows"));
    println!(
        "  {:<13} {:>10}",
        if dry_run { "would import" } else { "in stock" },
        n("accepted")
    );
    println!("  refused       {:>10}", n("rejected"));
    println!("  duplicates    {:>10}", n("duplicates"));
    let problems = report
        .get("problems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if report.get("status").and_then(Value::as_str) == Some("discarded") {
        println!("\n  All or nothing: rows were refused, so none of the file was stocked.");
    }
    if !problems.is_empty() {
        println!("\n  row  column       reason");
        for p in problems.iter().take(SHOWN_PROBLEMS) {
            println!(
                "  {:<4} {:<12} {}",
                p.get("row").and_then(Value::as_u64).unwrap_or(0),
                p.get("column").and_then(Value::as_str).unwrap_or(""),
                p.get("reason").and_then(Value::as_str).unwrap_or("")
            );
        }
        let total = n("rejected") + n("duplicates");
        if total > SHOWN_PROBLEMS as u64 {
            println!(
                "  … and {} more (the server lists up to 1,000)",
                total - SHOWN_PROBLEMS as u64
            );
        }
    }
    if n("rejected") + n("duplicates") > 0 {
        2
    } else {
        0
    }
}
