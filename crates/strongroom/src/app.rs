//! Starting a server: the shared path of `serve`, `serve --dev` and the tests.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum_server::Handle;
use serde::{Deserialize, Serialize};
use strongroom_api::{ApiConfig, ApiState};
use strongroom_store::StoreSet;
use strongroom_store::sqlite::SqliteStores;

use crate::storage::{Backend, OpenStores};
use strongroom_vault::{Clock, RequestContext, SealMethod, Vault, VaultConfig, initialize};

use crate::bootstrap::create_principal;
use crate::datadir::{DataDir, write_private};

/// Where the TLS certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// A development CA and server certificate generated into the data directory.
    DevSelfSigned,
    /// Plain HTTP (loopback only).
    InsecureHttp,
}

/// How to start a server.
pub struct StartOptions {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address (port 0 picks a free port).
    pub listen: String,
    /// TLS.
    pub tls: TlsSource,
    /// Development mode: create, auto-unseal and bootstrap the data directory.
    pub dev: bool,
    /// Vault limits.
    pub vault_config: VaultConfig,
    /// API limits.
    pub api_config: ApiConfig,
    /// Clock.
    pub clock: Arc<dyn Clock>,
    /// Where the stores live.
    pub backend: Backend,
    /// Detectors, alerts and containment.
    pub watch: strongroom_watch::WatchConfig,
    /// How often the audit chain head is signed into the log (`None`: never).
    pub checkpoint_every: Option<std::time::Duration>,
    /// Where the audit log is forwarded as it grows.
    pub forwarders: Vec<strongroom_watch::forward::ForwarderConfig>,
    /// Prometheus metrics on a listener of their own (`None`: none).
    pub metrics: Option<MetricsOptions>,
    /// Suppliers, replenishment and reconciliation.
    pub suppliers: crate::suppliers::SuppliersSettings,
}

/// The metrics listener.
#[derive(Clone)]
pub struct MetricsOptions {
    /// Address to listen on (plain HTTP).
    pub listen: String,
    /// Bearer token scrapers must send; required off loopback.
    pub token: Option<zeroize::Zeroizing<String>>,
}

impl std::fmt::Debug for MetricsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsOptions")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// One identity in the dev credentials file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevIdentity {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
}

/// `DIR/dev-credentials.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevCredentials {
    /// Server URL.
    pub url: String,
    /// CA certificate to trust.
    pub ca_cert_path: Option<PathBuf>,
    /// Dev administrator (manages principals; cannot reveal).
    pub admin: DevIdentity,
    /// Dev service with `ingest` and `fulfilment`.
    pub service: DevIdentity,
    /// Dev security officer (reactivate, rotate, delete).
    pub security_officer: DevIdentity,
    /// Dev stock manager (catalogue and imports; never sees a code).
    /// Absent from credentials files written before it existed.
    #[serde(default)]
    pub stock_manager: Option<DevIdentity>,
    /// Dev auditor of every tenant (audit log and alerts). Absent from
    /// credentials files written before it existed.
    #[serde(default)]
    pub auditor: Option<DevIdentity>,
    /// Dev payment gateway: tokenizes and scores cards and sends them
    /// through the relay (`ingest` and the custom role `dev-gateway`,
    /// holding `cards:relay`, defined without a second person: development
    /// only). Absent from credentials files written before it existed.
    #[serde(default)]
    pub gateway: Option<DevIdentity>,
}

