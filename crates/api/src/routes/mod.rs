//! One module per path group; handlers are thin: extract, authenticate,
//! call the vault, map the result.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cards;
pub mod catalog;
pub mod imports;
pub mod keys;
pub mod links;
pub mod login;
pub mod orders;
pub mod principals;
pub mod relay;
pub mod risk;
pub mod roles;
pub mod secrets;
pub mod suppliers;
pub mod sys;

use axum::body::Body;
use axum::http::header;
use axum::response::IntoResponse;
use strongroom_audit::Outcome;
use strongroom_vault::{Permission, Principal, RequestContext, VaultError};

use crate::ApiState;
use crate::error::ApiError;

/// Writes one audit record for a decision a handler took (fail-closed: if
/// it cannot be written, the request fails).
pub(crate) async fn audit(
    state: &ApiState,
    ctx: &RequestContext,
    who: Option<&Principal>,
    action: &str,
    target: Option<&str>,
    outcome: Outcome,
    reason: Option<String>,
) -> Result<(), ApiError> {
    let event = state
        .vault
        .event(ctx, who, action, None, target, outcome, reason);
    state.vault.record(event).await?;
    Ok(())
}

/// Checks `permission` and records a refusal.
pub(crate) async fn require(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    permission: Permission,
    action: &str,
    target: Option<&str>,
) -> Result<(), ApiError> {
    if let Err(e) = who.require(permission) {
        audit(
            state,
            ctx,
            Some(who),
            action,
            target,
            Outcome::Denied,
            Some(e.code().into()),
        )
        .await?;
        return Err(e.into());
    }
    Ok(())
}

/// A JSON response with `status`, serialised by hand so the body is built
/// once (values may be secrets: no intermediate `Value`).
pub(crate) fn json_body(
    status: axum::http::StatusCode,
    value: &impl serde::Serialize,
) -> Result<axum::response::Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(|_| ApiError::from(VaultError::Integrity))?;
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response())
}
