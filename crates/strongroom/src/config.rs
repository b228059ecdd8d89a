//! The server's TOML configuration, with `STRONGROOM_` environment overrides.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

/// `strongroom serve --config FILE`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Data directory holding the four stores.
    pub data_dir: PathBuf,
    /// Listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// TLS certificate and key. Required unless `insecure_http` on loopback.
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP (loopback only).
    #[serde(default)]
    pub insecure_http: bool,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Where the stores live.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Abuse limits (`[ratelimit]`).
    #[serde(default)]
    pub ratelimit: strongroom_api::ratelimit::RateLimitConfig,
    /// Orders and reveal links (`[vouchers]`).
    #[serde(default)]
    pub vouchers: VoucherSettings,
    /// Detectors, alerts and containment (`[watch]`); see docs/monitoring.md.
    #[serde(default)]
    pub watch: strongroom_watch::WatchConfig,
    /// The audit log's checkpoints and forwarding (`[audit]`).
    #[serde(default)]
    pub audit: AuditSettings,
    /// Prometheus metrics (`[metrics]`).
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// The detokenizing relay (`[[relay.route]]`, see docs/cards.md).
    #[serde(default)]
    pub relay: RelaySettings,
    /// Card data (`[cards]`, see docs/cards.md).
    #[serde(default)]
    pub cards: CardSettings,
    /// Risk scoring thresholds (`[risk]`, see docs/cards.md).
    #[serde(default)]
    pub risk: strongroom_risk::RiskConfig,
    /// Suppliers codes are bought from (`[suppliers]`, see docs/suppliers.md).
    #[serde(default)]
    pub suppliers: crate::suppliers::SuppliersSettings,
}

/// `[cards]`: where CVVs wait for the relay.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSettings {
    /// Redis (`redis://` or `rediss://`) holding CVVs, sealed in the vault
    /// before they leave it, so every node can relay a CVV another took;
    /// absent: each node's own memory.
    pub cvv_redis_url: Option<String>,
}

/// `[relay]`: routes to payment processors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// The routes.
    #[serde(default)]
    pub route: Vec<strongroom_api::relay::RelayRoute>,
}

/// `[metrics]`: Prometheus metrics on a listener of their own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Where to serve `GET /metrics` (plain HTTP), e.g. `127.0.0.1:9464`;
    /// absent: no metrics.
    pub listen: Option<String>,
    /// File holding the bearer token scrapers must send; required unless
    /// `listen` is a loopback address.
    pub token_file: Option<PathBuf>,
}

impl MetricsSettings {
    /// The listener's options, with the token read from its file.
    pub fn options(&self) -> Result<Option<crate::app::MetricsOptions>> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        let token = match &self.token_file {
            Some(path) => {
                let text =
                    zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                        format!("could not read metrics.token_file {}", path.display())
                    })?);
                let token = zeroize::Zeroizing::new(text.trim().to_owned());
                if token.len() < 32 {
                    anyhow::bail!(
                        "the metrics token in {} is shorter than 32 characters",
                        path.display()
                    );
                }
                Some(token)
            }
            None => None,
        };
        Ok(Some(crate::app::MetricsOptions {
            listen: listen.clone(),
            token,
        }))
    }
}

/// `[audit]`: signed checkpoints of the chain head, and where the log is
/// forwarded (`[[audit.forward]]`, see docs/monitoring.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// How often the chain head is signed and the checkpoint written into
    /// the log, seconds (0: never; at least 10 otherwise).
    pub checkpoint_secs: u64,
    /// Live forwarding to syslog or HTTPS receivers.
    pub forward: Vec<strongroom_watch::forward::ForwarderConfig>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_secs: 300,
            forward: Vec::new(),
        }
    }
}

/// `[vouchers]`: how orders hand codes over.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoucherSettings {
    /// How long a delivered code can be revealed, hours (1 to 8760); then
    /// it is dormant until re-opened under four eyes.
    pub delivered_window_hours: u64,
    /// A reservation not delivered within this is released, seconds (10 to 3600).
    pub reservation_secs: u64,
    /// How long a reveal link works, hours (1 to 8760; never past the window).
    pub link_ttl_hours: u64,
    /// How many times a reveal link can be opened (1 to 100).
    pub link_views: i64,
    /// Where customers reach this server, for reveal links
    /// (`https://vouchers.example.com`); default: the listen address.
    pub public_url: Option<String>,
    /// Redeliveries of one voucher allowed in 24 hours (1 to 100).
    pub max_redeliveries_per_day: i64,
    /// Delivered vouchers older than this many days move to the archive
    /// vault (1 to 3650); the server checks every 30 seconds.
    pub archive_after_days: u64,
}

