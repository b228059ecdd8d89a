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
pub mod client_backoff;
mod context;
pub mod error;
pub mod groups;
pub mod identity;
pub(crate) mod json;
pub mod metrics;
pub mod openapi;
pub mod passwords;
pub mod ratelimit;
pub mod relay;
pub mod relay_mask;
pub mod revocation;
pub mod roles;
pub mod routes;
pub mod server;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
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
    /// Largest CSV file of codes one import takes, bytes. Imports are
    /// streamed, so this bounds time, not memory.
    pub max_import_bytes: u64,
    /// Failed logins (or step-ups) in a row that lock a person's account
    /// until an administrator unlocks it.
    pub lock_after_failures: i64,
    /// Abuse limits.
    pub rate_limits: ratelimit::RateLimitConfig,
    /// How orders reserve, deliver and link.
    pub orders: strongroom_vouchers::OrderConfig,
    /// The address customers reach this server at, for reveal links
    /// (`https://vouchers.example.com`); empty: the server's own address.
    pub public_url: String,
    /// Routes of the detokenizing relay to payment processors.
    pub relay_routes: Vec<relay::RelayRoute>,
    /// Redis holding CVVs (sealed) for every node; `None`: this process's
    /// memory.
    pub cvv_redis_url: Option<String>,
    /// Serve only these route groups (`serve --only`); `None`: all.
    pub only: Option<Vec<groups::RouteGroup>>,
    /// Header and idle timeouts, connection caps.
    pub connections: server::ConnectionLimits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: 300,
            person_token_ttl_secs: 900,
            max_batch_items: 1000,
            max_body_bytes: 64 * 1024,
            max_batch_body_bytes: 16 * 1024 * 1024,
            max_import_bytes: 1024 * 1024 * 1024,
            lock_after_failures: 10,
            rate_limits: ratelimit::RateLimitConfig::default(),
            orders: strongroom_vouchers::OrderConfig::default(),
            public_url: String::new(),
            relay_routes: Vec::new(),
            cvv_redis_url: None,
            only: None,
            connections: server::ConnectionLimits::default(),
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
    /// Bounds the imports running at once: each holds a parsing thread for
    /// as long as its upload lasts.
    pub import_permits: Arc<tokio::sync::Semaphore>,
    /// Access-token keys of the current unseal.
    pub token_keys: Arc<auth::TokenKeyCache>,
    /// The abuse limits' buckets.
    pub rate_limits: Arc<ratelimit::RateLimits>,
    /// Principals frozen after an alert, refused on every request.
    pub freezes: Arc<strongroom_watch::Freezes>,
    /// Requests and latency per route, for the metrics listener.
    pub metrics: Arc<metrics::RequestMetrics>,
    /// The configured relay routes to payment processors.
    pub relay: Arc<relay::Relay>,
    /// The suppliers codes are bought from.
    pub supply: Arc<strongroom_vouchers::supply::Supply>,
    /// Wrong client secrets per client id, for the back-off.
    pub client_backoff: Arc<client_backoff::ClientBackoff>,
}

impl ApiState {
    /// State for a vault with the given limits.
    pub fn new(vault: Arc<Vault>, config: ApiConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            supply: Arc::new(strongroom_vouchers::supply::Supply::new(
                vault.clone(),
                Vec::new(),
            )),
            vault,
            rate_limits: Arc::new(ratelimit::RateLimits::new(config.rate_limits.clone())),
            config: Arc::new(config),
            revocations: Arc::default(),
            roles: Arc::default(),
            // Two per core: while one batch is in the store writers, another
            // is parsed and sealed, so neither stage waits for the other.
            batch_permits: Arc::new(tokio::sync::Semaphore::new(cores * 2)),
            import_permits: Arc::new(tokio::sync::Semaphore::new(cores * 2)),
            token_keys: Arc::default(),
            freezes: Arc::default(),
            metrics: Arc::default(),
            relay: Arc::default(),
            client_backoff: Arc::default(),
        }
    }
}

/// The path of batch tokenization, whose body limit is its own.
pub const BATCH_PATH: &str = "/v1/secrets/batch";

