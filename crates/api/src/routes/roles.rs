//! `/v1/roles`: built-in and custom roles. Administrators define custom
//! roles; a definition or change that touches a power needing dual control
//! (revealing, reactivating, deleting, keys, approving) waits until a
//! security officer other than the requester approves it. Until then the
//! role keeps granting what it granted before (nothing, if it is new).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_audit::Outcome;
use strongroom_store::{CustomRoleRecord, StoreError, TenantScope};
use strongroom_vault::policy::{ALL_TENANTS, validate_role_name};
use strongroom_vault::{
    Permission, PermissionSet, Principal, RequestContext, Role, VaultError, rfc3339,
};

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// Body of `POST /v1/roles/{name}/approve`: the permissions the officer
/// read in the pending change and approves.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRole {
    /// Exactly the pending permission names.
    permissions: Vec<String>,
}

/// Body of `PUT /v1/roles/{name}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineRole {
    /// Permission names, e.g. `secrets:tokenize`.
    #[schema(min_items = 1)]
    permissions: Vec<String>,
}

fn builtin_view(role: Role) -> Value {
    json!({
        "name": role.as_str(),
        "builtin": true,
        "permissions": role.permissions().names(),
        "pending_permissions": null,
    })
}

fn custom_view(r: &CustomRoleRecord) -> Value {
    json!({
        "name": r.name,
        "builtin": false,
        "permissions": r.permissions,
        "pending_permissions": r.pending,
        "requested_by": r.requested_by,
        "created_by": r.created_by,
        "created_at": rfc3339(r.created_at),
        "updated_at": rfc3339(r.updated_at),
    })
}

fn role_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "role.not_found",
        "no custom role with that name",
    )
}

fn changed_meanwhile() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "role.changed",
        "the role changed while this request was decided; read it again and retry",
    )
}

/// Custom roles apply in every tenant, so only a principal bound to every
/// tenant may define or approve them: an administrator of one tenant must
/// not change what principals of another may do.
async fn require_every_tenant(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    action: &str,
    name: &str,
) -> Result<(), ApiError> {
    if who.tenants.iter().any(|t| t == ALL_TENANTS) {
        return Ok(());
    }
    super::audit(
        state,
        ctx,
        Some(who),
        action,
        Some(name),
        Outcome::Denied,
        Some("auth.forbidden: not bound to every tenant".into()),
    )
    .await?;
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "auth.forbidden",
        "custom roles apply in every tenant: only a principal bound to all tenants ('*') may define or approve them",
    ))
}

/// A custom role as stored, its seal checked: a change or an approval is
/// never decided on a row changed behind the vault's back.
async fn stored_role(
    state: &ApiState,
    ctx: &RequestContext,
    name: &str,
) -> Result<Option<CustomRoleRecord>, ApiError> {
    let all = state
        .vault
        .stores()
        .central
        .list_custom_roles()
        .await
        .map_err(VaultError::from)?;
    let found = all.into_iter().find(|r| r.name == name);
    Ok(state.vault.checked(found, ctx).await?)
}

/// `GET /v1/roles`: every role and what it grants, with pending changes
/// (for administrators, and for the officers who approve them).
#[utoipa::path(
    get,
    path = "/v1/roles",
    tag = "roles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every role and what it grants, with changes waiting for approval", body = crate::openapi::RoleList),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
) -> Result<Json<Value>, ApiError> {
    const ACTION: &str = "role.list";
    let permission = if who.has(Permission::ApprovePrincipals) {
        Permission::ApprovePrincipals
    } else {
        Permission::ManageRoles
    };
    super::require(&state, &ctx, &who, permission, ACTION, None).await?;
    let custom = state
        .vault
        .stores()
        .central
        .list_custom_roles()
        .await
        .map_err(VaultError::from)?;
    super::audit(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        None,
        Outcome::Allowed,
        None,
    )
    .await?;
    let roles: Vec<Value> = Role::ALL
        .into_iter()
        .map(builtin_view)
        .chain(custom.iter().map(custom_view))
        .collect();
    Ok(Json(json!({ "roles": roles })))
}

