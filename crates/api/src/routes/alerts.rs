//! `/v1/alerts`: what the detectors raised, and acknowledging it;
//! `/v1/principals/{id}/freeze` and `/unfreeze`: containment by hand, and
//! lifting the detectors' freezes.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_audit::Outcome;
use strongroom_store::{AlertFilter, FreezeRecord, TenantScope};
use strongroom_vault::policy::ALL_TENANTS;
use strongroom_vault::{Permission, Principal, RequestContext, VaultError};
use strongroom_watch::FreezeOutcome;
use utoipa::ToSchema;

use super::audit as record;
use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// Most alerts one page returns.
const MAX_ALERTS: usize = 500;
/// How many stored alerts one listing reads at most to fill a page for a
/// principal bound to tenants.
const SCAN_ALERTS: usize = 5_000;

/// Whether `who` may see an alert of `tenant`: alerts of no tenant (logins,
/// the audit store) only for principals of the whole vault.
fn may_see(who: &Principal, tenant: Option<&str>) -> bool {
    match tenant {
        Some(t) => who.may_act_in(t),
        None => who.tenants.iter().any(|t| t == ALL_TENANTS),
    }
}

/// `GET /v1/alerts`: alerts, newest first.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "alerts",
    params(
        ("status" = Option<String>, Query, description = "`open` or `acknowledged`"),
        ("detector" = Option<String>, Query, description = "Only this detector's (`reveal_rate`, …)"),
        ("subject" = Option<String>, Query, description = "Only about this principal id (or `addr:…`, `tenant:…`, …)"),
        ("before" = Option<String>, Query, description = "Alerts older than this id (`next_before` of the previous page)"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 50, at most 500)")
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Alerts the caller may see, newest first", body = crate::openapi::AlertPage),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    const ACTION: &str = "alert.list";
    super::require(&state, &ctx, &who, Permission::ReadAlerts, ACTION, None).await?;
    let status = q.get("status").cloned();
    if status
        .as_deref()
        .is_some_and(|s| s != "open" && s != "acknowledged")
    {
        return Err(ApiError::invalid("status is 'open' or 'acknowledged'"));
    }
    let limit = super::audit::number_param::<usize>(&q, "limit")?
        .unwrap_or(50)
        .clamp(1, MAX_ALERTS);
    let mut filter = AlertFilter {
        status,
        detector: q.get("detector").cloned(),
        subject: q.get("subject").cloned(),
        before: q.get("before").cloned(),
    };
    record(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        None,
        Outcome::Allowed,
        None,
    )
    .await?;
    let central = &state.vault.stores().central;
    let mut shown = Vec::new();
    let mut scanned = 0;
    let mut exhausted = false;
    while shown.len() < limit && scanned < SCAN_ALERTS {
        let page = central
            .list_alerts(&filter, limit)
            .await
            .map_err(VaultError::from)?;
        scanned += page.len();
        let Some(last) = page.last() else {
            exhausted = true;
            break;
        };
        filter.before = Some(last.id.clone());
        let short = page.len() < limit;
        for alert in page {
            if shown.len() < limit && may_see(&who, alert.tenant.as_deref()) {
                filter.before = Some(alert.id.clone());
                shown.push(alert);
            }
        }
        if short {
            exhausted = true;
            break;
        }
    }
    let next_before = (!exhausted || shown.len() == limit)
        .then(|| filter.before.clone())
        .flatten();
    Ok(Json(json!({
        "alerts": shown.iter().map(strongroom_watch::alert_json).collect::<Vec<_>>(),
        "next_before": next_before,
    })))
}

/// Body of `POST /v1/alerts/{id}/acknowledge`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acknowledgement {
    /// What was found and done, for whoever reads the alert next.
    #[schema(min_length = 1, max_length = 1000)]
    note: String,
}

