//! `/v1/auth`: client-credentials tokens, and `whoami`.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_audit::Outcome;
use zeroize::Zeroizing;

use crate::ApiState;
use crate::auth::{Authenticated, issue};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::identity::{principal_of, verify_secret};
use crate::json;

/// Body of `POST /v1/auth/token`, as JSON or as an OAuth 2.0 form.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// Always `client_credentials`.
    #[schema(pattern = "^client_credentials$")]
    grant_type: String,
    client_id: String,
    client_secret: String,
}

async fn read_token_request(state: &ApiState, req: Request) -> Result<TokenRequest, ApiError> {
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        axum::Form::<TokenRequest>::from_request(req, state)
            .await
            .map(|f| f.0)
            .map_err(|_| {
                ApiError::invalid("form body needs grant_type, client_id and client_secret")
            })
    } else {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::invalid("unreadable request body"))?;
        json::parse(&bytes)
    }
}

/// Records a token request refused before the client was identified.
async fn refuse(
    state: &ApiState,
    ctx: &strongroom_vault::RequestContext,
    reason: &str,
) -> Result<(), ApiError> {
    super::audit(
        state,
        ctx,
        None,
        "auth.token",
        None,
        Outcome::Denied,
        Some(reason.to_owned()),
    )
    .await
}

/// Records a token request refused for a known (or unknown) client.
async fn refuse_client(
    state: &ApiState,
    ctx: &strongroom_vault::RequestContext,
    record: Option<&strongroom_store::PrincipalRecord>,
    reason: String,
) -> Result<(), ApiError> {
    let principal = record.map(|r| principal_of(r, &state.roles));
    let event = state.vault.event(
        ctx,
        principal.as_ref(),
        "auth.token",
        None,
        None,
        Outcome::Denied,
        Some(reason),
    );
    state.vault.record(event).await?;
    Ok(())
}

/// `POST /v1/auth/token` (OAuth 2.0 client credentials grant).
#[utoipa::path(
    post,
    path = "/v1/auth/token",
    tag = "auth",
    request_body(content(
        (TokenRequest = "application/json"),
        (TokenRequest = "application/x-www-form-urlencoded")
    )),
    responses(
        (status = 200, description = "An access token", body = crate::openapi::AccessToken),
        (status = 401, description = "`auth.invalid_client` (unknown client or wrong secret) or `auth.pending_approval`", body = crate::openapi::ErrorBody)
    )
)]
pub async fn token(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let body = match read_token_request(&state, req).await {
        Ok(body) => body,
        Err(e) => {
            refuse(&state, &ctx, e.code).await?;
            return Err(e);
        }
    };
    let secret = Zeroizing::new(body.client_secret);
    if body.grant_type != "client_credentials" {
        refuse(&state, &ctx, "auth.unsupported_grant_type").await?;
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "auth.unsupported_grant_type",
            "grant_type must be client_credentials",
        ));
    }
    // Tokens can only be signed while unsealed; say so before any hashing.
    if !state.vault.is_unsealed() {
        return Err(strongroom_vault::VaultError::Sealed.into());
    }
    let record = state
        .vault
        .stores()
        .central
        .principal_by_client_id(&body.client_id)
        .await
        .map_err(strongroom_vault::VaultError::from)?;
    // A row inserted or changed by SQL gets no token: refused, audited and
    // alerted before any secret is checked against it.
    let record = state.vault.checked(record, &ctx).await?;
    // People log in at /v1/auth/login; their names are no client ids.
    let record = record.filter(|r| r.kind == crate::identity::KIND_SERVICE);
    // Wrong secrets for this client id, from any address, back off.
    let started = std::time::Instant::now();
    if record.is_some()
        && let Some((wait, first)) = state.client_backoff.wait(&body.client_id, started)
    {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        if first {
            let why = format!(
                "request.rate_limited: wrong client secrets for this client id; waits {secs} s"
            );
            refuse_client(&state, &ctx, record.as_ref(), why).await?;
        }
        return Err(ApiError::rate_limited(secs));
    }
    let hash = record.as_ref().map(|r| r.secret_hash.clone());
    let mut secret_ok = verify_secret(secret.clone(), hash).await;
    // During a rotation's overlap the previous secret works too.
    let now_ms = state.vault.clock().now_ms();
    if !secret_ok
        && let Some(r) = record
            .as_ref()
            .filter(|r| !r.previous_secret_hash.is_empty() && now_ms < r.previous_valid_until)
    {
        secret_ok = verify_secret(secret, Some(r.previous_secret_hash.clone())).await;
    }
    if record.is_some() {
        if secret_ok {
            state.client_backoff.succeeded(&body.client_id);
        } else {
            state.client_backoff.failed(&body.client_id, started);
        }
    }
    let active = record
        .as_ref()
        .filter(|r| secret_ok && !r.disabled && !r.pending_approval);
    let Some(record) = active else {
        let reason = match &record {
            None => "auth.unknown_client",
            Some(r) if r.disabled && secret_ok => "auth.disabled",
            Some(r) if r.pending_approval && secret_ok => "auth.pending_approval",
            Some(_) => "auth.bad_secret",
        };
        refuse_client(&state, &ctx, record.as_ref(), reason.into()).await?;
        if reason == "auth.pending_approval" {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "auth.pending_approval",
                "this principal is waiting for a security officer's approval",
            ));
        }
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "auth.invalid_client",
            "client authentication failed: check the client id and secret",
        ));
    };
    let principal = principal_of(record, &state.roles);
    crate::auth::refuse_if_frozen(&state, &ctx, &principal, "auth.token").await?;
    let now = state.vault.clock().now_ms();
    let event = state.vault.event(
        &ctx,
        Some(&principal),
        "auth.token",
        None,
        None,
        Outcome::Allowed,
        None,
    );
    state.vault.record(event).await?;
    let token = issue(&state, &principal, now, state.config.token_ttl_secs, None)?;
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": state.config.token_ttl_secs,
    })))
}

/// `GET /v1/auth/whoami`: the caller's identity, roles and permissions.
#[utoipa::path(
    get,
    path = "/v1/auth/whoami",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller, as its token says", body = crate::openapi::WhoAmI)
    )
)]
pub async fn whoami(Authenticated(who): Authenticated) -> Json<Value> {
    Json(json!({
        "id": who.id,
        "name": who.name,
        "roles": who.roles,
        "permissions": who.permissions.names(),
        "tenants": who.tenants,
    }))
}