/// `PUT /v1/roles/{name}`: defines a custom role or changes one. `201` when
/// defined, `200` when the change applies at once, `202` when it waits for
/// a second person's approval.
#[utoipa::path(
    put,
    path = "/v1/roles/{name}",
    tag = "roles",
    request_body = DefineRole,
    params(("name" = String, Path, description = "The custom role's name")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Defined; in force", body = crate::openapi::RoleChange),
        (status = 200, description = "Changed; in force", body = crate::openapi::RoleChange),
        (status = 202, description = "Waiting for a security officer other than the requester to approve; the role keeps granting what it granted", body = crate::openapi::RoleChange),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 409, response = crate::openapi::Conflict)
    )
)]
pub async fn define(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<DefineRole>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    const ACTION: &str = "role.define";
    super::require(
        &state,
        &ctx,
        &who,
        Permission::ManageRoles,
        ACTION,
        Some(&name),
    )
    .await?;
    require_every_tenant(&state, &ctx, &who, ACTION, &name).await?;
    let invalid = |e: VaultError| ApiError::from(e);
    validate_role_name(&name).map_err(invalid)?;
    if body.permissions.is_empty() || body.permissions.len() > Permission::ALL.len() * 2 {
        return Err(ApiError::invalid(
            "give the role's permissions, e.g. [\"secrets:tokenize\"]",
        ));
    }
    let wanted = PermissionSet::parse(&body.permissions).map_err(invalid)?;
    if wanted.defeats_dual_control() {
        return Err(ApiError::invalid(
            "a role that manages principals or roles cannot also reveal secrets (not even masked), read their metadata, reactivate, delete, manage keys or approve",
        ));
    }
    if let Err(e) = check_holders(&state, &ctx, &name, wanted).await {
        super::audit(
            &state,
            &ctx,
            Some(&who),
            ACTION,
            Some(&name),
            Outcome::Denied,
            Some(e.code.into()),
        )
        .await?;
        return Err(e);
    }
    let now = state.vault.clock().now_ms();
    let central = &state.vault.stores().central;
    let (status, record, reason) = match stored_role(&state, &ctx, &name).await? {
        None => {
            let needs_second_person = needs_second_person(wanted, PermissionSet::EMPTY);
            let record = CustomRoleRecord {
                name: name.clone(),
                permissions: if needs_second_person {
                    Vec::new()
                } else {
                    wanted.names()
                },
                pending: needs_second_person.then(|| wanted.names()),
                requested_by: who.id.clone(),
                created_by: who.id.clone(),
                created_at: now,
                updated_at: now,
                version: 1,
                seal: Vec::new(),
            };
            let reason = describe(&record, "defined");
            super::audit(
                &state,
                &ctx,
                Some(&who),
                ACTION,
                Some(&name),
                Outcome::Allowed,
                Some(reason.clone()),
            )
            .await?;
            let record = state.vault.sealed(record)?;
            match central.insert_custom_role(record.clone()).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    failed(&state, &ctx, &who, ACTION, &name, "role.changed").await?;
                    return Err(changed_meanwhile());
                }
                Err(e) => return Err(VaultError::from(e).into()),
            }
            let status = if needs_second_person {
                StatusCode::ACCEPTED
            } else {
                StatusCode::CREATED
            };
            (status, record, reason)
        }
        Some(current) => {
            let before = PermissionSet::parse(&current.permissions).unwrap_or_default();
            let needs_second_person = needs_second_person(wanted, before);
            let mut record = current.clone();
            record.updated_at = now;
            record.requested_by = who.id.clone();
            record.version = current.version + 1;
            if needs_second_person {
                record.pending = Some(wanted.names());
            } else {
                record.permissions = wanted.names();
                record.pending = None;
            }
            let reason = describe(&record, "changed");
            super::audit(
                &state,
                &ctx,
                Some(&who),
                ACTION,
                Some(&name),
                Outcome::Allowed,
                Some(reason.clone()),
            )
            .await?;
            let record = state.vault.sealed(record)?;
            if !central
                .replace_custom_role(record.clone(), current.version)
                .await
                .map_err(VaultError::from)?
            {
                failed(&state, &ctx, &who, ACTION, &name, "role.changed").await?;
                return Err(changed_meanwhile());
            }
            let status = if needs_second_person {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            (status, record, reason)
        }
    };
    state.roles.put(&record);
    let mut out = custom_view(&record);
    if let Some(obj) = out.as_object_mut() {
        obj.insert(
            "pending_approval".into(),
            (status == StatusCode::ACCEPTED).into(),
        );
        obj.insert("outcome".into(), reason.into());
    }
    Ok((status, Json(out)))
}

/// Whether changing a role from `before` to `wanted` needs a second person:
/// when it adds a power that needs approval, or adds the management of
/// principals or roles (a service holding the role would become a lasting
/// administrator's credential that never proves a second factor). A change
/// that only takes permissions away applies at once: withdrawing a power
/// must never wait.
fn needs_second_person(wanted: PermissionSet, before: PermissionSet) -> bool {
    let added = wanted.added_to(before);
    added.needs_approval() || added.manages()
}

