//! `/v1/keys`: key rotation.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// Body of `POST /v1/keys/rotate`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    tenant: String,
    class: String,
}

/// `POST /v1/keys/rotate`: adds a key version for (tenant, class).
#[utoipa::path(
    post,
    path = "/v1/keys/rotate",
    tag = "keys",
    request_body = RotateRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "New secrets of (tenant, class) use the new version", body = crate::openapi::KeyVersion),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn rotate(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<RotateRequest>,
) -> Result<Json<Value>, ApiError> {
    let version = state
        .vault
        .rotate(&who, &ctx, &body.tenant, &body.class)
        .await?;
    Ok(Json(
        json!({ "tenant": body.tenant, "class": body.class, "version": version }),
    ))
}