impl Default for VoucherSettings {
    fn default() -> Self {
        let o = strongroom_vouchers::OrderConfig::default();
        Self {
            delivered_window_hours: o.delivered_window_secs / 3600,
            reservation_secs: o.reservation_secs,
            link_ttl_hours: o.link_ttl_secs / 3600,
            link_views: o.link_views,
            public_url: None,
            max_redeliveries_per_day: o.max_redeliveries_per_day,
            archive_after_days: o.archive_after_secs / 86_400,
        }
    }
}

/// `[storage]`: the embedded SQLite files (default) or PostgreSQL.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite` or `postgres`.
    #[serde(default)]
    pub backend: BackendName,
    /// `[storage.postgres]`, for `backend = "postgres"`.
    pub postgres: Option<PostgresConfig>,
}

/// A storage backend's name.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    /// SQLite files in `data_dir`.
    #[default]
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// `[storage.postgres]`: either one URL per store (as `strongroom db setup`
/// prints them), or one `url` whose user each store replaces with its own
/// role (passwords then come from `PGPASSFILE` / `~/.pgpass`). URLs take
/// libpq's options, e.g. `?sslmode=verify-full&sslrootcert=/etc/strongroom/db-ca.pem`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Prefix of schema and role names given to `db setup`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Connections per store on this node.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// One URL for every store.
    pub url: Option<String>,
    /// The central store's URL.
    pub central_url: Option<String>,
    /// The vault store's URL.
    pub vault_url: Option<String>,
    /// The archive store's URL.
    pub archive_url: Option<String>,
    /// The audit store's URL.
    pub audit_url: Option<String>,
}

fn default_prefix() -> String {
    strongroom_store_postgres::DEFAULT_PREFIX.into()
}

fn default_max_connections() -> u32 {
    8
}

impl StorageConfig {
    /// The backend these settings select.
    pub fn backend(&self) -> Result<crate::storage::Backend> {
        use crate::storage::{Backend, PostgresSettings};
        match (self.backend, &self.postgres) {
            (BackendName::Sqlite, _) => Ok(Backend::Sqlite),
            (BackendName::Postgres, None) => {
                anyhow::bail!(
                    "storage.backend is \"postgres\" but there is no [storage.postgres] section"
                )
            }
            (BackendName::Postgres, Some(pg)) => {
                let names = strongroom_store_postgres::Names::new(&pg.prefix)?;
                let urls = match (
                    &pg.url,
                    &pg.central_url,
                    &pg.vault_url,
                    &pg.archive_url,
                    &pg.audit_url,
                ) {
                    (None, Some(c), Some(v), Some(ar), Some(au)) => {
                        strongroom_store_postgres::PgUrls {
                            central: c.clone(),
                            vault: v.clone(),
                            archive: ar.clone(),
                            audit: au.clone(),
                        }
                    }
                    (Some(base), None, None, None, None) => {
                        strongroom_store_postgres::PgUrls::from_base(base, &names)?
                    }
                    _ => anyhow::bail!(
                        "[storage.postgres] needs either `url`, or all four of central_url, vault_url, archive_url and audit_url"
                    ),
                };
                Ok(Backend::Postgres(PostgresSettings {
                    urls,
                    prefix: pg.prefix.clone(),
                    max_connections: pg.max_connections,
                }))
            }
        }
    }
}