/// A running server.
pub struct RunningServer {
    /// Bound address.
    pub addr: SocketAddr,
    /// Base URL.
    pub url: String,
    /// The vault behind it.
    pub vault: Arc<Vault>,
    /// The stores.
    pub stores: StoreSet,
    /// The SQLite files, when that is the backend.
    pub sqlite: Option<SqliteStores>,
    /// CA certificate clients should trust (dev TLS).
    pub ca_cert_path: Option<PathBuf>,
    /// Dev credentials (dev mode).
    pub dev_credentials: Option<DevCredentials>,
    /// The detectors and the freezes.
    pub watch: Arc<strongroom_watch::Watch>,
    /// Where metrics are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting connections and waits for the server to finish.
    pub async fn shutdown(self) -> Result<()> {
        self.handle
            .graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        self.task.await.context("server task failed")??;
        Ok(())
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> Result<()> {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            handle.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
        });
        self.task.await.context("server task failed")??;
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Opens the stores, prepares the vault and starts serving.
pub async fn start(opts: StartOptions) -> Result<RunningServer> {
    let dir = DataDir::new(&opts.data_dir);
    if opts.dev {
        dir.create()?;
    }
    dir.check_permissions()?;
    let listener = TcpListener::bind(&opts.listen)
        .with_context(|| format!("could not listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let scheme = match opts.tls {
        TlsSource::InsecureHttp => {
            if !is_loopback(&addr) {
                bail!(
                    "--insecure-http is only allowed on a loopback address (127.0.0.1 or ::1), not {addr}"
                );
            }
            "http"
        }
        _ => "https",
    };
    let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        "localhost".to_string()
    } else {
        addr.ip().to_string()
    };
    let url = format!("{scheme}://{host}:{}", addr.port());

    let mut ca_cert_path = None;
    let tls = match &opts.tls {
        TlsSource::Files { cert, key } => {
            let cert = std::fs::read(cert)
                .with_context(|| format!("could not read {}", cert.display()))?;
            let key =
                std::fs::read(key).with_context(|| format!("could not read {}", key.display()))?;
            Some(strongroom_api::server::tls_config(&cert, &key)?)
        }
        TlsSource::DevSelfSigned => {
            let (cert, key, ca) = crate::devtls::ensure(&dir)?;
            ca_cert_path = Some(ca);
            Some(strongroom_api::server::tls_config(&cert, &key)?)
        }
        TlsSource::InsecureHttp => None,
    };
    let Assembled {
        router,
        state: _,
        vault,
        stores,
        sqlite,
        watch,
        background,
        dev_credentials,
        metrics_addr,
    } = assemble(&opts, &dir, &url, ca_cert_path.clone()).await?;
    let handle = Handle::new();
    let serve_handle = handle.clone();
    let limits = opts.api_config.connections;
    let task = tokio::spawn(async move {
        let served = match tls {
            Some(tls) => {
                strongroom_api::server::serve_tls_with(listener, router, tls, serve_handle, limits)
                    .await
            }
            None => {
                strongroom_api::server::serve_plain_with(listener, router, serve_handle, limits)
                    .await
            }
        };
        // The background tasks live exactly as long as the server.
        drop(background);
        served
    });
    Ok(RunningServer {
        addr,
        url,
        vault,
        stores,
        sqlite,
        ca_cert_path,
        dev_credentials,
        watch,
        metrics_addr,
        handle,
        task,
    })
}

/// A server's parts, ready to serve: the router and what lives with it.
pub struct Assembled {
    /// Every route, with its middleware.
    pub router: axum::Router,
    /// The state behind the router (its lists of disabled and frozen
    /// principals and custom roles, among others).
    pub state: strongroom_api::ApiState,
    /// The vault behind it.
    pub vault: Arc<Vault>,
    /// The stores.
    pub stores: StoreSet,
    /// The SQLite files, when that is the backend.
    pub sqlite: Option<SqliteStores>,
    /// The detectors and the freezes.
    pub watch: Arc<strongroom_watch::Watch>,
    /// Tasks that live as long as the router is served: dropping this
    /// stops them.
    pub background: Background,
    /// Dev credentials (dev mode).
    pub dev_credentials: Option<DevCredentials>,
    /// Where metrics are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
}

/// Opens the stores, prepares the vault (and, in dev mode, creates,
/// unseals and bootstraps it) and builds the router with its background
/// tasks, for a server listening at `url` or a function behind a gateway.
pub async fn assemble(
    opts: &StartOptions,
    dir: &DataDir,
    url: &str,
    ca_cert_path: Option<PathBuf>,
) -> Result<Assembled> {
    let OpenStores {
        set: stores,
        sqlite,
    } = crate::storage::open(&opts.backend, dir).await?;
    let vault = Arc::new(Vault::new(
        stores.clone(),
        opts.clock.clone(),
        opts.vault_config.clone(),
    ));
    // Watching starts before the vault unseals, so no record goes unseen.
    let freezes = Arc::new(strongroom_watch::Freezes::default());
    let watch = strongroom_watch::Watch::start(opts.watch.clone(), vault.clone(), freezes.clone())
        .context("could not start the detectors")?;
    // Every background task from here on stops with the server, or at once
    // if starting fails: none may keep the unsealed vault alive.
    let mut background = Background {
        watch: watch.clone(),
        tasks: Vec::new(),
        servers: Vec::new(),
    };

    let mut dev_credentials = None;
    if opts.dev {
        dev_credentials = Some(dev_bootstrap(dir, &vault, url, ca_cert_path).await?);
    } else {
        let status = vault.seal_status().await?;
        if !status.initialized {
            bail!(
                "{} is not initialised; run `strongroom init --data-dir {}` first",
                dir.root.display(),
                dir.root.display()
            );
        }
        if status.seal_method == "dev-key-file" {
            tracing::warn!(
                "this data directory was created by `serve --dev`; its root key is in a file and it is unfit for production"
            );
            if let Some(root) = dir.read_dev_key()? {
                vault.unseal_with_root(&root, &startup_ctx()).await?;
            }
        }
    }

    let mut api_config = opts.api_config.clone();
    if api_config.public_url.is_empty() {
        api_config.public_url = url.to_owned();
    }
    background
        .tasks
        .push(spawn_housekeeping(vault.clone(), api_config.orders.clone()));
    if let Some(every) = opts.checkpoint_every {
        background
            .tasks
            .push(spawn_checkpoints(vault.clone(), every));
    }
    background.tasks.extend(
        strongroom_watch::forward::start(
            &opts.forwarders,
            vault.stores().audit.clone(),
            vault.stores().central.clone(),
            watch.clone(),
        )
        .context("could not start audit forwarding")?,
    );
    let relay = strongroom_api::relay::Relay::new(&api_config.relay_routes)
        .context("could not set up the relay")?;
    let mut state = ApiState::new(vault.clone(), api_config);
    state.freezes = freezes.clone();
    state.relay = Arc::new(relay);
    let supply = Arc::new(
        opts.suppliers
            .build(&vault)
            .context("could not set up the suppliers")?,
    );
    background.tasks.extend(crate::suppliers::spawn_scheduler(
        supply.clone(),
        vault.clone(),
        &opts.suppliers,
    ));
    state.supply = supply;
    if let Some(url) = &opts.api_config.cvv_redis_url {
        let vault_id = vault.seal_status().await?.vault_id.unwrap_or_default();
        let store = strongroom_cvv_redis::RedisCvvStore::connect(url, &vault_id)
            .await
            .context("could not reach the Redis of `cards.cvv_redis_url`")?;
        vault.set_shared_cvv_store(Arc::new(store));
    }
    if opts.api_config.rate_limits.redis_url.is_some() {
        let vault_id = vault.seal_status().await?.vault_id.unwrap_or_default();
        state
            .rate_limits
            .connect_shared(&vault_id)
            .await
            .context("could not reach the Redis of `ratelimit.redis_url`")?;
    }
    let revocations = state.revocations.clone();
    let seals = vault.row_seals().ok();
    revocations
        .refresh(vault.stores().central.as_ref(), seals.as_deref())
        .await?;
    state
        .roles
        .refresh(vault.stores().central.as_ref(), seals.as_deref())
        .await?;
    freezes.refresh(vault.stores().central.as_ref()).await?;
    {
        let (revocations, central) = (revocations.clone(), vault.stores().central.clone());
        let vault = vault.clone();
        let roles = state.roles.clone();
        let rate_limits = state.rate_limits.clone();
        let freezes = freezes.clone();
        background.tasks.push(tokio::spawn(async move {
            let period = std::time::Duration::from_secs(strongroom_api::revocation::REFRESH_SECS);
            loop {
                tokio::time::sleep(period).await;
                rate_limits.prune();
                let seals = vault.row_seals().ok();
                let seals = seals.as_deref();
                if let Err(e) = revocations.refresh(central.as_ref(), seals).await {
                    tracing::warn!(error = %e, "could not refresh the list of disabled principals");
                }
                if let Err(e) = roles.refresh(central.as_ref(), seals).await {
                    tracing::warn!(error = %e, "could not refresh the custom roles");
                }
                if let Err(e) = freezes.refresh(central.as_ref()).await {
                    tracing::warn!(error = %e, "could not refresh the frozen principals");
                }
            }
        }));
    }
    let metrics_addr = match &opts.metrics {
        Some(m) => {
            let listener = TcpListener::bind(&m.listen)
                .with_context(|| format!("could not listen for metrics on {}", m.listen))?;
            let bound = listener.local_addr()?;
            if !is_loopback(&bound) && m.token.is_none() {
                bail!("metrics on {bound}, off loopback, need a token: set metrics.token_file");
            }
            let metrics = strongroom_api::metrics::MetricsState::new(
                vault.clone(),
                watch.clone(),
                state.metrics.clone(),
                opts.forwarders.iter().map(|f| f.name.clone()).collect(),
                m.token.clone(),
            );
            let router = strongroom_api::metrics::router(metrics);
            let metrics_handle = Handle::new();
            background.servers.push(metrics_handle.clone());
            background.tasks.push(tokio::spawn(async move {
                if let Err(e) =
                    strongroom_api::server::serve_plain(listener, router, metrics_handle).await
                {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            }));
            tracing::info!(addr = %bound, "serving metrics");
            Some(bound)
        }
        None => None,
    };
    Ok(Assembled {
        router: strongroom_api::router(state.clone()),
        state,
        vault,
        stores,
        sqlite,
        watch,
        background,
        dev_credentials,
        metrics_addr,
    })
}

/// The server's background tasks: stopped when dropped, so that neither a
/// finished server nor one that failed to start leaves a task holding the
/// vault (and its keys) alive.
pub struct Background {
    watch: Arc<strongroom_watch::Watch>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    servers: Vec<Handle<SocketAddr>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for server in &self.servers {
            server.shutdown();
        }
        for task in &self.tasks {
            task.abort();
        }
        self.watch.stop();
    }
}

/// How often the server releases stale reservations and retires expired
/// stock.
const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// The server's own voucher jobs, each pass audited as `system:…`: releases
/// reservations whose order never got delivered, marks stock whose code has
/// expired, moves delivered vouchers past their age to the archive vault.
/// Skipped while the vault is sealed.
/// Signs the audit chain head into the log every `every` (see
/// `Vault::record_checkpoint`), while unsealed.
fn spawn_checkpoints(vault: Arc<Vault>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if !vault.is_unsealed() {
                continue;
            }
            match vault.record_checkpoint().await {
                Ok(Some(c)) => tracing::debug!(seq = c.seq, "audit checkpoint signed"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not sign an audit checkpoint"),
            }
        }
    })
}

