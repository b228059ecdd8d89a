//! `strongroom lambda`: serve the API as an AWS Lambda function.

use anyhow::{Result, bail};

use crate::app::{StartOptions, TlsSource, assemble};
use crate::cli::LambdaArgs;
use crate::config::ServerConfig;
use crate::datadir::DataDir;

/// Runs the function until the Lambda runtime stops it.
pub async fn run(args: LambdaArgs) -> Result<()> {
    let config = ServerConfig::load(&args.config)?;
    // The runtime logs whole events (card data, credentials) at trace.
    crate::logging::init_capped(
        &config.log.level,
        &config.log.format,
        &crate::logging::LAMBDA_CAPS,
    )?;
    let backend = config.storage.backend()?;
    if matches!(backend, crate::storage::Backend::Sqlite) {
        bail!(
            "on Lambda the stores must be PostgreSQL ([storage] backend = \"postgres\"): a function's disk lasts only as long as its instance"
        );
    }
    if config.metrics.listen.is_some() {
        bail!(
            "[metrics] listen cannot be served from Lambda (a function has no listener of its own)"
        );
    }
    let opts = StartOptions {
        tls: TlsSource::InsecureHttp,
        backend,
        ..super::serve::start_options(&config, &args.only)?
    };
    if opts.api_config.rate_limits.redis_url.is_none() {
        tracing::warn!(
            "no [ratelimit] redis_url: each instance keeps its own rate-limit buckets, so the limits multiply with concurrency"
        );
    }
    let dir = DataDir::new(&opts.data_dir);
    dir.create()?;
    dir.check_permissions()?;
    let shares = args
        .unseal_shares_file
        .as_deref()
        .map(crate::lambda::read_shares)
        .transpose()?;
    let public_url = config.vouchers.public_url.clone().unwrap_or_default();
    let app = assemble(&opts, &dir, &public_url, None).await?;
    match &shares {
        Some(shares) => crate::lambda::unseal(&app.vault, shares).await?,
        None => tracing::warn!(
            "no --unseal-shares-file: the function answers 503 vault.sealed until unsealed"
        ),
    }
    drop(shares);
    let router = crate::lambda::gateway_router(app.router, app.state);
    let served = lambda_http::run(router)
        .await
        .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"));
    drop(app.background);
    served
}
