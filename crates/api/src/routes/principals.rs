//! `/v1/principals`: create, list and disable principals (admin only).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_audit::Outcome;
use strongroom_store::{PrincipalRecord, TenantScope};
use strongroom_vault::policy::ALL_TENANTS;
use strongroom_vault::{Permission, Principal, RequestContext, VaultError, rfc3339};

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::identity::new_principal;
use crate::json::ApiJson;

/// Body of `POST /v1/principals`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipal {
    name: String,
    /// `service` (the default) or `user` (a person).
    #[serde(default = "default_kind")]
    #[schema(pattern = "^(service|user)$")]
    kind: String,
    roles: Vec<String>,
    tenants: Vec<String>,
}

fn default_kind() -> String {
    crate::identity::KIND_SERVICE.to_owned()
}

fn view(p: &PrincipalRecord) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "kind": p.kind,
        "client_id": p.client_id,
        "roles": p.roles,
        "tenants": p.tenants,
        "created_at": rfc3339(p.created_at),
        "created_by": p.created_by,
        "disabled": p.disabled,
        "pending_approval": p.pending_approval,
    })
}

/// Records a principal-management decision (fail-closed, like every audit write).
async fn record(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    action: &str,
    target: Option<&str>,
    outcome: Outcome,
    reason: Option<String>,
) -> Result<(), ApiError> {
    super::audit(state, ctx, Some(who), action, target, outcome, reason).await
}

fn principal_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "principal.not_found",
        "no principal with that id",
    )
}

fn not_pending() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "principal.not_pending",
        "that principal is not waiting for approval",
    )
}

/// The principal with `id`, if it exists and `who` is bound to all its tenants.
/// Its row's seal is checked: a principal changed behind the vault's back is
/// never acted on.
async fn visible_principal(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    id: &str,
) -> Result<Option<PrincipalRecord>, ApiError> {
    let found = state
        .vault
        .stores()
        .central
        .principal_by_id(id, &TenantScope::of(&who.tenants))
        .await
        .map_err(VaultError::from)?;
    Ok(state.vault.checked(found, ctx).await?)
}

/// A change that lost a race with another change of the same principal:
/// recorded as failed (the allowed record before it did not happen).
async fn changed_meanwhile(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    action: &str,
    id: &str,
) -> Result<ApiError, ApiError> {
    did_not_happen(state, ctx, who, action, id, "principal.changed").await?;
    Ok(ApiError::new(
        StatusCode::CONFLICT,
        "principal.changed",
        "the principal changed while this request was handled; read it again and retry",
    ))
}

