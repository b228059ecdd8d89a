//! `POST /v1/sys/bootstrap`: the first people, from the one-time token that
//! `strongroom init` prints.
//!
//! There is no default password and no built-in account. `init` prints a
//! random bootstrap token and keeps only its argon2id hash (in the vault
//! store's meta table). Presented once to an unsealed vault, it creates the
//! first administrator and the first security officer, both people (password
//! and TOTP, enrolled with one-time codes), so dual control holds from the
//! start: the administrator creates principals, the officer approves those
//! that can reveal. The two get fixed ids, so a second use fails on the
//! primary key even if two nodes accept the token at the same moment; then
//! the stored hash is replaced by a marker and the token stops working.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_audit::Outcome;
use strongroom_store::StoreError;
use strongroom_vault::VaultError;
use zeroize::Zeroizing;

use super::audit;
use crate::ApiState;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::identity::{
    KIND_USER, NewCredentials, hash_secret, new_principal, new_secret, verify_secret,
};
use crate::json::ApiJson;

/// Name of the vault-store meta value holding the token's hash.
pub const BOOTSTRAP_META: &str = "bootstrap_token_hash";
/// What replaces the hash once the token has been used.
const USED: &[u8] = b"used";
/// Prefix of bootstrap tokens.
pub const BOOTSTRAP_PREFIX: &str = "srbt_";

/// Body of `POST /v1/sys/bootstrap`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    #[schema(value_type = String)]
    bootstrap_token: Zeroizing<String>,
    /// User name of the first administrator.
    admin: String,
    /// User name of the first security officer (another person).
    security_officer: String,
}

/// Makes a bootstrap token and the hash to store (`init` calls this).
pub async fn new_bootstrap_token() -> Result<(Zeroizing<String>, Vec<u8>), VaultError> {
    let token = new_secret(BOOTSTRAP_PREFIX)?;
    let hash = hash_secret(token.clone()).await?;
    Ok((token, hash.into_bytes()))
}

fn refused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "auth.invalid_bootstrap",
        "that bootstrap token is not valid here, or it has already been used",
    )
}

async fn person(name: &str, role: &str, id: &str, now: i64) -> Result<NewCredentials, ApiError> {
    // Built-in roles only: the catalog of custom roles is not needed.
    let mut made = new_principal(
        &crate::roles::RoleCatalog::default(),
        name,
        KIND_USER,
        &[role.to_owned()],
        &["*".to_owned()],
        now,
        "",
    )
    .await?;
    made.record.id = id.to_owned();
    if let Some(operator) = made.operator.as_mut() {
        operator.principal_id = id.to_owned();
    }
    Ok(made)
}

/// `POST /v1/sys/bootstrap`.
#[utoipa::path(
    post,
    path = "/v1/sys/bootstrap",
    tag = "people",
    request_body = BootstrapRequest,
    responses(
        (status = 201, description = "The first administrator and security officer, with one-time enrolment codes", body = crate::openapi::Bootstrapped),
        (status = 401, description = "`auth.invalid_bootstrap`: not this vault's token, or already used", body = crate::openapi::ErrorBody),
        (status = 409, response = crate::openapi::Conflict)
    )
)]
pub async fn bootstrap(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    ApiJson(body): ApiJson<BootstrapRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    const ACTION: &str = "sys.bootstrap";
    if !state.vault.is_unsealed() {
        return Err(VaultError::Sealed.into());
    }
    let stores = state.vault.stores();
    let stored = stores
        .vault
        .get_meta(BOOTSTRAP_META)
        .await
        .map_err(VaultError::from)?
        .filter(|h| h.as_slice() != USED)
        .and_then(|h| String::from_utf8(h).ok());
    let unused = stored.is_some();
    if !verify_secret(body.bootstrap_token.clone(), stored).await {
        let reason = if unused {
            "bootstrap.bad_token"
        } else {
            "bootstrap.used"
        };
        audit(
            &state,
            &ctx,
            None,
            ACTION,
            None,
            Outcome::Denied,
            Some(reason.into()),
        )
        .await?;
        return Err(refused());
    }
    if body.admin.trim() == body.security_officer.trim() {
        audit(
            &state,
            &ctx,
            None,
            ACTION,
            None,
            Outcome::Denied,
            Some("request.invalid: one person for both roles".into()),
        )
        .await?;
        return Err(ApiError::invalid(
            "the administrator and the security officer must be two people",
        ));
    }
    let now = state.vault.clock().now_ms();
    let admin = person(&body.admin, "admin", "p_bootstrap_admin", now)
        .await?
        .sealed(&state.vault)?;
    let officer = person(
        &body.security_officer,
        "security_officer",
        "p_bootstrap_officer",
        now,
    )
    .await?
    .sealed(&state.vault)?;
    audit(
        &state,
        &ctx,
        None,
        ACTION,
        None,
        Outcome::Allowed,
        Some(format!(
            "admin={} security_officer={}",
            admin.record.name, officer.record.name
        )),
    )
    .await?;
    for made in [&admin, &officer] {
        let Some(operator) = &made.operator else {
            continue;
        };
        match stores.central.insert_principal(made.record.clone()).await {
            Ok(()) => {}
            // An earlier run with this token stopped part-way (before the
            // token was marked used): its people, if not yet enrolled, get
            // new codes, since nobody saw the old ones.
            Err(StoreError::Conflict(_)) => {
                let earlier = stores
                    .central
                    .operator(&made.record.id)
                    .await
                    .map_err(VaultError::from)?;
                if earlier.as_ref().is_none_or(|o| o.enrolled) {
                    audit(
                        &state,
                        &ctx,
                        None,
                        ACTION,
                        None,
                        Outcome::Failed,
                        Some("bootstrap.used".into()),
                    )
                    .await?;
                    return Err(refused());
                }
            }
            Err(e) => return Err(VaultError::from(e).into()),
        }
        stores
            .central
            .put_operator(operator.clone())
            .await
            .map_err(VaultError::from)?;
    }
    stores
        .vault
        .put_meta(BOOTSTRAP_META, USED.to_vec())
        .await
        .map_err(VaultError::from)?;
    let view = |made: &NewCredentials| {
        json!({
            "id": made.record.id,
            "name": made.record.name,
            "roles": made.record.roles,
            "enrolment_code": made.client_secret.as_str(),
        })
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "admin": view(&admin),
            "security_officer": view(&officer),
            "next": "give each person their enrolment code (two different people); each enrols with POST /v1/auth/enrol or `strongroom enrol`",
        })),
    ))
}
