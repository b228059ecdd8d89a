//! Operational logging (tracing). Never given a secret: values are held in
//! redacting types and handlers skip request bodies.

use anyhow::{Result, anyhow};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` wins over `level`.
pub fn init(level: &str, format: &str) -> Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .map_err(|e| anyhow!("invalid log level '{level}': {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        "json" => builder.json().try_init(),
        "text" => builder.try_init(),
        other => return Err(anyhow!("log.format must be text or json, not '{other}'")),
    };
    installed.map_err(|e| anyhow!("could not install logging: {e}"))
}
