//! Operational logging (tracing). Never given a secret: values are held in
//! redacting types and handlers skip request bodies.

use anyhow::{Result, anyhow};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` wins over `level`.
pub fn init(level: &str, format: &str) -> Result<()> {
    init_capped(level, format, &[])
}

/// Libraries that log whole requests when asked for traces: the Lambda
/// runtime writes every event, bodies (card numbers, CVVs, passwords) and
/// headers (bearer tokens) included, at `trace`. Capped whatever the level.
pub const LAMBDA_CAPS: [&str; 2] = ["lambda_runtime=info", "lambda_http=info"];

/// [`init`] with `caps` (`target=level`) in force whatever `RUST_LOG` or
/// `level` say about those targets.
pub fn init_capped(level: &str, format: &str, caps: &[&str]) -> Result<()> {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_owned());
    let spec = capped(&spec, caps);
    let filter =
        EnvFilter::try_new(&spec).map_err(|e| anyhow!("invalid log level '{spec}': {e}"))?;
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

/// `spec` without its directives for the targets of `caps`, then `caps`.
pub fn capped(spec: &str, caps: &[&str]) -> String {
    let capped_targets: Vec<&str> = caps.iter().filter_map(|c| c.split('=').next()).collect();
    let mut parts: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| {
            let target = d.split(['=', '[']).next().unwrap_or_default();
            !capped_targets
                .iter()
                .any(|t| target == *t || target.starts_with(&format!("{t}::")))
        })
        .collect();
    parts.extend(caps.iter().copied());
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lambda_runtime_never_traces_requests() {
        assert_eq!(
            capped("trace", &LAMBDA_CAPS),
            "trace,lambda_runtime=info,lambda_http=info"
        );
        assert_eq!(
            capped(
                "info,lambda_runtime=trace,lambda_runtime::layers=trace,hyper=debug",
                &LAMBDA_CAPS
            ),
            "info,hyper=debug,lambda_runtime=info,lambda_http=info"
        );
        assert_eq!(capped("debug", &[]), "debug");
    }
}