/// The routes and their OpenAPI description, built from the same handlers.
/// `batch_limit` and `body_limit` are the body size limits in bytes.
fn documented_routes(
    batch_limit: usize,
    body_limit: usize,
) -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    use routes::*;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let batch = OpenApiRouter::new()
        .routes(routes!(secrets::batch))
        .layer(DefaultBodyLimit::max(batch_limit));
    let rest = OpenApiRouter::new()
        .routes(routes!(sys::health))
        .routes(routes!(sys::seal_status))
        .routes(routes!(sys::unseal))
        .routes(routes!(sys::seal))
        .routes(routes!(bootstrap::bootstrap))
        .routes(routes!(openapi::document))
        .routes(routes!(auth::token))
        .routes(routes!(auth::whoami))
        .routes(routes!(login::login))
        .routes(routes!(login::step_up))
        .routes(routes!(login::enrol))
        .routes(routes!(login::confirm))
        .routes(routes!(secrets::create))
        .routes(routes!(secrets::describe, secrets::delete))
        .routes(routes!(secrets::reveal))
        .routes(routes!(secrets::reactivate))
        .routes(routes!(cards::tokenize))
        .routes(routes!(cards::reveal))
        .routes(routes!(risk::score))
        .routes(routes!(keys::rotate))
        .routes(routes!(principals::create, principals::list))
        .routes(routes!(principals::disable))
        .routes(routes!(principals::approve))
        .routes(routes!(principals::unlock))
        .routes(routes!(principals::rotate_secret))
        .routes(routes!(roles::list))
        .routes(routes!(roles::define))
        .routes(routes!(roles::approve))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::checkpoint))
        .routes(routes!(audit::search))
        .routes(routes!(audit::export))
        .routes(routes!(audit::voucher_history))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(alerts::freeze))
        .routes(routes!(alerts::unfreeze))
        .routes(routes!(catalog::add_retailer, catalog::retailers))
        .routes(routes!(catalog::add_product, catalog::products))
        .routes(routes!(catalog::product))
        .routes(routes!(imports::import))
        .routes(routes!(imports::void))
        .routes(routes!(catalog::stock))
        .routes(routes!(orders::place, orders::list))
        .routes(routes!(orders::get))
        .routes(routes!(orders::cancel))
        .routes(routes!(orders::redeliver))
        .routes(routes!(orders::reopen))
        .routes(routes!(orders::approve_reopen))
        .routes(routes!(orders::archive))
        .routes(routes!(links::open))
        .routes(routes!(suppliers::list))
        .routes(routes!(suppliers::set_credential))
        .routes(routes!(suppliers::plan))
        .routes(routes!(suppliers::replenish))
        .routes(routes!(suppliers::reconcile))
        .routes(routes!(suppliers::purchases))
        .routes(routes!(suppliers::purchase))
        .routes(routes!(suppliers::approve))
        .routes(routes!(suppliers::decline))
        .layer(DefaultBodyLimit::max(body_limit));
    let (router, mut doc) = OpenApiRouter::with_openapi(openapi::base())
        .merge(batch)
        .merge(rest)
        .split_for_parts();
    // The relay's path is a wildcard (`{*path}`), which the documented
    // router cannot route: routed here, documented from the same handler.
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(routes::relay::relay))]
    struct RelayDoc;
    doc.merge(<RelayDoc as utoipa::OpenApi>::openapi());
    let router = router.route(
        "/v1/relay/{route}/{*path}",
        axum::routing::post(routes::relay::relay).layer(DefaultBodyLimit::max(body_limit)),
    );
    (router, openapi::finish(doc))
}

/// The OpenAPI 3.1 document of the API, as served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let defaults = ApiConfig::default();
    documented_routes(defaults.max_batch_body_bytes, defaults.max_body_bytes).1
}

/// The full router.
pub fn router(state: ApiState) -> Router {
    let (routes, doc) = documented_routes(
        state.config.max_batch_body_bytes,
        state.config.max_body_bytes,
    );
    let spec = openapi::Spec::of(&doc);
    let routes = match &state.config.only {
        Some(only) => routes.layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::<[groups::RouteGroup]>::from(only.as_slice()),
            groups::only_groups,
        )),
        None => routes,
    };
    routes
        .fallback(not_found)
        .layer(axum::Extension(spec))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::read_body_first,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::limit_by_address,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::request_context,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "request.no_route",
        "no such endpoint; see the API reference in the README",
    )
}
