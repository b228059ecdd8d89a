//! `/v1/secrets`: tokenize (one or a batch), reveal, describe, delete, reactivate.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use strongroom_vault::{
    NewSecret, OnDuplicate, Redaction, SecretBytes, SecretInfo, Tokenized, VaultError, rfc3339,
};

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// How to treat a value that is already stored.
#[derive(Deserialize, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicateParam {
    /// `409 vault.duplicate` naming the existing token (default).
    Reject,
    /// Return the existing token with `"duplicate": true`.
    ReturnExisting,
    /// Store another copy under a new token.
    Allow,
}

/// One secret to store.
// Deliberately not `Debug`: it holds the value.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSecret {
    tenant: Option<String>,
    class: String,
    value: String,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    #[schema(minimum = 1)]
    reveal_window_secs: Option<u64>,
    on_duplicate: Option<OnDuplicateParam>,
}

impl From<CreateSecret> for NewSecret {
    fn from(c: CreateSecret) -> Self {
        NewSecret {
            tenant: c.tenant,
            class: c.class,
            // Moves the buffer: the only copy is now zeroed on drop.
            value: SecretBytes::new(c.value.into_bytes()),
            metadata: c.metadata,
            // Secrets stored through this API start revealable; 0 (stored
            // dormant, for stock) is refused as out of range, like any
            // window over the maximum.
            reveal_window_secs: c
                .reveal_window_secs
                .map(|w| if w == 0 { u64::MAX } else { w }),
            on_duplicate: match c.on_duplicate {
                None | Some(OnDuplicateParam::Reject) => OnDuplicate::Reject,
                Some(OnDuplicateParam::ReturnExisting) => OnDuplicate::ReturnExisting,
                Some(OnDuplicateParam::Allow) => OnDuplicate::Allow,
            },
        }
    }
}

#[derive(Serialize)]
struct TokenizedView<'a> {
    token: &'a str,
    tenant: &'a str,
    class: &'a str,
    created_at: String,
    reveal_window_closes_at: String,
    key_version: u32,
    duplicate: bool,
}

/// Formats times, remembering the last one: the items of a batch share their
/// creation time and usually their window.
#[derive(Default)]
struct Times(Vec<(i64, String)>);

impl Times {
    fn format(&mut self, ms: i64) -> String {
        if let Some((_, text)) = self.0.iter().find(|(t, _)| *t == ms) {
            return text.clone();
        }
        let text = rfc3339(ms);
        if self.0.len() < 4 {
            self.0.push((ms, text.clone()));
        }
        text
    }
}

fn tokenized_view<'a>(t: &'a Tokenized, times: &mut Times) -> TokenizedView<'a> {
    TokenizedView {
        token: &t.token,
        tenant: &t.tenant,
        class: &t.class,
        created_at: times.format(t.created_at),
        reveal_window_closes_at: times.format(t.window_closes_at),
        key_version: t.key_version,
        duplicate: t.duplicate,
    }
}

/// One item of a batch response: a result or an error.
#[derive(Serialize)]
#[serde(untagged)]
enum BatchItemView<'a> {
    Stored(TokenizedView<'a>),
    Refused(Value),
}

#[derive(Serialize)]
struct BatchView<'a> {
    items: Vec<BatchItemView<'a>>,
}

fn info_view(i: &SecretInfo) -> Value {
    json!({
        "token": i.token,
        "tenant": i.tenant,
        "class": i.class,
        "state": "active",
        "created_at": rfc3339(i.created_at),
        "created_by": i.created_by,
        "reveal_window_closes_at": rfc3339(i.window_closes_at),
        "revealable": i.revealable,
        "key_version": i.key_version,
        "metadata": i.metadata,
    })
}

/// `POST /v1/secrets`: 201 with the token; 200 when an existing token is
/// returned on request.
#[utoipa::path(
    post,
    path = "/v1/secrets",
    tag = "secrets",
    request_body = CreateSecret,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored: the token", body = crate::openapi::Tokenized),
        (status = 200, description = "Already stored and `on_duplicate: return_existing`: the existing token", body = crate::openapi::Tokenized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 409, response = crate::openapi::Conflict)
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<CreateSecret>,
) -> Result<Response, ApiError> {
    let t = state.vault.tokenize(&who, &ctx, body.into()).await?;
    let status = if t.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(tokenized_view(&t, &mut Times::default()))).into_response())
}

/// Body of `POST /v1/secrets/batch`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[schema(min_items = 1, max_items = 1000)]
    items: Vec<CreateSecret>,
}

