//! The published API: an OpenAPI 3.1 document generated from the handlers.
//!
//! Each handler carries a `#[utoipa::path]` with its request, its answers and
//! its errors, and the router is built from the same handlers (see
//! [`crate::router`]), so a route cannot exist without being documented.
//! This module holds what the handlers share: the error shape, the reusable
//! error responses, the response bodies, and the finishing touches every
//! operation gets (rate limiting, sealed vault, bearer authentication).
//!
//! The document is served at `GET /v1/openapi.json` and checked in at
//! `docs/openapi.json`; a test fails if the two drift apart.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Required, Response};
use utoipa::{ToResponse, ToSchema};

/// Name of the bearer-token security scheme.
pub const BEARER: &str = "bearer";

/// Every error: `{"error": {"code", "message", "request_id", …}}`.
#[derive(ToSchema, serde::Serialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error. Some carry more fields (`existing_token` on a duplicate).
#[derive(ToSchema, serde::Serialize)]
pub struct ErrorDetail {
    /// Stable, greppable code, e.g. `auth.forbidden`.
    pub code: String,
    /// What happened and what to do, for a person. Never a secret.
    pub message: String,
    /// The request's id, also in the `x-request-id` header and the audit log.
    pub request_id: String,
}

/// 400: fix the request; the message says how (`request.invalid`,
/// `request.tenant_required`, `request.batch_size`, `unseal.invalid_share`).
#[derive(ToResponse)]
#[response(
    description = "The request is invalid: `request.invalid`, `request.tenant_required`; the message says how to fix it"
)]
pub struct Invalid(#[to_schema] pub ErrorBody);

/// 401: no valid access token.
#[derive(ToResponse)]
#[response(
    description = "`auth.unauthenticated` (missing, invalid, expired or revoked access token) or `auth.mfa_required` (a person's second factor is older than 5 minutes: step up)"
)]
pub struct Unauthenticated(#[to_schema] pub ErrorBody);

/// 403: the caller's roles or tenants do not allow this.
#[derive(ToResponse)]
#[response(description = "`auth.forbidden`: the caller's permissions or tenants do not allow this")]
pub struct Forbidden(#[to_schema] pub ErrorBody);

/// 404: nothing of that name for this caller.
#[derive(ToResponse)]
#[response(
    description = "Not found for this caller (`secret.not_found`, `principal.not_found`, `role.not_found`): unknown, deleted and other tenants' objects look the same"
)]
pub struct NotFound(#[to_schema] pub ErrorBody);

/// 409: the state does not allow it.
#[derive(ToResponse)]
#[response(
    description = "The current state does not allow it; the code says which (`vault.duplicate` with `existing_token`, `vault.dormant`, `principal.exists`, `principal.not_pending`, `role.not_pending`, `role.changed`, …)"
)]
pub struct Conflict(#[to_schema] pub ErrorBody);

/// 413: body over the limit.
#[derive(ToResponse)]
#[response(description = "`request.too_large`: the body is over the limit")]
pub struct TooLarge(#[to_schema] pub ErrorBody);

/// 408: the body was too slow.
#[derive(ToResponse)]
#[response(description = "`request.timeout`: the request body did not arrive in time")]
pub struct Timeout(#[to_schema] pub ErrorBody);

/// 429: rate limited.
#[derive(ToResponse)]
#[response(
    description = "`request.rate_limited`: too many requests from this principal or address; wait `Retry-After` seconds",
    headers(("Retry-After" = u64, description = "Seconds to wait"))
)]
pub struct RateLimited(#[to_schema] pub ErrorBody);

/// 500: a stored record failed its integrity check.
#[derive(ToResponse)]
#[response(
    description = "`vault.integrity`: a stored record failed its integrity check and nothing was revealed"
)]
pub struct IntegrityFailure(#[to_schema] pub ErrorBody);

/// 503: sealed, or a store is down.
#[derive(ToResponse)]
#[response(
    description = "`vault.sealed` (unseal first), `audit.unavailable` or `store.unavailable` (nothing happened)"
)]
pub struct Unavailable(#[to_schema] pub ErrorBody);

/// `GET /v1/sys/health`.
#[derive(ToSchema)]
pub struct Health {
    /// Always `ok`: the process answers.
    pub status: String,
    /// Whether the vault is sealed.
    pub sealed: bool,
}

/// Seal status, also the answer to each unseal share.
#[derive(ToSchema)]
pub struct SealStatus {
    /// Whether the vault has been initialised.
    pub initialized: bool,
    /// Whether the vault is sealed.
    pub sealed: bool,
    /// Shares needed to unseal.
    pub threshold: u8,
    /// Shares printed at initialisation.
    pub shares: u8,
    /// Shares accepted so far in the current attempt.
    pub progress: u8,
    /// `shamir` or `dev-key-file`.
    pub seal_method: String,
    /// The vault's id, which every share names.
    pub vault_id: Option<String>,
}

/// An access token.
#[derive(ToSchema)]
pub struct AccessToken {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// A person's access token.
#[derive(ToSchema)]
pub struct PersonToken {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Seconds for which the second factor counts as recent.
    pub mfa_expires_in: i64,
}

/// `GET /v1/auth/whoami`.
#[derive(ToSchema)]
pub struct WhoAmI {
    /// Principal id.
    pub id: String,
    /// Principal name.
    pub name: String,
    /// Role names.
    pub roles: Vec<String>,
    /// What the roles grant, by name.
    pub permissions: Vec<String>,
    /// Tenants (`*`: all).
    pub tenants: Vec<String>,
}

/// A stored secret's token.
#[derive(ToSchema, serde::Serialize)]
pub struct Tokenized {
    /// The token that stands for the secret.
    pub token: String,
    /// Tenant.
    pub tenant: String,
    /// Class.
    pub class: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub reveal_window_closes_at: String,
    /// Key version that sealed it.
    pub key_version: u32,
    /// True if an existing token was returned (`on_duplicate: return_existing`).
    pub duplicate: bool,
}

/// One item of a batch answer: a token, or an error.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
pub enum BatchItem {
    /// Stored.
    Stored(Tokenized),
    /// Refused.
    Refused(ItemError),
}

/// Why one item of a batch was refused.
#[derive(ToSchema, serde::Serialize)]
pub struct ItemError {
    /// The error.
    pub error: ItemErrorDetail,
}

/// One item's error; the request id is the batch's.
#[derive(ToSchema, serde::Serialize)]
pub struct ItemErrorDetail {
    /// Stable code, e.g. `vault.duplicate`.
    pub code: String,
    /// What happened, for a person.
    pub message: String,
    /// For `vault.duplicate`: the token already holding the value.
    pub existing_token: Option<String>,
}

/// `POST /v1/secrets/batch`.
#[derive(ToSchema)]
pub struct BatchResult {
    /// One result per item, in order.
    pub items: Vec<BatchItem>,
}

/// A revealed secret. Never cached.
#[derive(ToSchema)]
pub struct Revealed {
    /// Token.
    pub token: String,
    /// Tenant.
    pub tenant: String,
    /// Class.
    pub class: String,
    /// The value (masked if asked).
    pub value: String,
    /// `none` or `masked`.
    pub redaction: String,
    /// RFC 3339.
    pub reveal_window_closes_at: String,
}

/// A secret's metadata, never its value.
#[derive(ToSchema)]
pub struct SecretInfo {
    /// Token.
    pub token: String,
    /// Tenant.
    pub tenant: String,
    /// Class.
    pub class: String,
    /// Always `active` (deleted secrets are not found).
    pub state: String,
    /// RFC 3339.
    pub created_at: String,
    /// Principal id that stored it.
    pub created_by: String,
    /// RFC 3339.
    pub reveal_window_closes_at: String,
    /// Whether the window is open now.
    pub revealable: bool,
    /// Key version that sealed it.
    pub key_version: u32,
    /// The caller's metadata, if any.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// `POST /v1/keys/rotate`.
#[derive(ToSchema)]
pub struct KeyVersion {
    /// Tenant.
    pub tenant: String,
    /// Class.
    pub class: String,
    /// The new key version.
    pub version: u32,
}

/// A principal.
#[derive(ToSchema, serde::Serialize)]
pub struct PrincipalView {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `service` or `user`.
    pub kind: String,
    /// Client id (services).
    pub client_id: String,
    /// Role names.
    pub roles: Vec<String>,
    /// Tenants.
    pub tenants: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Creator's principal id (empty for the first people).
    pub created_by: String,
    /// Disabled principals get no token.
    pub disabled: bool,
    /// Waiting for a security officer's approval.
    pub pending_approval: bool,
}

/// A new principal, with its one-time credential.
#[derive(ToSchema, serde::Serialize)]
pub struct CreatedPrincipal {
    /// The principal.
    #[serde(flatten)]
    pub principal: PrincipalView,
    /// A service's client secret, shown once.
    pub client_secret: Option<String>,
    /// A person's enrolment code, shown once.
    pub enrolment_code: Option<String>,
}

/// A signed checkpoint of the audit chain head.
#[derive(ToSchema)]
pub struct AuditCheckpoint {
    /// The vault's id.
    pub vault_id: String,
    /// Sequence number of the record signed.
    pub seq: u64,
    /// Its chain MAC, hex.
    pub mac: String,
    /// When it was signed (RFC 3339).
    pub signed_at: String,
    /// The vault's Ed25519 public key, hex.
    pub public_key: String,
    /// Ed25519 signature over the other fields, hex.
    pub signature: String,
}

/// An alert raised by a detector.
#[derive(ToSchema)]
pub struct Alert {
    /// Alert id (`al_…`).
    pub id: String,
    /// When it was raised (RFC 3339).
    pub created_at: String,
    /// The detector (`reveal_rate`, `sequential_access`, `off_hours`,
    /// `denied_burst`, `failed_logins`, `suspicious_targets`,
    /// `redelivery_spike`, `customer_vouchers`, `watch_overloaded`,
    /// `audit_store_failure`).
    pub detector: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// The principal id, or `addr:…`, `account:…`, `tenant:…`,
    /// `customer:…`, `component:…`.
    pub subject: String,
    /// Tenant, if the records had one.
    pub tenant: Option<String>,
    /// One line for a person.
    pub summary: String,
    /// The figures behind it.
    pub details: serde_json::Value,
    /// Sequence number of the audit record that raised it.
    pub audit_seq: i64,
    /// `open` or `acknowledged`.
    pub status: String,
    /// Whether the alert froze its principal.
    pub froze_subject: bool,
    /// Who acknowledged it, when, and their note.
    pub acknowledged: Option<serde_json::Value>,
}

/// `GET /v1/alerts`.
#[derive(ToSchema)]
pub struct AlertPage {
    /// Newest first.
    pub alerts: Vec<Alert>,
    /// Pass as `before` for the next page; absent at the end.
    pub next_before: Option<String>,
}

/// `GET /v1/principals`.
#[derive(ToSchema)]
pub struct PrincipalList {
    /// The principals the caller may see.
    pub principals: Vec<PrincipalView>,
}

/// A service's rotated secret.
#[derive(ToSchema)]
pub struct RotatedSecret {
    /// Principal id.
    pub id: String,
    /// Client id (unchanged).
    pub client_id: String,
    /// The new secret, shown once.
    pub client_secret: String,
    /// RFC 3339: when the previous secret stops working.
    pub previous_secret_valid_until: String,
    /// True if the service can reveal or administer: then neither secret
    /// gets a token until a security officer approves the rotation.
    pub pending_approval: bool,
}

/// One of the first people.
#[derive(ToSchema)]
pub struct BootstrapPerson {
    /// Principal id.
    pub id: String,
    /// User name.
    pub name: String,
    /// Role names.
    pub roles: Vec<String>,
    /// One-time enrolment code.
    pub enrolment_code: String,
}

/// `POST /v1/sys/bootstrap`.
#[derive(ToSchema)]
pub struct Bootstrapped {
    /// The first administrator.
    pub admin: BootstrapPerson,
    /// The first security officer.
    pub security_officer: BootstrapPerson,
    /// What to do next.
    pub next: String,
}

/// `POST /v1/auth/enrol`.
#[derive(ToSchema)]
pub struct Enrolment {
    /// For an authenticator app.
    pub otpauth_uri: String,
    /// The same seed in base32, to type in.
    pub totp_secret: String,
    /// Single-use recovery codes, shown once.
    pub recovery_codes: Vec<String>,
    /// What to do next.
    pub next: String,
}

/// A role and what it grants.
#[derive(ToSchema, serde::Serialize)]
pub struct RoleView {
    /// Name.
    pub name: String,
    /// Built in (cannot be changed).
    pub builtin: bool,
    /// Permission names in force.
    pub permissions: Vec<String>,
    /// Permission names waiting for approval.
    pub pending_permissions: Option<Vec<String>>,
    /// Who asked for the last change (custom roles).
    pub requested_by: Option<String>,
    /// Who defined it (custom roles).
    pub created_by: Option<String>,
    /// RFC 3339 (custom roles).
    pub created_at: Option<String>,
    /// RFC 3339 (custom roles).
    pub updated_at: Option<String>,
}

/// `GET /v1/roles`.
#[derive(ToSchema)]
pub struct RoleList {
    /// Built-in roles, then custom ones by name.
    pub roles: Vec<RoleView>,
}

/// The answer to `PUT /v1/roles/{name}` and to an approval.
#[derive(ToSchema, serde::Serialize)]
pub struct RoleChange {
    /// The role as it now stands.
    #[serde(flatten)]
    pub role: RoleView,
    /// `PUT` only: true if the change waits for a security officer's approval.
    pub pending_approval: Option<bool>,
    /// `PUT` only: what happened, in words.
    pub outcome: Option<String>,
}

/// The first record that failed verification.
#[derive(ToSchema)]
pub struct BadRecord {
    /// Its sequence number.
    pub seq: u64,
    /// What is wrong with it.
    pub problem: String,
}

/// `GET /v1/audit/verify`.
#[derive(ToSchema)]
pub struct AuditVerification {
    /// True if every record verified and none is missing up to the head the
    /// vault sealed outside the audit store.
    pub intact: bool,
    /// Records verified.
    pub verified: u64,
    /// The last good sequence number read.
    pub last_seq: u64,
    /// The time written in the last good record.
    pub last_time: Option<String>,
    /// The head the vault sealed into the vault store, if it has one.
    pub sealed_head: Option<u64>,
    /// The last record proven present with nothing cut before it (0: none
    /// proven, as when there is no sealed head or the chain is broken).
    pub proven_through: u64,
    /// True if the log's last record is proven to be its end (the sealed
    /// head reaches it). Records after the head verify by the chain, but
    /// their removal could not be detected.
    pub end_proven: bool,
    /// The first bad record, if any.
    pub first_bad: Option<BadRecord>,
}

fn reusable<R: for<'a> ToResponse<'a>>() -> RefOr<Response> {
    let (name, _) = R::response();
    RefOr::Ref(utoipa::openapi::Ref::from_response_name(name))
}

/// Adds what every operation shares: `429` everywhere (the address limits
/// apply to every route), `503` where the vault must be unsealed, `400` and
/// `413` where there is a body, and for operations that need a token, the
/// bearer requirement and `401`. Registers the error responses and the
/// security scheme as components.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.delete.as_mut(),
        ];
        for op in operations.into_iter().flatten() {
            let responses = &mut op.responses.responses;
            let mut add = |status: &str, response: RefOr<Response>| {
                responses.entry(status.to_owned()).or_insert(response);
            };
            add("429", reusable::<RateLimited>());
            if path != "/v1/sys/health"
                && path != "/v1/sys/seal-status"
                && path != "/v1/openapi.json"
            {
                add("503", reusable::<Unavailable>());
            }
            if op.request_body.is_some() {
                add("400", reusable::<Invalid>());
                add("413", reusable::<TooLarge>());
                add("408", reusable::<Timeout>());
            }
            if op.security.is_some() {
                add("401", reusable::<Unauthenticated>());
            }
            if let Some(RefOr::T(body)) = op.request_body.as_mut()
                && body.required.is_none()
            {
                body.required = Some(Required::True);
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An access token from POST /v1/auth/token (services) or POST /v1/auth/login (people)",
                ))
                .build(),
        ),
    );
    for (name, response) in [
        Invalid::response(),
        Unauthenticated::response(),
        Forbidden::response(),
        NotFound::response(),
        Conflict::response(),
        TooLarge::response(),
        Timeout::response(),
        RateLimited::response(),
        IntegrityFailure::response(),
        Unavailable::response(),
    ] {
        components.responses.insert(name.to_owned(), response);
    }
    doc
}

