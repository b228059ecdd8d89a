//! `strongroom`: see `strongroom --help`.
#![forbid(unsafe_code)]

use clap::Parser;
use strongroom::cli::{Cli, Command};
use strongroom::commands;

// The server allocates and frees many small buffers per request (JSON,
// envelopes, audit records). mimalloc's per-thread free lists do that at a
// fraction of glibc's cost. It is built without transparent huge pages, which
// otherwise make every touched 2 MiB region resident (about 25 MiB more under
// batch load). Its `secure` mode was measured too: 35 MiB more and a quarter
// slower, for heap hardening that safe Rust mostly makes moot.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider for the whole process (aws-lc-rs). The HTTP
    // client wants one even for a plain-HTTP server on loopback; without it
    // every CLI command against such a server panicked.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<i32> = runtime.block_on(async move {
        match cli.command {
            Command::Init(a) => commands::init::run(a).await.map(|_| 0),
            Command::Serve(a) => commands::serve::run(a).await.map(|_| 0),
            #[cfg(feature = "lambda")]
            Command::Lambda(a) => commands::lambda::run(a).await.map(|_| 0),
            Command::Operator(c) => commands::operator::run(c).await.map(|_| 0),
            Command::Principals(c) => commands::principals::run(c).await.map(|_| 0),
            Command::Secrets(c) => commands::secrets::run(c).await.map(|_| 0),
            Command::Roles(c) => commands::roles::run(c).await.map(|_| 0),
            Command::Vouchers(c) => commands::vouchers::run(c).await,
            Command::Audit(c) => commands::audit::run(c).await,
            Command::Alerts(c) => commands::alerts::run(c).await.map(|_| 0),
            Command::Suppliers(c) => commands::suppliers::run(c).await,
            Command::Db(c) => commands::db::run(c).await.map(|_| 0),
            Command::Enrol { username, client } => {
                commands::people::enrol(&username, &client).await.map(|_| 0)
            }
            Command::Login { username, client } => {
                commands::people::login(&username, &client).await.map(|_| 0)
            }
            Command::StepUp(client) => commands::people::step_up(&client).await.map(|_| 0),
            Command::Logout => commands::people::logout().map(|_| 0),
            Command::Openapi => {
                print!(
                    "{}",
                    strongroom_api::openapi::to_json(&strongroom_api::openapi())
                );
                Ok(0)
            }
        }
    });
    match result {
        Ok(0) => std::process::ExitCode::SUCCESS,
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
