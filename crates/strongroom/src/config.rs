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
    /// Access token lifetime, seconds (60 to 3600).
    pub token_ttl_secs: u64,
    /// Items per batch request.
    pub max_batch_items: usize,
    /// Default reveal window, seconds.
    pub default_reveal_window_secs: u64,
    /// Longest reveal window, seconds.
    pub max_reveal_window_secs: u64,
    /// Largest secret, bytes.
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let vault = strongroom_vault::VaultConfig::default();
        let api = strongroom_api::ApiConfig::default();
        Self {
            token_ttl_secs: api.token_ttl_secs,
            max_batch_items: api.max_batch_items,
            default_reveal_window_secs: vault.default_reveal_window_secs,
            max_reveal_window_secs: vault.max_reveal_window_secs,
            max_value_bytes: vault.max_value_bytes,
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

impl ServerConfig {
    /// Loads a TOML file, then `STRONGROOM_*` variables (`STRONGROOM_LIMITS__TOKEN_TTL_SECS=600`).
    pub fn load(path: &Path) -> Result<Self> {
        let config: Self = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed("STRONGROOM_").split("__").only(&[
                "data_dir",
                "listen",
                "insecure_http",
                "limits",
                "log",
                "tls",
            ]))
            .extract()
            .with_context(|| format!("invalid configuration in {}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if !(60..=3600).contains(&self.limits.token_ttl_secs) {
            anyhow::bail!("limits.token_ttl_secs must be between 60 and 3600");
        }
        if self.limits.max_batch_items == 0 || self.limits.max_batch_items > 10_000 {
            anyhow::bail!("limits.max_batch_items must be between 1 and 10000");
        }
        Ok(())
    }

    /// The vault limits.
    pub fn vault_config(&self) -> strongroom_vault::VaultConfig {
        strongroom_vault::VaultConfig {
            default_reveal_window_secs: self.limits.default_reveal_window_secs,
            max_reveal_window_secs: self.limits.max_reveal_window_secs,
            max_value_bytes: self.limits.max_value_bytes,
            ..Default::default()
        }
    }

    /// The API limits.
    pub fn api_config(&self) -> strongroom_api::ApiConfig {
        let batch_body = self.limits.max_batch_items * (self.limits.max_value_bytes + 4096 + 512);
        strongroom_api::ApiConfig {
            token_ttl_secs: self.limits.token_ttl_secs,
            max_batch_items: self.limits.max_batch_items,
            max_batch_body_bytes: batch_body.max(64 * 1024),
            ..Default::default()
        }
    }
}