fn spawn_housekeeping(
    vault: Arc<Vault>,
    config: strongroom_vouchers::OrderConfig,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let orders = strongroom_vouchers::Orders::new(vault.clone(), config.clone());
        let archiver = strongroom_vault::Principal::system(
            "archive",
            strongroom_vault::PermissionSet::EMPTY
                .with(strongroom_vault::Permission::ArchiveVouchers),
        );
        let ctx = RequestContext {
            request_id: "housekeeping".into(),
            client_addr: None,
        };
        loop {
            tokio::time::sleep(HOUSEKEEPING_EVERY).await;
            // Expired CVVs go at once, not when someone next asks for them.
            let swept = vault.sweep_cvvs();
            if swept > 0 {
                tracing::debug!(cvvs = swept, "expired CVVs forgotten");
            }
            if !vault.is_unsealed() {
                continue;
            }
            if let Err(e) = orders.release_stale(&ctx).await {
                tracing::warn!(error = %e, "could not release stale reservations");
            }
            match orders.expire_stock(&ctx).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(vouchers = n, "stock past its expiry date marked expired"),
                Err(e) => tracing::warn!(error = %e, "could not mark expired stock"),
            }
            loop {
                match strongroom_vouchers::archive::archive_batch(
                    &vault,
                    &archiver,
                    &ctx,
                    config.archive_after_secs,
                    strongroom_vouchers::archive::BATCH,
                )
                .await
                {
                    Ok(b) if b.archived > 0 => {
                        tracing::info!(
                            vouchers = b.archived,
                            remaining = b.remaining,
                            "archived delivered vouchers"
                        );
                        if b.remaining == 0 {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not archive delivered vouchers");
                        break;
                    }
                }
            }
        }
    })
}

