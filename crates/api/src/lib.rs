//! Strongroom's HTTP API: JSON over HTTPS.
//!
//! Handlers are thin: extract the request, authenticate the caller (an
//! extractor), call the vault, map the result. Every response carries a
//! request id and `Cache-Control: no-store`; every error has the same shape
//! and a stable code (see [`error`]).
#![forbid(unsafe_code)]
// Tests may panic: a failed unwrap is a failed test, which is the point.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod auth;
mod context;
pub mod error;
pub mod identity;
pub(crate) mod json;
pub mod passwords;
pub mod ratelimit;
pub mod revocation;
pub mod roles;
pub mod routes;
pub mod server;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use strongroom_vault::Vault;

pub use context::REQUEST_ID_HEADER;
pub use error::ApiError;

/// Limits and lifetimes of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Access-token lifetime of services, seconds.
    pub token_ttl_secs: u64,
    /// Access-token lifetime of people, seconds. Longer than the five
    /// minutes a second factor counts as recent: past that, sensitive
    /// actions need a step-up, the rest of the session goes on.
    pub person_token_ttl_secs: u64,
    /// Most items in one batch request.
    pub max_batch_items: usize,
    /// Largest request body, bytes (all routes but batch).
    pub max_body_bytes: usize,
    /// Largest batch request body, bytes.
    pub max_batch_body_bytes: usize,
    /// Failed logins (or step-ups) in a row that lock a person's account
    /// until an administrator unlocks it.
    pub lock_after_failures: i64,
    /// Abuse limits.
    pub rate_limits: ratelimit::RateLimitConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: 300,
            person_token_ttl_secs: 900,
            max_batch_items: 1000,
            max_body_bytes: 64 * 1024,
            max_batch_body_bytes: 16 * 1024 * 1024,
            lock_after_failures: 10,
            rate_limits: ratelimit::RateLimitConfig::default(),
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct ApiState {
    /// The vault.
    pub vault: Arc<Vault>,
    /// API limits.
    pub config: Arc<ApiConfig>,
    /// Disabled principals whose tokens are refused.
    pub revocations: Arc<revocation::Revocations>,
    /// What each role name grants.
    pub roles: Arc<roles::RoleCatalog>,
    /// Bounds the batch requests processed at once, and so the memory they use.
    pub batch_permits: Arc<tokio::sync::Semaphore>,
    /// Access-token keys of the current unseal.
    pub token_keys: Arc<auth::TokenKeyCache>,
    /// The abuse limits' buckets.
    pub rate_limits: Arc<ratelimit::RateLimits>,
}

impl ApiState {
    /// State for a vault with the given limits.
    pub fn new(vault: Arc<Vault>, config: ApiConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            vault,
            rate_limits: Arc::new(ratelimit::RateLimits::new(config.rate_limits.clone())),
            config: Arc::new(config),
            revocations: Arc::default(),
            roles: Arc::default(),
            // Two per core: while one batch is in the store writers, another
            // is parsed and sealed, so neither stage waits for the other.
            batch_permits: Arc::new(tokio::sync::Semaphore::new(cores * 2)),
            token_keys: Arc::default(),
        }
    }
}

/// The full router.
pub fn router(state: ApiState) -> Router {
    use routes::*;
    let batch_limit = state.config.max_batch_body_bytes;
    let body_limit = state.config.max_body_bytes;
    let batch = Router::new()
        .route("/v1/secrets/batch", post(secrets::batch))
        .layer(DefaultBodyLimit::max(batch_limit));
    let rest = Router::new()
        .route("/v1/sys/health", get(sys::health))
        .route("/v1/sys/seal-status", get(sys::seal_status))
        .route("/v1/sys/unseal", post(sys::unseal))
        .route("/v1/sys/seal", post(sys::seal))
        .route("/v1/sys/bootstrap", post(bootstrap::bootstrap))
        .route("/v1/auth/token", post(auth::token))
        .route("/v1/auth/whoami", get(auth::whoami))
        .route("/v1/auth/login", post(login::login))
        .route("/v1/auth/step-up", post(login::step_up))
        .route("/v1/auth/enrol", post(login::enrol))
        .route("/v1/auth/enrol/confirm", post(login::confirm))
        .route("/v1/secrets", post(secrets::create))
        .route(
            "/v1/secrets/{token}",
            get(secrets::describe).delete(secrets::delete),
        )
        .route("/v1/secrets/{token}/reveal", post(secrets::reveal))
        .route("/v1/secrets/{token}/reactivate", post(secrets::reactivate))
        .route("/v1/keys/rotate", post(keys::rotate))
        .route(
            "/v1/principals",
            post(principals::create).get(principals::list),
        )
        .route(
            "/v1/principals/{id}",
            axum::routing::delete(principals::disable),
        )
        .route("/v1/principals/{id}/approve", post(principals::approve))
        .route("/v1/principals/{id}/unlock", post(principals::unlock))
        .route(
            "/v1/principals/{id}/rotate-secret",
            post(principals::rotate_secret),
        )
        .route("/v1/roles", get(roles::list))
        .route("/v1/roles/{name}", axum::routing::put(roles::define))
        .route("/v1/roles/{name}/approve", post(roles::approve))
        .route("/v1/audit/verify", get(audit::verify))
        .layer(DefaultBodyLimit::max(body_limit));
    batch
        .merge(rest)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::limit_by_address,
        ))
        .layer(axum::middleware::from_fn(context::request_context))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "request.no_route",
        "no such endpoint; see the API reference in the README",
    )
}