async fn require_admin(
    state: &ApiState,
    who: &Principal,
    ctx: &RequestContext,
    action: &str,
    target: Option<&str>,
) -> Result<(), ApiError> {
    if let Err(e) = who.require(Permission::ManagePrincipals) {
        record(
            state,
            ctx,
            who,
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

/// After an allowed record, one saying the change did not happen after
/// all (the principal changed meanwhile); the answer is 404.
async fn did_not_happen(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    action: &str,
    id: &str,
    reason: &str,
) -> Result<ApiError, ApiError> {
    record(
        state,
        ctx,
        who,
        action,
        Some(id),
        Outcome::Failed,
        Some(reason.into()),
    )
    .await?;
    Ok(principal_not_found())
}

/// For an administrator's action on one principal: checks the permission
/// and that the principal exists, is visible to `who` and fits `applies`,
/// and records the decision either way.
async fn managed_principal(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    action: &str,
    id: &str,
    applies: impl Fn(&PrincipalRecord) -> bool,
) -> Result<PrincipalRecord, ApiError> {
    require_admin(state, who, ctx, action, Some(id)).await?;
    let Some(target) = visible_principal(state, ctx, who, id)
        .await?
        .filter(|p| applies(p))
    else {
        record(
            state,
            ctx,
            who,
            action,
            Some(id),
            Outcome::Denied,
            Some("principal.not_found".into()),
        )
        .await?;
        return Err(principal_not_found());
    };
    record(state, ctx, who, action, Some(id), Outcome::Allowed, None).await?;
    Ok(target)
}

/// `POST /v1/principals`: the client secret is in this response and nowhere else.
#[utoipa::path(
    post,
    path = "/v1/principals",
    tag = "principals",
    request_body = CreatePrincipal,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the client secret or enrolment code is shown once", body = crate::openapi::CreatedPrincipal),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 409, response = crate::openapi::Conflict)
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<CreatePrincipal>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    const ACTION: &str = "principal.create";
    require_admin(&state, &who, &ctx, ACTION, Some(&body.name)).await?;
    // An administrator can only grant tenants it is bound to itself.
    let outside = body.tenants.iter().find(|t| {
        if t.as_str() == ALL_TENANTS {
            !who.tenants.iter().any(|w| w == ALL_TENANTS)
        } else {
            !who.may_act_in(t)
        }
    });
    if let Some(t) = outside {
        record(
            &state,
            &ctx,
            &who,
            ACTION,
            Some(&body.name),
            Outcome::Denied,
            Some("auth.forbidden: tenant".into()),
        )
        .await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "auth.forbidden",
            format!("you cannot grant tenant '{t}': you are not bound to it"),
        ));
    }
    let now = state.vault.clock().now_ms();
    // Roles defined through another node moments ago must be known here.
    state
        .roles
        .refresh(
            state.vault.stores().central.as_ref(),
            state.vault.row_seals().ok().as_deref(),
        )
        .await
        .map_err(VaultError::from)?;
    let created = new_principal(
        &state.roles,
        &body.name,
        &body.kind,
        &body.roles,
        &body.tenants,
        now,
        &who.id,
    )
    .await?;
    record(
        &state,
        &ctx,
        &who,
        ACTION,
        Some(&created.record.id),
        Outcome::Allowed,
        Some(format!(
            "name={} kind={} roles={}",
            created.record.name,
            created.record.kind,
            created.record.roles.join(",")
        )),
    )
    .await?;
    let central = &state.vault.stores().central;
    let created = created.sealed(&state.vault)?;
    let inserted = match central.insert_principal(created.record.clone()).await {
        Ok(()) => match &created.operator {
            Some(operator) => central.put_operator(operator.clone()).await,
            None => Ok(()),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = inserted {
        // The allowed record above is followed by one saying it did not happen.
        let (error, reason) = match e {
            strongroom_store::StoreError::Conflict(_) => (
                ApiError::new(
                    StatusCode::CONFLICT,
                    "principal.exists",
                    "a principal with that name already exists",
                ),
                "principal.exists",
            ),
            other => (ApiError::from(VaultError::from(other)), "store.unavailable"),
        };
        let id = created.record.id.as_str();
        record(
            &state,
            &ctx,
            &who,
            ACTION,
            Some(id),
            Outcome::Failed,
            Some(reason.into()),
        )
        .await?;
        return Err(error);
    }
    let mut out = view(&created.record);
    if let Some(obj) = out.as_object_mut() {
        let field = if created.operator.is_some() {
            "enrolment_code"
        } else {
            "client_secret"
        };
        obj.insert(field.into(), created.client_secret.as_str().into());
    }
    Ok((StatusCode::CREATED, Json(out)))
}

/// `GET /v1/principals`.
#[utoipa::path(
    get,
    path = "/v1/principals",
    tag = "principals",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Principals bound only to tenants the caller is bound to", body = crate::openapi::PrincipalList),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &who, &ctx, "principal.list", None).await?;
    let all = state
        .vault
        .stores()
        .central
        .list_principals(&TenantScope::of(&who.tenants))
        .await
        .map_err(VaultError::from)?;
    record(
        &state,
        &ctx,
        &who,
        "principal.list",
        None,
        Outcome::Allowed,
        None,
    )
    .await?;
    let visible: Vec<Value> = all.iter().map(view).collect();
    Ok(Json(json!({ "principals": visible })))
}

/// `DELETE /v1/principals/{id}`: disables the principal; its outstanding
/// access tokens are refused from now on.
#[utoipa::path(
    delete,
    path = "/v1/principals/{id}",
    tag = "principals",
    params(("id" = String, Path, description = "The principal's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Disabled: its access tokens are refused from the next request"),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound)
    )
)]
pub async fn disable(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    const ACTION: &str = "principal.disable";
    let target = managed_principal(&state, &ctx, &who, ACTION, &id, |_| true).await?;
    let mut changed = target.clone();
    changed.disabled = true;
    // Refused from now on this node, whatever the store says next.
    state.revocations.revoke(&id);
    if !state.vault.replace_principal(&target, changed).await? {
        return Err(changed_meanwhile(&state, &ctx, &who, ACTION, &id).await?);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/principals/{id}/approve`: dual control. A principal created with
/// a role that reveals or manages keys stays pending until a security officer
/// other than its creator approves it.
#[utoipa::path(
    post,
    path = "/v1/principals/{id}/approve",
    tag = "principals",
    params(("id" = String, Path, description = "The principal's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Approved: the principal can get tokens"),
        (status = 403, description = "`auth.forbidden`, or `principal.self_approval`: the creator cannot approve", body = crate::openapi::ErrorBody),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict)
    )
)]
pub async fn approve(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    const ACTION: &str = "principal.approve";
    let deny = |reason: &str| {
        record(
            &state,
            &ctx,
            &who,
            ACTION,
            Some(&id),
            Outcome::Denied,
            Some(reason.to_owned()),
        )
    };
    if let Err(e) = who.require(Permission::ApprovePrincipals) {
        deny(e.code()).await?;
        return Err(e.into());
    }
    let Some(target) = visible_principal(&state, &ctx, &who, &id).await? else {
        deny("principal.not_found").await?;
        return Err(principal_not_found());
    };
    if target.created_by == who.id {
        deny("principal.self_approval").await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "principal.self_approval",
            "a principal must be approved by someone other than its creator",
        ));
    }
    if !target.pending_approval || target.disabled {
        deny("principal.not_pending").await?;
        return Err(not_pending());
    }
    record(
        &state,
        &ctx,
        &who,
        ACTION,
        Some(&id),
        Outcome::Allowed,
        Some(format!("roles={}", target.roles.join(","))),
    )
    .await?;
    let mut changed = target.clone();
    changed.pending_approval = false;
    if !state.vault.replace_principal(&target, changed).await? {
        return Err(not_pending());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/principals/{id}/unlock`: lets a person whose account locked
/// after repeated failed logins try again (their failure count restarts).
#[utoipa::path(
    post,
    path = "/v1/principals/{id}/unlock",
    tag = "principals",
    params(("id" = String, Path, description = "The principal's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Unlocked: the person may try again"),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound)
    )
)]
pub async fn unlock(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    const ACTION: &str = "principal.unlock";
    managed_principal(&state, &ctx, &who, ACTION, &id, |p| {
        p.kind == crate::identity::KIND_USER
    })
    .await?;
    let operator = state
        .vault
        .stores()
        .central
        .operator(&id)
        .await
        .map_err(VaultError::from)?;
    let unlocked = match state.vault.checked(operator, &ctx).await? {
        Some(current) => {
            let mut changed = current.clone();
            changed.locked = false;
            let unlocked = state.vault.replace_operator(&current, changed).await?;
            if unlocked {
                // The failure counts restart.
                let central = &state.vault.stores().central;
                central
                    .record_login_success(&id)
                    .await
                    .map_err(VaultError::from)?;
            }
            unlocked
        }
        None => false,
    };
    if !unlocked {
        // A person who never had a login record.
        return Err(
            did_not_happen(&state, &ctx, &who, ACTION, &id, "principal.not_enrolled").await?,
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/principals/{id}/rotate-secret`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the old secret keeps working, seconds (default an hour, at
    /// most a week), so clients can be moved over without an outage.
    #[serde(default)]
    #[schema(maximum = 604800)]
    overlap_secs: Option<u64>,
}

/// Longest overlap of a rotation: a week.
const MAX_OVERLAP_SECS: u64 = 7 * 24 * 3600;

/// `POST /v1/principals/{id}/rotate-secret`: a service gets a new client
/// secret (shown once); the old one works until the overlap ends. To cut a
/// leaked secret off at once, rotate with `overlap_secs: 0`, or disable.
#[utoipa::path(
    post,
    path = "/v1/principals/{id}/rotate-secret",
    tag = "principals",
    request_body = RotateSecret,
    params(("id" = String, Path, description = "The principal's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new client secret, shown once", body = crate::openapi::RotatedSecret),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound)
    )
)]
pub async fn rotate_secret(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RotateSecret>,
) -> Result<Json<Value>, ApiError> {
    const ACTION: &str = "principal.rotate_secret";
    let overlap = body.overlap_secs.unwrap_or(3600);
    if overlap > MAX_OVERLAP_SECS {
        return Err(ApiError::invalid(format!(
            "overlap_secs must be at most {MAX_OVERLAP_SECS} (a week)"
        )));
    }
    let target = managed_principal(&state, &ctx, &who, ACTION, &id, |p| {
        p.kind == crate::identity::KIND_SERVICE && !p.disabled
    })
    .await?;
    let secret = crate::identity::new_secret(crate::identity::CLIENT_SECRET_PREFIX)?;
    let hash = crate::identity::hash_secret(secret.clone()).await?;
    let until = state
        .vault
        .clock()
        .now_ms()
        .saturating_add(i64::try_from(overlap * 1000).unwrap_or(i64::MAX));
    // A credential that can reveal (or administer, for a service) is not
    // reissued by an administrator alone: no secret of it gets a token until
    // a security officer approves again. Tokens it already holds run out.
    let granted = state.roles.permissions_if_approved(&target.roles);
    let needs_approval = granted.needs_approval() || granted.manages();
    let mut changed = target.clone();
    changed.previous_secret_hash = std::mem::replace(&mut changed.secret_hash, hash);
    changed.previous_valid_until = until;
    changed.pending_approval = target.pending_approval || needs_approval;
    if !state.vault.replace_principal(&target, changed).await? {
        return Err(changed_meanwhile(&state, &ctx, &who, ACTION, &id).await?);
    }
    Ok(Json(json!({
        "id": id,
        "client_id": target.client_id,
        "client_secret": secret.as_str(),
        "previous_secret_valid_until": rfc3339(until),
        "pending_approval": needs_approval || target.pending_approval,
    })))
}