/// `POST /v1/alerts/{id}/acknowledge`: marks an open alert as dealt with.
#[utoipa::path(
    post,
    path = "/v1/alerts/{id}/acknowledge",
    tag = "alerts",
    request_body = Acknowledgement,
    params(("id" = String, Path, description = "The alert's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The acknowledged alert", body = crate::openapi::Alert),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`alert.not_found`", body = crate::openapi::ErrorBody),
        (status = 409, description = "`alert.not_open`: acknowledged already", body = crate::openapi::ErrorBody)
    )
)]
pub async fn acknowledge(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Acknowledgement>,
) -> Result<Json<Value>, ApiError> {
    const ACTION: &str = "alert.acknowledge";
    super::require(
        &state,
        &ctx,
        &who,
        Permission::AcknowledgeAlerts,
        ACTION,
        Some(&id),
    )
    .await?;
    let refuse =
        |status, code, message| refuse(&state, &ctx, &who, ACTION, &id, (status, code, message));
    let note = body.note.trim();
    if note.is_empty() || note.chars().count() > 1000 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "request.invalid",
            "note is required (1 to 1,000 characters)",
        )
        .await?);
    }
    let central = &state.vault.stores().central;
    let alert = central.alert(&id).await.map_err(VaultError::from)?;
    let Some(alert) = alert.filter(|a| may_see(&who, a.tenant.as_deref())) else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "alert.not_found",
            "no alert with that id",
        )
        .await?);
    };
    if alert.subject == who.id {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "alert.own",
            "an alert about you is for another security officer to acknowledge",
        )
        .await?);
    }
    if alert.status != "open" {
        return Err(refuse(
            StatusCode::CONFLICT,
            NOT_OPEN,
            "that alert was acknowledged already",
        )
        .await?);
    }
    record(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        Some(&id),
        Outcome::Allowed,
        Some(note.to_owned()),
    )
    .await?;
    let now = state.vault.clock().now_ms();
    if !central
        .acknowledge_alert(&alert.id, &who.id, now, note)
        .await
        .map_err(VaultError::from)?
    {
        // Acknowledged by someone else meanwhile: say this one did not count.
        return Err(refuse(
            StatusCode::CONFLICT,
            NOT_OPEN,
            "that alert was acknowledged already",
        )
        .await?);
    }
    let alert = central
        .alert(&id)
        .await
        .map_err(VaultError::from)?
        .ok_or(VaultError::Integrity)?;
    Ok(Json(strongroom_watch::alert_json(&alert)))
}

const NOT_OPEN: &str = "alert.not_open";

/// Records a refusal of `action` on `target` and returns the error to
/// answer with (or the failure to record it).
async fn refuse(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    action: &str,
    target: &str,
    (status, code, message): (StatusCode, &'static str, &'static str),
) -> Result<ApiError, ApiError> {
    record(
        state,
        ctx,
        Some(who),
        action,
        Some(target),
        Outcome::Denied,
        Some(code.into()),
    )
    .await?;
    Ok(ApiError::new(status, code, message))
}

/// Body of freezing and unfreezing a principal.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeReason {
    /// Why, for the audit log and whoever reviews the freeze.
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

/// The checks freezing and unfreezing share: the permission, the reason,
/// a principal the caller may see (not itself), each refusal audited.
/// Returns the trimmed reason.
async fn authorize_freeze_change(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    action: &str,
    id: &str,
    reason: &str,
) -> Result<String, ApiError> {
    super::require(
        state,
        ctx,
        who,
        Permission::FreezePrincipals,
        action,
        Some(id),
    )
    .await?;
    let refuse =
        |status, code, message| refuse(state, ctx, who, action, id, (status, code, message));
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "request.invalid",
            "reason is required (1 to 500 characters)",
        )
        .await?);
    }
    if id == who.id {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "request.invalid",
            "a principal cannot freeze or unfreeze itself",
        )
        .await?);
    }
    let found = state
        .vault
        .stores()
        .central
        .principal_by_id(id, &TenantScope::of(&who.tenants))
        .await
        .map_err(VaultError::from)?;
    if found.is_none() {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "principal.not_found",
            "no principal with that id",
        )
        .await?);
    }
    Ok(reason.to_owned())
}