/// Refuses a role's new permissions if a principal holding the role would,
/// with its other roles, mix administration with access to secrets: an
/// administrator must not gain a reveal through a role it already holds.
async fn check_holders(
    state: &ApiState,
    ctx: &RequestContext,
    name: &str,
    wanted: PermissionSet,
) -> Result<(), ApiError> {
    let principals = state
        .vault
        .stores()
        .central
        .list_principals(&TenantScope::All)
        .await
        .map_err(VaultError::from)?;
    // Decided on every holder's row as sealed: a `disabled` flag set by SQL
    // to hide a holder from this check is refused, not believed.
    for p in principals
        .iter()
        .filter(|p| p.roles.iter().any(|r| r == name))
    {
        state
            .vault
            .check_row(strongroom_vault::Row::Principal(p), ctx)
            .await?;
    }
    // Roles defined through another node moments ago must be known here.
    state
        .roles
        .refresh(
            state.vault.stores().central.as_ref(),
            state.vault.row_seals().ok().as_deref(),
        )
        .await
        .map_err(VaultError::from)?;
    for holder in principals
        .iter()
        .filter(|p| !p.disabled && p.roles.iter().any(|r| r == name))
    {
        let others: Vec<String> = holder
            .roles
            .iter()
            .filter(|r| *r != name)
            .cloned()
            .collect();
        let combined = state.roles.permissions_if_approved(&others).union(wanted);
        if combined.defeats_dual_control() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "role.conflicts_with_holder",
                format!(
                    "principal '{}' holds this role and, with its other roles, would both administer and see or control secrets; take the role from it first",
                    holder.name
                ),
            ));
        }
    }
    Ok(())
}

fn describe(record: &CustomRoleRecord, what: &str) -> String {
    match &record.pending {
        Some(pending) => format!(
            "{what}; waiting for approval: permissions={}",
            pending.join(",")
        ),
        None => format!("{what}: permissions={}", record.permissions.join(",")),
    }
}

/// After an allowed record, one saying the change did not happen after all.
async fn failed(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    action: &str,
    name: &str,
    reason: &str,
) -> Result<(), ApiError> {
    super::audit(
        state,
        ctx,
        Some(who),
        action,
        Some(name),
        Outcome::Failed,
        Some(reason.into()),
    )
    .await
}

/// `POST /v1/roles/{name}/approve`: a security officer other than the
/// requester puts a pending definition or change into force.
#[utoipa::path(
    post,
    path = "/v1/roles/{name}/approve",
    tag = "roles",
    request_body = ApproveRole,
    params(("name" = String, Path, description = "The custom role's name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "In force", body = crate::openapi::RoleChange),
        (status = 403, description = "`auth.forbidden`, or `role.self_approval`: the requester, or a holder of the role, cannot approve", body = crate::openapi::ErrorBody),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict)
    )
)]
pub async fn approve(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ApproveRole>,
) -> Result<Json<Value>, ApiError> {
    const ACTION: &str = "role.approve";
    super::require(
        &state,
        &ctx,
        &who,
        Permission::ApprovePrincipals,
        ACTION,
        Some(&name),
    )
    .await?;
    require_every_tenant(&state, &ctx, &who, ACTION, &name).await?;
    let deny = |reason: &'static str| {
        super::audit(
            &state,
            &ctx,
            Some(&who),
            ACTION,
            Some(&name),
            Outcome::Denied,
            Some(reason.into()),
        )
    };
    let Some(current) = stored_role(&state, &ctx, &name).await? else {
        deny("role.not_found").await?;
        return Err(role_not_found());
    };
    let Some(pending) = current.pending.clone() else {
        deny("role.not_pending").await?;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "role.not_pending",
            "that role has no change waiting for approval",
        ));
    };
    if current.requested_by == who.id || who.roles.contains(&name) {
        deny("role.self_approval").await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "role.self_approval",
            "a role change must be approved by someone other than the person who asked for it, and not by a holder of the role",
        ));
    }
    // The officer approves what they saw: if the pending change was replaced
    // since, this approval is not for it.
    let seen = PermissionSet::parse(&body.permissions).map_err(ApiError::from)?;
    let waiting = PermissionSet::parse(&pending).unwrap_or_default();
    if seen != waiting {
        deny("role.changed").await?;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "role.changed",
            format!(
                "the change waiting for approval is now permissions={}; read it again and approve that, if it is right",
                pending.join(",")
            ),
        ));
    }
    // Holders may have gained roles since the request.
    if let Err(e) = check_holders(&state, &ctx, &name, waiting).await {
        deny(e.code).await?;
        return Err(e);
    }
    let mut record = current.clone();
    record.permissions = pending;
    record.pending = None;
    record.updated_at = state.vault.clock().now_ms();
    record.version = current.version + 1;
    super::audit(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        Some(&name),
        Outcome::Allowed,
        Some(format!(
            "requested by {}: permissions={}",
            current.requested_by,
            record.permissions.join(",")
        )),
    )
    .await?;
    let central = &state.vault.stores().central;
    let record = state.vault.sealed(record)?;
    if !central
        .replace_custom_role(record.clone(), current.version)
        .await
        .map_err(VaultError::from)?
    {
        failed(&state, &ctx, &who, ACTION, &name, "role.changed").await?;
        return Err(changed_meanwhile());
    }
    state.roles.put(&record);
    Ok(Json(custom_view(&record)))
}