/// The top of the document: title, version, description, tags.
pub fn base() -> OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(
        info(
            title = "Strongroom",
            description = "A vault for secrets worth money: each secret is replaced by a token, kept encrypted, revealed only to an authorised caller within a time window, and every attempt is audited. Every error has the shape `{\"error\": {\"code\", \"message\", \"request_id\"}}` with a stable code.",
            license(name = "Apache-2.0", identifier = "Apache-2.0")
        ),
        tags(
            (name = "sys", description = "Health, seal and unseal, first start"),
            (name = "auth", description = "Access tokens for services"),
            (name = "people", description = "Passwords, TOTP and step-up for people"),
            (name = "secrets", description = "Tokenize, reveal, describe, delete, reactivate"),
            (name = "cards", description = "Card numbers behind format-keeping tokens; CVVs held in memory for one use"),
            (name = "keys", description = "Key rotation"),
            (name = "principals", description = "Services and people, with dual control"),
            (name = "roles", description = "Named permissions and custom roles, with dual control"),
            (name = "audit", description = "The hash-chained audit log"),
            (name = "alerts", description = "What the detectors raised; containment by freezing principals"),
            (name = "catalog", description = "Retailers, products (SKUs) and their face values"),
            (name = "orders", description = "The storefront's orders: allocation, delivery by code or reveal link"),
            (name = "suppliers", description = "Buying codes from suppliers' APIs: replenishment, spend approvals, reconciliation")
        )
    )]
    struct Base;
    let mut doc = <Base as utoipa::OpenApi>::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The served document, serialised once.
#[derive(Clone)]
pub struct Spec(std::sync::Arc<str>);

impl Spec {
    /// The document as pretty JSON (the form checked in at `docs/openapi.json`).
    pub fn of(doc: &OpenApi) -> Self {
        Spec(to_json(doc).into())
    }
}

/// The document as pretty JSON with a final newline.
pub fn to_json(doc: &OpenApi) -> String {
    let mut text = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "sys",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub async fn document(
    axum::Extension(spec): axum::Extension<Spec>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        spec.0.to_string(),
    )
}