/// `POST /v1/secrets/batch`: up to the configured number of items; one
/// result or error per item, in order.
#[utoipa::path(
    post,
    path = "/v1/secrets/batch",
    tag = "secrets",
    request_body = BatchRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One result or error per item, in order", body = crate::openapi::BatchResult),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn batch(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    body: Body,
) -> Result<Response, ApiError> {
    // Wait for a slot before reading the body, so queued batches cost little memory.
    let _permit = state
        .batch_permits
        .acquire()
        .await
        .map_err(|_| ApiError::from(VaultError::Sealed))?;
    let bytes = axum::body::to_bytes(body, state.config.max_batch_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request.too_large",
                "batch body is too large or unreadable",
            )
        })?;
    let body: BatchRequest = match crate::json::parse(&bytes) {
        Ok(body) => body,
        Err(e) => {
            let path = "/v1/secrets/batch";
            crate::json::record_rejection(&state, &ctx, Some(&who), path, e.code).await?;
            return Err(e);
        }
    };
    drop(bytes);
    let max = state.config.max_batch_items;
    if body.items.is_empty() || body.items.len() > max {
        let event = state.vault.event(
            &ctx,
            Some(&who),
            "secret.tokenize_batch",
            None,
            None,
            strongroom_audit::Outcome::Denied,
            Some(format!("request.batch_size: {} items", body.items.len())),
        );
        state.vault.record(event).await?;
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "request.batch_size",
            format!("a batch holds 1 to {max} items; split larger loads"),
        ));
    }
    let items = body.items.into_iter().map(NewSecret::from).collect();
    let results = state.vault.tokenize_batch(&who, &ctx, items).await?;
    let mut times = Times::default();
    let items = results
        .iter()
        .map(|r| match r {
            Ok(t) => BatchItemView::Stored(tokenized_view(t, &mut times)),
            Err(e) => {
                let err = ApiError::from(e);
                let mut body = err.body(&ctx.request_id);
                if let Some(obj) = body.get_mut("error").and_then(Value::as_object_mut) {
                    obj.remove("request_id");
                }
                BatchItemView::Refused(body)
            }
        })
        .collect();
    Ok(Json(BatchView { items }).into_response())
}

/// Body of `POST /v1/secrets/{token}/reveal`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest {
    purpose: String,
    /// `none` (the default: the whole value) or `masked` (the last few
    /// characters only).
    #[serde(default)]
    #[schema(pattern = "^(none|masked)$")]
    redaction: Option<String>,
}

#[derive(Serialize)]
struct RevealView<'a> {
    token: &'a str,
    tenant: &'a str,
    class: &'a str,
    value: &'a str,
    redaction: &'static str,
    reveal_window_closes_at: String,
}

/// `POST /v1/secrets/{token}/reveal`: the value, while the window is open.
#[utoipa::path(
    post,
    path = "/v1/secrets/{token}/reveal",
    tag = "secrets",
    request_body = RevealRequest,
    params(("token" = String, Path, description = "The secret's token")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The value, while the reveal window is open (never cached)", body = crate::openapi::Revealed),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "`vault.dormant`: the reveal window closed", body = crate::openapi::ErrorBody),
        (status = 500, response = crate::openapi::IntegrityFailure)
    )
)]
pub async fn reveal(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<RevealRequest>,
) -> Result<Response, ApiError> {
    let redaction = match body.redaction.as_deref() {
        None | Some("none") => Redaction::None,
        Some("masked") => Redaction::Masked,
        Some(_) => {
            return Err(ApiError::invalid(
                "redaction must be \"none\" (the whole value) or \"masked\"",
            ));
        }
    };
    let r = state
        .vault
        .reveal(&who, &ctx, &token, &body.purpose, redaction)
        .await?;
    let value =
        std::str::from_utf8(r.value.expose()).map_err(|_| ApiError::from(VaultError::Integrity))?;
    let view = RevealView {
        token: &r.token,
        tenant: &r.tenant,
        class: &r.class,
        value,
        redaction: r.redaction.as_str(),
        reveal_window_closes_at: rfc3339(r.window_closes_at),
    };
    let body = serde_json::to_vec(&view).map_err(|_| ApiError::from(VaultError::Integrity))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response())
}

/// `GET /v1/secrets/{token}`: metadata only.
#[utoipa::path(
    get,
    path = "/v1/secrets/{token}",
    tag = "secrets",
    params(("token" = String, Path, description = "The secret's token")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Metadata, never the value", body = crate::openapi::SecretInfo),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound)
    )
)]
pub async fn describe(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state.vault.describe(&who, &ctx, &token).await?;
    Ok(Json(info_view(&info)))
}

/// `DELETE /v1/secrets/{token}`.
#[utoipa::path(
    delete,
    path = "/v1/secrets/{token}",
    tag = "secrets",
    params(("token" = String, Path, description = "The secret's token")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Erased"),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound)
    )
)]
pub async fn delete(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.vault.delete(&who, &ctx, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/secrets/{token}/reactivate`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReactivateRequest {
    window_secs: u64,
    reason: String,
}

/// `POST /v1/secrets/{token}/reactivate`: re-opens the reveal window.
#[utoipa::path(
    post,
    path = "/v1/secrets/{token}/reactivate",
    tag = "secrets",
    request_body = ReactivateRequest,
    params(("token" = String, Path, description = "The secret's token")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The window is open until the new time", body = crate::openapi::SecretInfo),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound)
    )
)]
pub async fn reactivate(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<ReactivateRequest>,
) -> Result<Json<Value>, ApiError> {
    let info = state
        .vault
        .reactivate(&who, &ctx, &token, body.window_secs, &body.reason)
        .await?;
    Ok(Json(info_view(&info)))
}
