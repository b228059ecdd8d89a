//! `strongroom vouchers`.

use anyhow::{Context, Result};
use futures_util::StreamExt;
use serde_json::Value;

use crate::cli::VouchersCommand;
use crate::client::Client;

/// Problems printed after an import; the server lists up to 1,000.
const SHOWN_PROBLEMS: usize = 20;

/// Runs a vouchers command; the exit code is 0 when every row went into
/// stock (or would, in a dry run), 2 when some were refused.
pub async fn run(cmd: VouchersCommand) -> Result<i32> {
    match cmd {
        VouchersCommand::Import {
            file,
            retailer,
            tenant,
            dry_run,
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
    }
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
