//! `strongroom-bench`: drives a real `strongroom serve --dev` over HTTPS with
//! many keep-alive connections, on the same machine, and reports throughput,
//! latency percentiles and the server's peak memory.
//!
//! Run it with `bench/run` (builds both binaries in release mode first).
#![forbid(unsafe_code)]
// A measuring tool, not a service: it reads JSON from our own server, where
// `Value` indexing yields `Null` rather than panicking.
#![allow(clippy::indexing_slicing)]

mod load;
mod server;
mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

/// Benchmark a Strongroom server over HTTPS.
#[derive(Parser)]
struct Args {
    /// The `strongroom` binary to benchmark.
    #[arg(long, default_value = "target/release/strongroom")]
    strongroom: PathBuf,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of measurement per scenario (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Items per batch request.
    #[arg(long, default_value_t = 1000)]
    batch_items: usize,
    /// Secrets stored before the reveal scenario.
    #[arg(long, default_value_t = 20_000)]
    reveal_pool: usize,
    /// Scenarios to run (noop, tokenize, reveal, batch, import, orders,
    /// cards, relay).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "noop,tokenize,reveal,batch,import,orders,cards,relay"
    )]
    scenarios: Vec<String>,
    /// Connections of the relay scenario: its direct and relayed calls to
    /// the local upstream are compared at this concurrency (1: the latency
    /// the relay adds to one call, without queueing).
    #[arg(long, default_value_t = 1)]
    relay_connections: usize,
    /// Vouchers imported before the orders scenario (more than it can sell).
    #[arg(long, default_value_t = 100_000)]
    order_stock: usize,
    /// Rows of the CSV file of the import scenario.
    #[arg(long, default_value_t = 200_000)]
    import_rows: usize,
    /// Write results as JSON here.
    #[arg(long, default_value = "target/bench-results.json")]
    out: PathBuf,
    /// Benchmark on PostgreSQL: an admin URL (e.g.
    /// `postgres://postgres@127.0.0.1:5432/test`). A fresh database is created
    /// on that server, set up with `strongroom db setup`, and dropped after.
    #[arg(long)]
    postgres_admin: Option<String>,
    /// Run the server without its detectors (to measure what they cost).
    #[arg(long)]
    no_detectors: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // The load generator gets its own two worker threads; the server process
    // has its own runtime. Both share the machine, as the benchmark intends.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let database = match &args.postgres_admin {
        Some(admin) => Some(server::Database::create(admin, &args.strongroom).await?),
        None => None,
    };
    // The relay's upstream runs in this process, on its own certificate.
    let upstream = if args.scenarios.iter().any(|s| s == "relay") {
        Some(upstream::Upstream::start()?)
    } else {
        None
    };
    let server = server::Server::start(
        &args.strongroom,
        database.as_ref(),
        !args.no_detectors,
        upstream.as_ref(),
    )
    .await?;
    println!("server: pid {} at {}", server.pid(), server.url);
    println!(
        "machine: {} cores, {}; {} connections, {} s per scenario\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        server::cpu_model(),
        args.connections,
        args.seconds
    );
    let client = load::Client::new(&server).await?;
    let mut results = Vec::new();
    let measure = Duration::from_secs(args.seconds);
    for name in &args.scenarios {
        if name == "import" {
            // One upload, not a load: codes per second of one import job.
            let (report, took, _) = load::import(&client, args.import_rows).await?;
            let (rss, peak) = server.memory();
            let rate = args.import_rows as f64 / took.as_secs_f64();
            println!(
                "import     {:>8.0} codes/s  {} rows in {:.2} s  server RSS {rss:.0} MiB (peak {peak:.0})",
                rate,
                args.import_rows,
                took.as_secs_f64()
            );
            results.push(serde_json::json!({
                "scenario": "import", "rows": args.import_rows, "seconds": took.as_secs_f64(),
                "codes_per_sec": rate, "server_rss_mib": rss, "server_peak_rss_mib": peak,
                "report": {"accepted": report["accepted"], "rejected": report["rejected"]},
            }));
            continue;
        }
        if name == "relay" {
            let upstream = upstream.as_ref().context("no upstream")?;
            let pan = load::fresh_pan();
            let card = client.card(&pan).await?;
            let direct = load::Client::upstream(upstream)?;
            let token = client.login_as("gateway").await?;
            let n = args.relay_connections;
            let base =
                load::run(&direct, &load::Scenario::Direct(pan.into()), "", n, measure).await?;
            let rss = server.memory();
            println!("{}", base.line("direct", rss));
            results.push(base.json("direct", rss));
            let relayed = load::run(
                &client,
                &load::Scenario::Relay(card.into()),
                &token,
                n,
                measure,
            )
            .await?;
            let rss = server.memory();
            println!("{}", relayed.line("relay", rss));
            let overhead = relayed.p50.as_secs_f64() * 1e3 - base.p50.as_secs_f64() * 1e3;
            println!(
                "relay overhead p50 {overhead:.2} ms over the direct call ({n} connection(s))"
            );
            let mut json = relayed.json("relay", rss);
            json["overhead_p50_ms"] = serde_json::json!(overhead);
            json["connections"] = serde_json::json!(n);
            results.push(json);
            continue;
        }
        let scenario = match name.as_str() {
            "noop" => load::Scenario::Noop,
            "cards" => load::Scenario::Cards,
            "tokenize" => load::Scenario::Tokenize,
            "batch" => load::Scenario::Batch(args.batch_items),
            "reveal" => {
                let tokens = client
                    .populate(args.reveal_pool)
                    .await
                    .context("populating secrets to reveal")?;
                load::Scenario::Reveal(std::sync::Arc::new(tokens))
            }
            "orders" => {
                let (_, _, sku) = load::import(&client, args.order_stock)
                    .await
                    .context("importing stock to sell")?;
                load::Scenario::Order(sku.into())
            }
            other => anyhow::bail!("unknown scenario '{other}'"),
        };
        let token = match &scenario {
            load::Scenario::Cards => client.login_as("gateway").await?,
            _ => client.login().await?,
        };
        let report = load::run(&client, &scenario, &token, args.connections, measure).await?;
        let rss = server.memory();
        println!("{}", report.line(name, rss));
        results.push(report.json(name, rss));
    }
    let summary = serde_json::json!({
        "cpu": server::cpu_model(),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "connections": args.connections,
        "seconds": args.seconds,
        "results": results,
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&summary)?)?;
    println!("\nresults written to {}", args.out.display());
    server.stop();
    if let Some(db) = database {
        db.drop_database().await?;
    }
    Ok(())
}