fn startup_ctx() -> RequestContext {
    RequestContext {
        request_id: "startup".into(),
        client_addr: None,
    }
}

async fn dev_bootstrap(
    dir: &DataDir,
    vault: &Arc<Vault>,
    url: &str,
    ca_cert_path: Option<PathBuf>,
) -> Result<DevCredentials> {
    let status = vault.seal_status().await?;
    if !status.initialized {
        let init = initialize(vault.stores(), SealMethod::DevKeyFile).await?;
        dir.write_dev_key(&init.root_key)?;
    } else if status.seal_method != "dev-key-file" {
        bail!(
            "{} holds a production vault (sealed with key shares); `serve --dev` only runs development data directories",
            dir.root.display()
        );
    }
    let root = dir
        .read_dev_key()?
        .context("the dev key file is missing; delete the dev data directory to start afresh")?;
    vault.unseal_with_root(&root, &startup_ctx()).await?;
    drop(root);

    // Reuse the dev principals if they still exist, so restarts keep credentials.
    let path = dir.dev_credentials();
    let existing: Option<DevCredentials> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let reusable = match &existing {
        Some(c) => vault
            .stores()
            .central
            .principal_by_client_id(&c.admin.client_id)
            .await?
            .is_some(),
        None => false,
    };
    let mut creds = match (existing, reusable) {
        (Some(c), true) => c,
        _ => {
            let suffix = strongroom_crypto::random::hex_id::<3>()?;
            let mk = |c: strongroom_api::identity::NewCredentials| DevIdentity {
                client_id: c.record.client_id.clone(),
                client_secret: c.client_secret.to_string(),
            };
            let admin = create_principal(
                vault,
                &format!("dev-admin-{suffix}"),
                &["admin"],
                &["*"],
                "dev bootstrap",
            )
            .await?;
            let service = create_principal(
                vault,
                &format!("dev-service-{suffix}"),
                &["ingest", "fulfilment"],
                &["dev"],
                "dev bootstrap",
            )
            .await?;
            let officer = create_principal(
                vault,
                &format!("dev-officer-{suffix}"),
                &["security_officer"],
                &["dev"],
                "dev bootstrap",
            )
            .await?;
            DevCredentials {
                url: url.to_owned(),
                ca_cert_path: None,
                admin: mk(admin),
                service: mk(service),
                security_officer: mk(officer),
                stock_manager: None,
                auditor: None,
                gateway: None,
            }
        }
    };
    if creds.stock_manager.is_none() {
        let suffix = strongroom_crypto::random::hex_id::<3>()?;
        let made = create_principal(
            vault,
            &format!("dev-stock-{suffix}"),
            &["stock_manager"],
            &["dev"],
            "dev bootstrap",
        )
        .await?;
        creds.stock_manager = Some(DevIdentity {
            client_id: made.record.client_id.clone(),
            client_secret: made.client_secret.to_string(),
        });
    }
    if creds.auditor.is_none() {
        let suffix = strongroom_crypto::random::hex_id::<3>()?;
        let made = create_principal(
            vault,
            &format!("dev-auditor-{suffix}"),
            &["auditor"],
            &["*"],
            "dev bootstrap",
        )
        .await?;
        creds.auditor = Some(DevIdentity {
            client_id: made.record.client_id.clone(),
            client_secret: made.client_secret.to_string(),
        });
    }
    if creds.gateway.is_none() {
        crate::bootstrap::define_dev_role(vault, "dev-gateway", &["cards:relay"]).await?;
        let catalog = strongroom_api::roles::RoleCatalog::default();
        catalog
            .refresh(
                vault.stores().central.as_ref(),
                vault.row_seals().ok().as_deref(),
            )
            .await?;
        let suffix = strongroom_crypto::random::hex_id::<3>()?;
        let made = crate::bootstrap::create_principal_in(
            vault,
            &catalog,
            &format!("dev-gateway-{suffix}"),
            &["ingest", "dev-gateway"],
            &["dev"],
            "dev bootstrap",
        )
        .await?;
        creds.gateway = Some(DevIdentity {
            client_id: made.record.client_id.clone(),
            client_secret: made.client_secret.to_string(),
        });
    }
    creds.url = url.to_owned();
    creds.ca_cert_path = ca_cert_path;
    write_private(&path, &serde_json::to_vec_pretty(&creds)?)?;
    Ok(creds)
}
