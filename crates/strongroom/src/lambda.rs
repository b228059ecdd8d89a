//! The API as an AWS Lambda function behind API Gateway (HTTP API, payload
//! format 2.0): the same router as `serve`, with two differences a gateway
//! makes.
//!
//! * **The client's address** comes from the gateway's request context
//!   (`requestContext.http.sourceIp`, which API Gateway takes from the
//!   connection; only a direct invocation could write it, so only the
//!   gateway may invoke), not from a socket: rate limits per address and the
//!   audit log's client address use it. A caller's own `X-Forwarded-For` is
//!   ignored.
//! * **Unsealing** cannot wait for operators at every cold start: the
//!   function reads key shares from a file its deployment provides (from a
//!   secret store, never the function's environment), refuses one that
//!   other users can read, and removes it once read. That file is as
//!   valuable as the root key; see docs/cards.md.
//! * **No background task runs while an instance is frozen**, so the lists
//!   of disabled and frozen principals are reloaded after it slept.
//!
//! TLS ends at the gateway; the stores must be PostgreSQL (a function's disk
//! lasts as long as its instance).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

/// The router as a function serves it: the client address taken from the
/// gateway's request context, and the lists of disabled and frozen
/// principals and custom roles brought up to date before the first request
/// after the instance slept (a frozen instance runs no background task).
pub fn gateway_router(router: axum::Router, state: strongroom_api::ApiState) -> axum::Router {
    gateway_router_with(router, state, STALE_AFTER)
}

/// [`gateway_router`] with the lists reloaded when older than `stale_after`.
pub fn gateway_router_with(
    router: axum::Router,
    state: strongroom_api::ApiState,
    stale_after: Duration,
) -> axum::Router {
    let awake = Arc::new(Awake {
        state,
        stale_after,
        refreshed: tokio::sync::Mutex::new(Instant::now()),
    });
    router
        .layer(axum::middleware::from_fn_with_state(
            awake,
            refresh_after_sleep,
        ))
        .layer(axum::middleware::from_fn(gateway_client_address))
}

/// The lists to refresh, and when they last were.
struct Awake {
    state: strongroom_api::ApiState,
    stale_after: Duration,
    refreshed: tokio::sync::Mutex<Instant>,
}

/// Lists older than this (twice the server's refresh period) are reloaded
/// before a request is served.
const STALE_AFTER: Duration = Duration::from_secs(2 * strongroom_api::revocation::REFRESH_SECS);

async fn refresh_after_sleep(
    axum::extract::State(awake): axum::extract::State<Arc<Awake>>,
    req: Request,
    next: Next,
) -> Response {
    {
        let mut refreshed = awake.refreshed.lock().await;
        if refreshed.elapsed() >= awake.stale_after {
            let s = &awake.state;
            let central = s.vault.stores().central.clone();
            let seals = s.vault.row_seals().ok();
            let results = [
                s.revocations
                    .refresh(central.as_ref(), seals.as_deref())
                    .await,
                s.roles.refresh(central.as_ref(), seals.as_deref()).await,
                s.freezes.refresh(central.as_ref()).await,
            ];
            if results.iter().all(Result::is_ok) {
                *refreshed = Instant::now();
            } else {
                // A principal disabled or frozen while this instance slept
                // must not get in on old lists: refused until they load.
                tracing::warn!("could not refresh the principal and role lists after sleeping");
                return strongroom_api::ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "store.unavailable",
                    "the principal lists could not be brought up to date; try again",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

async fn gateway_client_address(mut req: Request, next: Next) -> Response {
    // The gateway's view of the caller replaces whatever a socket said
    // (there is none under Lambda). An event without one (a direct
    // invocation) counts as the unspecified address, one shared bucket,
    // rather than escaping the per-address limits.
    let ip = source_ip(&req).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 0)));
    next.run(req).await
}

/// The caller's address as API Gateway saw it.
fn source_ip(req: &Request) -> Option<IpAddr> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref()?.parse().ok(),
        _ => None,
    }
}

/// Reads key shares, one per line, from `path`, then removes the file: it
/// is on disk only between the deployment writing it and the function
/// starting. Refuses a file other users can read (checked on the opened
/// file, not its name, so it cannot be swapped in between).
pub fn read_shares(path: &Path) -> Result<Vec<zeroize::Zeroizing<String>>> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("could not read the key shares file {}", path.display()))?;
    let meta = file.metadata()?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "the key shares file {} has mode {mode:o}: other users can read it. Fix with `chmod 600`",
            path.display()
        );
    }
    // Sized up front so the buffer is never moved (and copied) as it grows.
    let size = usize::try_from(meta.len()).unwrap_or(0).min(64 * 1024);
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(size + 1));
    file.by_ref()
        .take(64 * 1024)
        .read_to_end(&mut bytes)
        .with_context(|| format!("could not read the key shares file {}", path.display()))?;
    drop(file);
    std::fs::remove_file(path).with_context(|| {
        format!(
            "could not remove the key shares file {} after reading it",
            path.display()
        )
    })?;
    let text = std::str::from_utf8(&bytes).context("the key shares file is not text")?;
    let shares: Vec<_> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| zeroize::Zeroizing::new(l.to_owned()))
        .collect();
    if shares.is_empty() {
        bail!("the key shares file {} holds no share", path.display());
    }
    Ok(shares)
}

/// Unseals `vault` with `shares` unless it is unsealed already (by a share
/// file read on an earlier cold start, the vault's state is per process).
pub async fn unseal(
    vault: &strongroom_vault::Vault,
    shares: &[zeroize::Zeroizing<String>],
) -> Result<()> {
    let ctx = strongroom_vault::RequestContext {
        request_id: "lambda-start".into(),
        client_addr: None,
    };
    for share in shares {
        let status = vault
            .submit_share(share, &ctx)
            .await
            .context("a key share was refused")?;
        if !status.sealed {
            return Ok(());
        }
    }
    bail!("the key shares file holds too few shares to unseal (the vault needs its threshold)")
}
