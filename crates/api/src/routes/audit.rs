//! `/v1/audit`: chain verification for auditors.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;

/// `GET /v1/audit/verify`: walks the chain and names the first bad record.
#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The chain walked; the first bad record named", body = crate::openapi::AuditVerification),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn verify(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let report = state.vault.verify_audit(&who, &ctx).await?;
    Ok(Json(json!({
        "intact": report.is_intact(),
        "verified": report.verified,
        "last_seq": report.last_seq,
        "first_bad": report.first_bad.map(|(seq, problem)| json!({
            "seq": seq,
            "problem": problem.to_string(),
        })),
    })))
}
