//! Per-request context and the headers every response carries.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use strongroom_vault::RequestContext;

use crate::error::{ApiError, ErrorMarker};

/// Response header carrying the request id.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Assigns a request id, records the client address, and adds security
/// headers: responses may carry secrets, so none may be cached, and browsers
/// must only ever reach the API over HTTPS.
pub async fn request_context(
    axum::extract::State(state): axum::extract::State<crate::ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    let request_id = strongroom_crypto::random::hex_id::<12>().unwrap_or_else(|_| "unknown".into());
    let client_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let ctx = RequestContext {
        request_id: request_id.clone(),
        client_addr,
    };
    req.extensions_mut().insert(ctx);
    let method = req.method().clone();
    // The route pattern, not the raw path: keeps the log's cardinality bounded.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let started = std::time::Instant::now();
    let mut response = next.run(req).await;
    let mut error_code = None;
    if let Some(ErrorMarker(err)) = response.extensions_mut().remove::<ErrorMarker>() {
        error_code = Some(err.code);
        response = err.response(&request_id);
    }
    let elapsed = started.elapsed();
    state
        .metrics
        .record(method.as_str(), &route, response.status().as_u16(), elapsed);
    tracing::debug!(
        request_id = %request_id,
        %method,
        route = %route,
        status = response.status().as_u16(),
        error = error_code.unwrap_or(""),
        micros = elapsed.as_micros() as u64,
        "request"
    );
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=63072000; includeSubDomains"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A page that set its own (stricter or equal) policy keeps it.
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// A path as the audit log may keep it: a reveal link (`/v/…`) is a
/// credential to a code, so only its route is kept.
fn audited_path(path: &str) -> &str {
    if path.starts_with("/v/") {
        "/v/{link}"
    } else {
        path
    }
}

/// Counts every request against its client address (a stricter bucket for
/// the endpoints that take passwords, codes and shares); see `ratelimit`.
pub async fn limit_by_address(
    axum::extract::State(state): axum::extract::State<crate::ApiState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(addr) = req
        .extensions()
        .get::<RequestContext>()
        .and_then(|c| c.client_addr.clone())
    else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    let rate = state.rate_limits.address_rate(path);
    let scope = if crate::ratelimit::is_auth_path(path) {
        "auth"
    } else {
        "address"
    };
    match state
        .rate_limits
        .check(format!("{scope}:{addr}"), rate)
        .await
    {
        Ok(()) => next.run(req).await,
        Err(limited) => {
            if limited.first_this_minute {
                let ctx = req
                    .extensions()
                    .get::<RequestContext>()
                    .cloned()
                    .unwrap_or_default();
                let event = state.vault.event(
                    &ctx,
                    None,
                    "request.rate_limited",
                    None,
                    Some(audited_path(path)),
                    strongroom_audit::Outcome::Denied,
                    Some(format!("{scope} limit for {addr}")),
                );
                // Sealed, there is no log to write to; the request is
                // refused all the same.
                match state.vault.record(event).await {
                    Ok(()) | Err(strongroom_vault::VaultError::Sealed) => {}
                    Err(e) => return ApiError::from(e).into_response(),
                }
            }
            ApiError::rate_limited(limited.retry_after_secs).into_response()
        }
    }
}

/// Extractor for the request context set by [`request_context`].
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx(parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_default()))
    }
}

/// How long a client may take to send a body that is read ahead.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a request's body before the handler runs, when its declared length
/// is within the route's limit.
///
/// A handler that refuses a request before reading its body (no token, no
/// permission) would otherwise answer while the client is still sending, and
/// the connection would close under the client: one uploading with an
/// expired token would see a reset instead of the `401` that tells it what
/// to do. Ordinary bodies (at most `limits.max_body_bytes`) are read whole,
/// which handlers do anyway. A batch body, up to 16 MiB, is never buffered
/// here, where nothing bounds how many are held at once: if its token does
/// not verify, it is read and discarded chunk by chunk before the refusal;
/// otherwise the batch handler reads it whole, once it has a batch slot,
/// before it decides anything. Bodies
/// without a length, or over the limit, go on as they came, to be refused
/// (and audited) by the handler.
pub async fn read_body_first(
    axum::extract::State(state): axum::extract::State<crate::ApiState>,
    req: Request,
    next: Next,
) -> Response {
    use http_body_util::BodyExt;

    let batch = req.uri().path() == crate::BATCH_PATH;
    let limit = if batch {
        state.config.max_batch_body_bytes
    } else {
        state.config.max_body_bytes
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if !declared.is_some_and(|length| length > 0 && length <= limit) {
        return next.run(req).await;
    }
    let (parts, mut body) = req.into_parts();
    if batch {
        // With a valid token the batch handler reads the whole body before
        // it decides anything; without one it is refused before reading.
        let token_ok = crate::auth::bearer_token(&parts.headers)
            .is_some_and(|t| crate::auth::verify(&state, t).is_ok());
        if !token_ok {
            let drained = tokio::time::timeout(BODY_READ_TIMEOUT, async {
                let mut read = 0usize;
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else { break };
                    read += frame.data_ref().map_or(0, |d| d.len());
                    if read > limit {
                        break;
                    }
                }
            })
            .await;
            if drained.is_err() {
                return body_timeout();
            }
            return next
                .run(Request::from_parts(parts, axum::body::Body::empty()))
                .await;
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => {
            ApiError::invalid("the request body could not be read in full").into_response()
        }
        Err(_) => body_timeout(),
    }
}

fn body_timeout() -> Response {
    ApiError::new(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        "request.timeout",
        "the request body did not arrive in time",
    )
    .into_response()
}
