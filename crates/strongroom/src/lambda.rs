//! The API as an AWS Lambda function behind API Gateway (HTTP API, payload
//! format 2.0): the same router as `serve`, with two differences a gateway
//! makes.
//!
//! * **The client's address** comes from the gateway's request context
//!   (`requestContext.http.sourceIp`, which API Gateway takes from the
//!   connection and a caller cannot set), not from a socket: rate limits per
//!   address and the audit log's client address use it. A caller's own
//!   `X-Forwarded-For` is ignored.
//! * **Unsealing** cannot wait for operators at every cold start: the
//!   function reads key shares from a file its deployment provides (from a
//!   secret store, never the function's environment), and refuses one that
//!   other users can read. That file is then as valuable as the root key;
//!   see docs/cards.md.
//!
//! TLS ends at the gateway; the stores must be PostgreSQL (a function's disk
//! lasts as long as its instance).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result, bail};
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

/// The router as a function serves it: the client address taken from the
/// gateway's request context.
pub fn gateway_router(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(gateway_client_address))
}

async fn gateway_client_address(mut req: Request, next: Next) -> Response {
    // Whatever a socket said (there is none under Lambda) gives way to the
    // gateway's view of the caller.
    req.extensions_mut().remove::<ConnectInfo<SocketAddr>>();
    if let Some(ip) = source_ip(&req) {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 0)));
    }
    next.run(req).await
}

/// The caller's address as API Gateway saw it.
fn source_ip(req: &Request) -> Option<IpAddr> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref()?.parse().ok(),
        _ => None,
    }
}

/// Reads key shares, one per line, from `path`, refusing a file other users
/// can read.
pub fn read_shares(path: &Path) -> Result<Vec<zeroize::Zeroizing<String>>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("could not read the key shares file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "the key shares file {} has mode {mode:o}: other users can read it. Fix with `chmod 600`",
            path.display()
        );
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("could not read the key shares file {}", path.display()))?,
    );
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
