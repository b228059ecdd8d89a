//! `strongroom serve`.

use std::sync::Arc;

use anyhow::{Result, bail};
use strongroom_vault::SystemClock;

use crate::app::{StartOptions, TlsSource, start};
use crate::cli::ServeArgs;
use crate::config::ServerConfig;

/// Runs `serve`.
pub async fn run(args: ServeArgs) -> Result<()> {
    let config = match &args.config {
        Some(path) => ServerConfig::load(path)?,
        None if args.dev => ServerConfig::dev()?,
        None => bail!("give --config FILE (production) or --dev (development)"),
    };
    let backend = match &args.postgres {
        Some(url) => {
            let names =
                strongroom_store_postgres::Names::new(strongroom_store_postgres::DEFAULT_PREFIX)?;
            crate::storage::Backend::Postgres(crate::storage::PostgresSettings {
                urls: strongroom_store_postgres::PgUrls::from_base(url, &names)?,
                prefix: names.prefix().to_owned(),
                max_connections: 8,
            })
        }
        None => config.storage.backend()?,
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.clone());
    let listen = args.listen.clone().unwrap_or_else(|| config.listen.clone());
    let insecure = args.insecure_http || config.insecure_http;
    crate::logging::init(
        args.log_level.as_deref().unwrap_or(&config.log.level),
        &config.log.format,
    )?;

    let tls = if insecure {
        TlsSource::InsecureHttp
    } else if let Some(files) = &config.tls {
        TlsSource::Files {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }
    } else if args.dev {
        TlsSource::DevSelfSigned
    } else {
        bail!(
            "the configuration has no [tls] cert and key; HTTPS is required (or --insecure-http on loopback)"
        );
    };
    let server = start(StartOptions {
        data_dir: data_dir.clone(),
        listen,
        tls,
        dev: args.dev,
        backend,
        ..start_options(&config, &args.only)?
    })
    .await?;

    if let Some(creds) = &server.dev_credentials {
        let ca = creds
            .ca_cert_path
            .as_ref()
            .map(|p| format!(" --cacert {}", p.display()))
            .unwrap_or_default();
        eprintln!(
            "\n  !! DEVELOPMENT MODE: the root key is in {} and the vault unseals itself.",
            data_dir.join(crate::datadir::DEV_KEY_FILE).display()
        );
        eprintln!("  !! Never keep real secrets in a dev vault.\n");
        eprintln!("  Strongroom listening on {}", server.url);
        eprintln!(
            "  Credentials: {}\n",
            data_dir.join(crate::datadir::DEV_CREDENTIALS).display()
        );
        eprintln!("  Try it:");
        eprintln!(
            "    TOKEN=$(curl -s{ca} {}/v1/auth/token -H 'content-type: application/json' \\\n      -d '{{\"grant_type\":\"client_credentials\",\"client_id\":\"{}\",\"client_secret\":\"'\"$(jq -r .service.client_secret {})\"'\"}}' | jq -r .access_token)",
            server.url,
            creds.service.client_id,
            data_dir.join(crate::datadir::DEV_CREDENTIALS).display()
        );
        eprintln!(
            "    curl -s{ca} {}/v1/secrets -H \"authorization: Bearer $TOKEN\" -d '{{\"class\":\"voucher_code\",\"value\":\"GIFT-0000-1111\"}}'",
            server.url
        );
        eprintln!("  or: echo GIFT-0000-1111 | strongroom secrets put\n");
    } else {
        let status = server.vault.seal_status().await?;
        if status.sealed {
            tracing::warn!(
                url = %server.url,
                threshold = status.threshold,
                "listening, SEALED: unseal with `strongroom operator unseal --url {}`",
                server.url
            );
        } else {
            tracing::info!(url = %server.url, "listening");
        }
    }
    server.run_until_signal().await
}

/// The options a configuration gives a server (or a function): limits,
/// watching, audit, metrics, and `--only`'s route groups. Where to listen,
/// TLS and the stores are the caller's.
pub fn start_options(config: &ServerConfig, only: &[String]) -> Result<StartOptions> {
    let mut api = config.api_config();
    if !only.is_empty() {
        let groups = only
            .iter()
            .map(|g| strongroom_api::groups::RouteGroup::parse(g.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--only: {e}"))?;
        api.only = Some(groups);
    }
    Ok(StartOptions {
        data_dir: config.data_dir.clone(),
        listen: config.listen.clone(),
        tls: TlsSource::InsecureHttp,
        dev: false,
        vault_config: config.vault_config(),
        api_config: api,
        clock: Arc::new(SystemClock),
        backend: crate::storage::Backend::Sqlite,
        watch: config.watch.clone(),
        checkpoint_every: (config.audit.checkpoint_secs > 0)
            .then(|| std::time::Duration::from_secs(config.audit.checkpoint_secs)),
        forwarders: config.audit.forward.clone(),
        metrics: config.metrics.options()?,
        suppliers: config.suppliers.clone(),
    })
}