/// Whether the central store holds a freeze of `id` (another node's freeze
/// reaches this node's memory only at its next refresh).
async fn stored_freeze(state: &ApiState, id: &str) -> Result<bool, ApiError> {
    Ok(state
        .vault
        .stores()
        .central
        .frozen_principals()
        .await
        .map_err(VaultError::from)?
        .iter()
        .any(|f| f.principal_id == id))
}

/// `POST /v1/principals/{id}/freeze`: refuses every request of a principal
/// from now on, on every node, until it is unfrozen.
#[utoipa::path(
    post,
    path = "/v1/principals/{id}/freeze",
    tag = "principals",
    request_body = FreezeReason,
    params(("id" = String, Path, description = "The principal's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Frozen: its requests are refused with `auth.principal_frozen`"),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "`principal.frozen`: frozen already", body = crate::openapi::ErrorBody)
    )
)]
pub async fn freeze(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FreezeReason>,
) -> Result<StatusCode, ApiError> {
    const ACTION: &str = "principal.freeze";
    let reason = authorize_freeze_change(&state, &ctx, &who, ACTION, &id, &body.reason).await?;
    let conflict = (
        StatusCode::CONFLICT,
        "principal.frozen",
        "that principal is frozen already",
    );
    if state.freezes.is_frozen(&id) || stored_freeze(&state, &id).await? {
        return Err(refuse(&state, &ctx, &who, ACTION, &id, conflict).await?);
    }
    record(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        Some(&id),
        Outcome::Allowed,
        Some(reason.clone()),
    )
    .await?;
    let freeze = FreezeRecord {
        principal_id: id.clone(),
        frozen_at: state.vault.clock().now_ms(),
        alert_id: String::new(),
        frozen_by: who.id.clone(),
        reason,
    };
    let central = &state.vault.stores().central;
    match state
        .freezes
        .freeze(central.as_ref(), freeze)
        .await
        .map_err(VaultError::from)?
    {
        FreezeOutcome::Changed => Ok(StatusCode::NO_CONTENT),
        // Frozen through another node meanwhile.
        FreezeOutcome::Unchanged => Err(refuse(&state, &ctx, &who, ACTION, &id, conflict).await?),
    }
}

/// `POST /v1/principals/{id}/unfreeze`: lifts a freeze (the detectors' or a
/// person's) once the alert behind it has been looked into.
#[utoipa::path(
    post,
    path = "/v1/principals/{id}/unfreeze",
    tag = "principals",
    request_body = FreezeReason,
    params(("id" = String, Path, description = "The principal's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Unfrozen: its requests are served again"),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "`principal.not_frozen`", body = crate::openapi::ErrorBody)
    )
)]
pub async fn unfreeze(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FreezeReason>,
) -> Result<StatusCode, ApiError> {
    const ACTION: &str = "principal.unfreeze";
    let reason = authorize_freeze_change(&state, &ctx, &who, ACTION, &id, &body.reason).await?;
    let conflict = (
        StatusCode::CONFLICT,
        "principal.not_frozen",
        "that principal is not frozen",
    );
    if !state.freezes.is_frozen(&id) && !stored_freeze(&state, &id).await? {
        return Err(refuse(&state, &ctx, &who, ACTION, &id, conflict).await?);
    }
    record(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        Some(&id),
        Outcome::Allowed,
        Some(reason),
    )
    .await?;
    let central = &state.vault.stores().central;
    match state
        .freezes
        .unfreeze(central.as_ref(), &id)
        .await
        .map_err(VaultError::from)?
    {
        FreezeOutcome::Changed => Ok(StatusCode::NO_CONTENT),
        FreezeOutcome::Unchanged => Err(refuse(&state, &ctx, &who, ACTION, &id, conflict).await?),
    }
}