/// PEM files for TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// Tunable limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Access token lifetime of services, seconds (60 to 3600).
    pub token_ttl_secs: u64,
    /// Access token lifetime of people, seconds (300 to 3600).
    pub person_token_ttl_secs: u64,
    /// Items per batch request.
    pub max_batch_items: usize,
    /// Default reveal window, seconds.
    pub default_reveal_window_secs: u64,
    /// Longest reveal window, seconds.
    pub max_reveal_window_secs: u64,
    /// Largest secret, bytes.
    pub max_value_bytes: usize,
    /// Failed logins in a row that lock a person's account (3 to 100);
    /// an administrator unlocks it.
    pub lock_after_failures: i64,
    /// Seconds a connection has to finish its TLS handshake, then each
    /// request's headers; also the longest it may sit idle (1 to 300).
    pub header_read_timeout_secs: u64,
    /// Open connections from one client address (1 to 100,000); behind a
    /// proxy every client shares its address, so raise it there.
    pub max_connections_per_address: usize,
    /// Open connections in all (1 to 1,000,000).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let vault = strongroom_vault::VaultConfig::default();
        let api = strongroom_api::ApiConfig::default();
        Self {
            token_ttl_secs: api.token_ttl_secs,
            person_token_ttl_secs: api.person_token_ttl_secs,
            max_batch_items: api.max_batch_items,
            default_reveal_window_secs: vault.default_reveal_window_secs,
            max_reveal_window_secs: vault.max_reveal_window_secs,
            max_value_bytes: vault.max_value_bytes,
            lock_after_failures: api.lock_after_failures,
            header_read_timeout_secs: api.connections.header_read_timeout.as_secs(),
            max_connections_per_address: api.connections.max_per_address,
            max_connections: api.connections.max_total,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter, e.g. `info` or `strongroom=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8443".into()
}

/// The top-level keys of the configuration file.
const SECTIONS: [&str; 16] = [
    "data_dir",
    "listen",
    "insecure_http",
    "limits",
    "log",
    "tls",
    "storage",
    "ratelimit",
    "vouchers",
    "watch",
    "audit",
    "metrics",
    "relay",
    "cards",
    "risk",
    "suppliers",
];

impl ServerConfig {
    /// The development server's settings: `./strongroom-dev` on
    /// 127.0.0.1:8443, then `STRONGROOM_*` variables as for a file.
    pub fn dev() -> Result<Self> {
        Self::extract(
            Figment::new().merge(Toml::string(
                "data_dir = \"strongroom-dev\"\nlisten = \"127.0.0.1:8443\"\n",
            )),
            "the development settings",
        )
    }

    /// Loads a TOML file, then `STRONGROOM_*` variables (`STRONGROOM_LIMITS__TOKEN_TTL_SECS=600`).
    pub fn load(path: &Path) -> Result<Self> {
        Self::extract(
            Figment::new().merge(Toml::file_exact(path)),
            &path.display().to_string(),
        )
    }

    fn extract(base: Figment, what: &str) -> Result<Self> {
        let config: Self = base
            // Only variables naming a section of this file: other
            // STRONGROOM_* variables (client settings, secrets) are not
            // configuration. The filter sees the key after the split, so a
            // nested key (`limits.token_ttl_secs`) is kept by its section.
            .merge(Env::prefixed("STRONGROOM_").split("__").filter(|key| {
                // Keys are still in their original case here.
                let section = key.as_str().split('.').next().unwrap_or_default();
                SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
            }))
            .extract()
            .with_context(|| format!("invalid configuration in {what}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        self.suppliers.check()?;
        for forwarder in &self.audit.forward {
            forwarder.check()?;
        }
        if self.audit.checkpoint_secs != 0 && self.audit.checkpoint_secs < 10 {
            anyhow::bail!("audit.checkpoint_secs must be 0 (never) or at least 10");
        }
        if !(60..=3600).contains(&self.limits.token_ttl_secs) {
            anyhow::bail!("limits.token_ttl_secs must be between 60 and 3600");
        }
        let r = &self.ratelimit;
        let rates = [r.per_principal, r.per_address, r.auth_per_address]
            .into_iter()
            .chain(r.per_role.values().copied());
        for rate in rates {
            if rate.per_sec == 0 || rate.burst == 0 {
                anyhow::bail!("ratelimit: every rate needs per_sec and burst of at least 1");
            }
        }
        for role in r.per_role.keys() {
            // Custom roles are defined at run time, so any well-formed name
            // is accepted; a built-in one is checked by its own rule.
            if strongroom_vault::Role::builtin(role).is_none() {
                strongroom_vault::policy::validate_role_name(role)
                    .map_err(|e| anyhow::anyhow!("ratelimit.per_role: {e}"))?;
            }
        }
        if !(1..=300).contains(&self.limits.header_read_timeout_secs) {
            anyhow::bail!("limits.header_read_timeout_secs must be between 1 and 300");
        }
        if !(1..=100_000).contains(&self.limits.max_connections_per_address) {
            anyhow::bail!("limits.max_connections_per_address must be between 1 and 100000");
        }
        if !(1..=1_000_000).contains(&self.limits.max_connections) {
            anyhow::bail!("limits.max_connections must be between 1 and 1000000");
        }
        if !(300..=3600).contains(&self.limits.person_token_ttl_secs) {
            anyhow::bail!("limits.person_token_ttl_secs must be between 300 and 3600");
        }
        if !(3..=100).contains(&self.limits.lock_after_failures) {
            anyhow::bail!("limits.lock_after_failures must be between 3 and 100");
        }
        let v = &self.vouchers;
        if !(1..=8760).contains(&v.delivered_window_hours)
            || !(1..=8760).contains(&v.link_ttl_hours)
        {
            anyhow::bail!(
                "vouchers.delivered_window_hours and vouchers.link_ttl_hours must be between 1 and 8760"
            );
        }
        if !(10..=3600).contains(&v.reservation_secs) {
            anyhow::bail!("vouchers.reservation_secs must be between 10 and 3600");
        }
        if !(1..=100).contains(&v.link_views) {
            anyhow::bail!("vouchers.link_views must be between 1 and 100");
        }
        if !(1..=100).contains(&v.max_redeliveries_per_day) {
            anyhow::bail!("vouchers.max_redeliveries_per_day must be between 1 and 100");
        }
        if !(1..=3650).contains(&v.archive_after_days) {
            anyhow::bail!("vouchers.archive_after_days must be between 1 and 3650");
        }
        if let Some(url) = &v.public_url {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("vouchers.public_url is not a URL: {e}"))?;
            let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            let ok = parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback);
            if !ok || parsed.host_str().is_none() {
                anyhow::bail!(
                    "vouchers.public_url must be an https:// address (plain http only on localhost)"
                );
            }
        }
        if self.limits.max_batch_items == 0 || self.limits.max_batch_items > 10_000 {
            anyhow::bail!("limits.max_batch_items must be between 1 and 10000");
        }
        self.risk.check().map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// The vault limits.
    pub fn vault_config(&self) -> strongroom_vault::VaultConfig {
        strongroom_vault::VaultConfig {
            default_reveal_window_secs: self.limits.default_reveal_window_secs,
            max_reveal_window_secs: self.limits.max_reveal_window_secs,
            max_value_bytes: self.limits.max_value_bytes,
            risk: self.risk.clone(),
            ..Default::default()
        }
    }

    /// The API limits.
    pub fn api_config(&self) -> strongroom_api::ApiConfig {
        let batch_body = self.limits.max_batch_items * (self.limits.max_value_bytes + 4096 + 512);
        strongroom_api::ApiConfig {
            token_ttl_secs: self.limits.token_ttl_secs,
            person_token_ttl_secs: self.limits.person_token_ttl_secs,
            max_batch_items: self.limits.max_batch_items,
            max_batch_body_bytes: batch_body.max(64 * 1024),
            lock_after_failures: self.limits.lock_after_failures,
            rate_limits: self.ratelimit.clone(),
            orders: strongroom_vouchers::OrderConfig {
                delivered_window_secs: self.vouchers.delivered_window_hours * 3600,
                reservation_secs: self.vouchers.reservation_secs,
                link_ttl_secs: self.vouchers.link_ttl_hours * 3600,
                link_views: self.vouchers.link_views,
                max_redeliveries_per_day: self.vouchers.max_redeliveries_per_day,
                archive_after_secs: self.vouchers.archive_after_days * 86_400,
            },
            public_url: self.vouchers.public_url.clone().unwrap_or_default(),
            relay_routes: self.relay.route.clone(),
            cvv_redis_url: self.cards.cvv_redis_url.clone(),
            connections: strongroom_api::server::ConnectionLimits {
                header_read_timeout: std::time::Duration::from_secs(
                    self.limits.header_read_timeout_secs,
                ),
                max_per_address: self.limits.max_connections_per_address,
                max_total: self.limits.max_connections,
            },
            ..Default::default()
        }
    }
}
