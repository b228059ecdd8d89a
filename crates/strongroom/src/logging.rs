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
/// `level` say: the caps are a second filter every event must also pass, so
/// no directive (a longer target, a span filter) can lift them.
pub fn init_capped(level: &str, format: &str, caps: &[&str]) -> Result<()> {
    use tracing_subscriber::util::SubscriberInitExt;
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_owned());
    subscriber(&spec, format, caps, std::io::stderr)?
        .try_init()
        .map_err(|e| anyhow!("could not install logging: {e}"))
}

/// The subscriber [`init_capped`] installs, filtered by `spec` and `caps`,
/// writing to `writer`.
pub fn subscriber<W>(
    spec: &str,
    format: &str,
    caps: &[&str],
    writer: W,
) -> Result<impl tracing::Subscriber + Send + Sync + 'static>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    let spec = capped(spec, caps);
    let filter =
        EnvFilter::try_new(&spec).map_err(|e| anyhow!("invalid log level '{spec}': {e}"))?;
    let mut limits = Targets::new().with_default(LevelFilter::TRACE);
    for cap in caps {
        let (target, level) = cap
            .split_once('=')
            .ok_or_else(|| anyhow!("a log cap is target=level, not '{cap}'"))?;
        let level: LevelFilter = level.parse().map_err(|e| anyhow!("log cap '{cap}': {e}"))?;
        limits = limits.with_target(target, level);
    }
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let layer = match format {
        "json" => layer.json().with_filter(filter.and(limits)).boxed(),
        "text" => layer.with_filter(filter.and(limits)).boxed(),
        other => return Err(anyhow!("log.format must be text or json, not '{other}'")),
    };
    Ok(tracing_subscriber::registry().with(layer))
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
#[allow(clippy::unwrap_used)]
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

    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_directive_lifts_the_caps() {
        for spec in [
            "trace",
            "lambda_runtime:=trace",
            "trace,lambda_runtime::layers=trace",
            "[{requestId}]=trace",
        ] {
            let buf = Buffer::default();
            let out = buf.clone();
            let sub = subscriber(spec, "text", &LAMBDA_CAPS, move || out.clone()).unwrap();
            tracing::subscriber::with_default(sub, || {
                tracing::trace!(target: "lambda_runtime::layers::api_response", "raw event 4111111111111111");
                tracing::info!(target: "lambda_runtime", "runtime started");
                tracing::trace!(target: "strongroom", "ours at trace");
            });
            let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            assert!(!text.contains("4111111111111111"), "{spec}: {text}");
            assert!(text.contains("runtime started"), "{spec}: {text}");
            if spec == "trace" {
                assert!(text.contains("ours at trace"), "{text}");
            }
        }
    }
}
