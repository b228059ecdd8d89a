//! `/v1/sys`: health, seal status, unseal, seal.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// `GET /v1/sys/health`: the process is up (sealed or not).
#[utoipa::path(
    get,
    path = "/v1/sys/health",
    tag = "sys",
    responses(
        (status = 200, description = "The process is up", body = crate::openapi::Health)
    )
)]
pub async fn health(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({ "status": "ok", "sealed": !state.vault.is_unsealed() }))
}

/// `GET /v1/sys/seal-status`.
#[utoipa::path(
    get,
    path = "/v1/sys/seal-status",
    tag = "sys",
    responses(
        (status = 200, description = "Seal status", body = crate::openapi::SealStatus)
    )
)]
pub async fn seal_status(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.vault.seal_status().await?)))
}

/// Body of `POST /v1/sys/unseal`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    /// One key share.
    share: Option<String>,
    /// Forget the shares given so far and start again.
    #[serde(default)]
    reset: bool,
}

/// `POST /v1/sys/unseal`: one key share per call.
#[utoipa::path(
    post,
    path = "/v1/sys/unseal",
    tag = "sys",
    request_body = UnsealRequest,
    responses(
        (status = 200, description = "Progress after this share (or after a reset)", body = crate::openapi::SealStatus),
        (status = 409, response = crate::openapi::Conflict)
    )
)]
pub async fn unseal(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    ApiJson(body): ApiJson<UnsealRequest>,
) -> Result<Json<Value>, ApiError> {
    if body.reset {
        state.vault.reset_unseal();
        tracing::warn!(client = ?ctx.client_addr, "unseal progress reset");
        return Ok(Json(json!(state.vault.seal_status().await?)));
    }
    let Some(share) = body.share else {
        return Err(ApiError::invalid(
            "give a key share as {\"share\": \"srs1-...\"}, or {\"reset\": true}",
        ));
    };
    let share = Zeroizing::new(share);
    let status = state
        .vault
        .submit_share(&share, &ctx)
        .await
        .inspect_err(|e| {
            tracing::warn!(code = e.code(), client = ?ctx.client_addr, "unseal share refused");
        })?;
    if !status.sealed {
        // Custom roles can be checked only now: load them at once rather
        // than at the next periodic refresh.
        let central = state.vault.stores().central.clone();
        let seals = state.vault.row_seals().ok();
        if let Err(e) = state
            .roles
            .refresh(central.as_ref(), seals.as_deref())
            .await
        {
            tracing::warn!(error = %e, "could not load the custom roles after unsealing");
        }
    }
    Ok(Json(json!(status)))
}

/// `POST /v1/sys/seal`.
#[utoipa::path(
    post,
    path = "/v1/sys/seal",
    tag = "sys",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Sealed: every key is dropped from memory and every access token retired"),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn seal(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
) -> Result<StatusCode, ApiError> {
    state.vault.seal(&who, &ctx).await?;
    state.token_keys.clear();
    Ok(StatusCode::NO_CONTENT)
}
