//! People at the controls: enrolment, login with password and TOTP, step-up.
//!
//! # What an attacker learns
//! Every refusal of a login says the same thing (`401 auth.invalid_login`)
//! and costs the same argon2id work, whether the user exists, the password
//! was wrong, the code was wrong or replayed, the account is locked or in
//! back-off: only the audit log tells them apart. Enrolment likewise
//! (`401 auth.invalid_enrolment`).
//!
//! # Guessing
//! After each failure a person must wait before the next attempt is even
//! checked: 1 s, 2 s, 4 s … up to a minute. After `lock_after_failures`
//! failures in a row (10 by default) the account locks until an
//! administrator unlocks it. A failed step-up counts like a failed login, so
//! a stolen session cannot grind the second factor either.
//!
//! # Replay
//! A TOTP code is accepted once: the store keeps the last accepted time
//! step per person and accepts only a later one, atomically across nodes.
//! A recovery code is deleted when used.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_audit::Outcome;
use strongroom_store::{OperatorRecord, PrincipalRecord, TenantScope};
use strongroom_vault::policy::MFA_FRESH_SECS;
use strongroom_vault::{Principal, RequestContext, VaultError};
use zeroize::Zeroizing;

use super::audit;
use crate::ApiState;
use crate::auth::{Authenticated, issue};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::identity::{KIND_USER, hash_secret, principal_of, verify_secret};
use crate::json::ApiJson;
use crate::passwords::{
    check_password, new_recovery_codes, normalise_recovery_code, recovery_code_id,
};

/// Body of `POST /v1/auth/login`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    #[schema(value_type = String)]
    password: Zeroizing<String>,
    /// The current code of the authenticator app.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    totp: Option<Zeroizing<String>>,
    /// Instead of `totp`: one of the recovery codes (each works once).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    recovery_code: Option<Zeroizing<String>>,
}

/// Body of `POST /v1/auth/step-up`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    #[schema(value_type = String)]
    totp: Zeroizing<String>,
}

/// Body of `POST /v1/auth/enrol`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    username: String,
    #[schema(value_type = String)]
    enrolment_code: Zeroizing<String>,
    #[schema(value_type = String)]
    password: Zeroizing<String>,
}

/// Body of `POST /v1/auth/enrol/confirm`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    username: String,
    #[schema(value_type = String)]
    enrolment_code: Zeroizing<String>,
    #[schema(value_type = String)]
    totp: Zeroizing<String>,
}

fn invalid_login() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "auth.invalid_login",
        "login failed: check the user name, password and code; after repeated failures wait a minute, and ask an administrator if the account is locked",
    )
}

fn invalid_enrolment() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "auth.invalid_enrolment",
        "enrolment failed: check the user name and the enrolment code you were given",
    )
}

/// Records a refusal and returns the error to answer with.
async fn refuse(
    state: &ApiState,
    ctx: &RequestContext,
    who: Option<&Principal>,
    action: &str,
    reason: &str,
    error: ApiError,
) -> Result<ApiError, ApiError> {
    audit(
        state,
        ctx,
        who,
        action,
        None,
        Outcome::Denied,
        Some(reason.into()),
    )
    .await?;
    Ok(error)
}

/// A person and their login record, if the name belongs to one; both rows'
/// seals checked (a login record changed by SQL logs nobody in).
async fn person(
    state: &ApiState,
    ctx: &RequestContext,
    username: &str,
) -> Result<Option<(PrincipalRecord, OperatorRecord)>, ApiError> {
    let central = &state.vault.stores().central;
    let Some(record) = central
        .principal_by_name(username.trim())
        .await
        .map_err(VaultError::from)?
        .filter(|p| p.kind == KIND_USER)
    else {
        return Ok(None);
    };
    let record = state.vault.checked(Some(record), ctx).await?;
    let operator = central
        .operator(&principal_id(&record))
        .await
        .map_err(VaultError::from)?;
    let operator = state.vault.checked(operator, ctx).await?;
    Ok(record.zip(operator))
}

fn principal_id(record: &Option<PrincipalRecord>) -> String {
    record.as_ref().map(|r| r.id.clone()).unwrap_or_default()
}

/// Claims an attempt for this person (counted before anything is checked,
/// so concurrent attempts cannot share one back-off window), or says why
/// not.
async fn claim(
    state: &ApiState,
    record: &PrincipalRecord,
    operator: &OperatorRecord,
    now_ms: i64,
) -> Result<Result<(), &'static str>, ApiError> {
    if record.disabled {
        return Ok(Err("auth.disabled"));
    }
    if record.pending_approval {
        return Ok(Err("auth.pending_approval"));
    }
    let claimed = state
        .vault
        .stores()
        .central
        .claim_login_attempt(&record.id, now_ms)
        .await
        .map_err(VaultError::from)?;
    Ok(if claimed {
        Ok(())
    } else if !operator.enrolled {
        Err("auth.not_enrolled")
    } else if operator.locked {
        Err("auth.locked")
    } else {
        Err("auth.backoff")
    })
}

/// A second factor as checked, before it is used up.
enum Factor {
    /// A TOTP code that matched this time step.
    Totp(i64),
    /// A recovery code that matched the code with this id.
    Recovery(String),
    /// Wrong, missing, or not checked.
    Wrong(&'static str),
}

/// Checks the second factor. A recovery code costs one argon2id check
/// whether or not anything was claimed, so the time taken says nothing
/// about the password.
async fn check_factor(
    state: &ApiState,
    ctx: &RequestContext,
    operator: Option<&OperatorRecord>,
    totp: Option<&str>,
    recovery: Option<&str>,
) -> Result<Factor, ApiError> {
    match (totp, recovery) {
        (Some(code), None) => {
            let Some(o) = operator else {
                return Ok(Factor::Wrong("auth.bad_totp"));
            };
            Ok(
                match state
                    .vault
                    .check_totp(&o.principal_id, &o.totp_sealed, code)?
                {
                    Some(step) => Factor::Totp(step),
                    None => Factor::Wrong("auth.bad_totp"),
                },
            )
        }
        (None, Some(code)) => {
            let id = recovery_code_id(code);
            let hash = match (operator, &id) {
                (Some(o), Some(id)) => {
                    let stored = state
                        .vault
                        .stores()
                        .central
                        .recovery_code(&o.principal_id, id)
                        .await
                        .map_err(VaultError::from)?;
                    match stored {
                        Some(code) => {
                            // A code inserted by SQL logs nobody in.
                            let row = strongroom_vault::Row::RecoveryCode(&o.principal_id, &code);
                            state.vault.check_row(row, ctx).await?;
                            Some(code.hash)
                        }
                        None => None,
                    }
                }
                _ => None,
            };
            let ok = verify_secret(normalise_recovery_code(code), hash).await;
            Ok(match id {
                Some(id) if ok => Factor::Recovery(id),
                _ => Factor::Wrong("auth.bad_recovery_code"),
            })
        }
        _ => Ok(Factor::Wrong("auth.second_factor_missing")),
    }
}

/// Uses up a matched second factor (a TOTP step or a recovery code),
/// atomically across nodes. `None` if it was used meanwhile (a replay).
async fn use_factor(
    state: &ApiState,
    principal_id: &str,
    factor: Factor,
) -> Result<Result<&'static str, &'static str>, ApiError> {
    let central = &state.vault.stores().central;
    Ok(match factor {
        Factor::Totp(step) => {
            if central
                .accept_totp_step(principal_id, step)
                .await
                .map_err(VaultError::from)?
            {
                Ok("totp")
            } else {
                Err("auth.replayed_totp")
            }
        }
        Factor::Recovery(id) => {
            if central
                .consume_recovery_code(principal_id, &id)
                .await
                .map_err(VaultError::from)?
            {
                Ok("recovery_code")
            } else {
                Err("auth.used_recovery_code")
            }
        }
        Factor::Wrong(reason) => Err(reason),
    })
}

/// Counts a wrong second factor after a right password; records the lock
/// if this one locked the account.
async fn factor_failed(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    operator: &OperatorRecord,
    action: &str,
    reason: &str,
) -> Result<ApiError, ApiError> {
    // The seal the row takes if this failure locks it.
    let mut locked = operator.clone();
    locked.locked = true;
    let locked_seal = state.vault.sealed(locked)?.seal;
    let (count, locked) = state
        .vault
        .stores()
        .central
        .record_factor_failure(&who.id, state.config.lock_after_failures, &locked_seal)
        .await
        .map_err(VaultError::from)?;
    let note = if locked {
        format!("{reason}; account locked after {count} failures")
    } else {
        format!("{reason}; {count} failures in a row")
    };
    audit(
        state,
        ctx,
        Some(who),
        action,
        None,
        Outcome::Denied,
        Some(note),
    )
    .await?;
    Ok(invalid_login())
}

/// A person's access token, second factor proven `now`, after clearing
/// their failure counts.
async fn person_token(
    state: &ApiState,
    who: &Principal,
    now: i64,
) -> Result<Json<Value>, ApiError> {
    state
        .vault
        .stores()
        .central
        .record_login_success(&who.id)
        .await
        .map_err(VaultError::from)?;
    let token = issue(
        state,
        who,
        now,
        state.config.person_token_ttl_secs,
        Some(now),
    )?;
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": state.config.person_token_ttl_secs,
        "mfa_expires_in": MFA_FRESH_SECS,
    })))
}

/// `POST /v1/auth/login`: a person's password and second factor → an access
/// token that records when the second factor was proven.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "people",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "An access token recording that the second factor was proven now", body = crate::openapi::PersonToken),
        (status = 401, description = "`auth.invalid_login`: the same answer for an unknown user, a wrong password or code, a replayed code, back-off and a locked account", body = crate::openapi::ErrorBody)
    )
)]
pub async fn login(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<Value>, ApiError> {
    const ACTION: &str = "auth.login";
    if !state.vault.is_unsealed() {
        return Err(VaultError::Sealed.into());
    }
    let now = state.vault.clock().now_ms();
    let found = person(&state, &ctx, &body.username).await?;
    let claimed = match &found {
        Some((record, operator)) => claim(&state, record, operator, now).await?,
        None => Err("auth.unknown_user"),
    };
    // The same work whatever happened: a password hash and a second factor
    // checked (against nothing when the attempt was not claimed).
    let operator = found.as_ref().filter(|_| claimed.is_ok()).map(|(_, o)| o);
    let password_ok = verify_secret(
        body.password.clone(),
        operator.map(|o| o.password_hash.clone()),
    )
    .await;
    let factor = check_factor(
        &state,
        &ctx,
        operator,
        body.totp.as_deref().map(String::as_str),
        body.recovery_code.as_deref().map(String::as_str),
    )
    .await?;
    let who = found.as_ref().map(|(r, _)| principal_of(r, &state.roles));
    if let Err(reason) = claimed {
        return Err(refuse(&state, &ctx, who.as_ref(), ACTION, reason, invalid_login()).await?);
    }
    let (Some(who), Some((_, operator))) = (who, &found) else {
        return Err(invalid_login());
    };
    if !password_ok {
        // Wrong passwords slow the account down (the claim did that) but
        // never lock it: anyone who knows a user name could send them.
        return Err(refuse(
            &state,
            &ctx,
            Some(&who),
            ACTION,
            "auth.bad_password",
            invalid_login(),
        )
        .await?);
    }
    let used = match use_factor(&state, &who.id, factor).await? {
        Ok(used) => used,
        Err(reason) => {
            return Err(factor_failed(&state, &ctx, &who, operator, ACTION, reason).await?);
        }
    };
    crate::auth::refuse_if_frozen(&state, &ctx, &who, ACTION).await?;
    audit(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        None,
        Outcome::Allowed,
        Some(format!("factor={used}")),
    )
    .await?;
    person_token(&state, &who, now).await
}

/// `POST /v1/auth/step-up`: a person proves their second factor again and
/// gets a new token, good for sensitive actions for the next five minutes.
/// Attempts are claimed and counted like logins, so a stolen session cannot
/// grind codes.
#[utoipa::path(
    post,
    path = "/v1/auth/step-up",
    tag = "people",
    request_body = StepUpRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A new access token with the second factor proven now", body = crate::openapi::PersonToken),
        (status = 400, description = "`auth.not_a_person`: step-up is for people", body = crate::openapi::ErrorBody)
    )
)]
pub async fn step_up(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<StepUpRequest>,
) -> Result<Json<Value>, ApiError> {
    const ACTION: &str = "auth.step_up";
    if !who.human {
        return Err(refuse(
            &state,
            &ctx,
            Some(&who),
            ACTION,
            "auth.not_a_person",
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "auth.not_a_person",
                "step-up is for people; services authenticate with their client credentials",
            ),
        )
        .await?);
    }
    let now = state.vault.clock().now_ms();
    let central = &state.vault.stores().central;
    let record = central
        .principal_by_id(&who.id, &TenantScope::All)
        .await
        .map_err(VaultError::from)?;
    let record = state.vault.checked(record, &ctx).await?;
    let operator = central.operator(&who.id).await.map_err(VaultError::from)?;
    let operator = state.vault.checked(operator, &ctx).await?;
    let (record, operator) = match record.zip(operator) {
        Some(found) => found,
        None => {
            let reason = "auth.unknown_user";
            return Err(refuse(&state, &ctx, Some(&who), ACTION, reason, invalid_login()).await?);
        }
    };
    if let Err(reason) = claim(&state, &record, &operator, now).await? {
        return Err(refuse(&state, &ctx, Some(&who), ACTION, reason, invalid_login()).await?);
    }
    let factor = check_factor(
        &state,
        &ctx,
        Some(&operator),
        Some(body.totp.as_str()),
        None,
    )
    .await?;
    if let Err(reason) = use_factor(&state, &who.id, factor).await? {
        return Err(factor_failed(&state, &ctx, &who, &operator, ACTION, reason).await?);
    }
    crate::auth::refuse_if_frozen(&state, &ctx, &who, ACTION).await?;
    audit(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        None,
        Outcome::Allowed,
        None,
    )
    .await?;
    person_token(&state, &who, now).await
}

/// A person and their login record if the enrolment code is theirs and
/// still unused; the code is checked at the same cost either way.
async fn enrolling(
    state: &ApiState,
    ctx: &RequestContext,
    action: &str,
    username: &str,
    code: &Zeroizing<String>,
) -> Result<(Principal, OperatorRecord), ApiError> {
    if !state.vault.is_unsealed() {
        return Err(VaultError::Sealed.into());
    }
    let found = person(state, ctx, username).await?;
    let hash = found
        .as_ref()
        .filter(|(r, o)| !r.disabled && !o.enrolled && !o.enrolment_hash.is_empty())
        .map(|(_, o)| o.enrolment_hash.clone());
    let ok = verify_secret(code.clone(), hash).await;
    match found {
        Some((record, operator)) if ok => Ok((principal_of(&record, &state.roles), operator)),
        found => {
            let who = found.as_ref().map(|(r, _)| principal_of(r, &state.roles));
            let reason = match &found {
                None => "auth.unknown_user",
                Some((r, _)) if r.disabled => "auth.disabled",
                Some((_, o)) if o.enrolled => "auth.already_enrolled",
                Some(_) => "auth.bad_enrolment_code",
            };
            audit(
                state,
                ctx,
                who.as_ref(),
                action,
                None,
                Outcome::Denied,
                Some(reason.into()),
            )
            .await?;
            Err(invalid_enrolment())
        }
    }
}

/// `POST /v1/auth/enrol`: with the one-time code an administrator was
/// given, a person sets their password and receives their TOTP seed (as an
/// `otpauth://` URI) and recovery codes, all shown only now. The account
/// works once a first code confirms it (`/v1/auth/enrol/confirm`).
#[utoipa::path(
    post,
    path = "/v1/auth/enrol",
    tag = "people",
    request_body = EnrolRequest,
    responses(
        (status = 200, description = "The TOTP seed and recovery codes, shown once", body = crate::openapi::Enrolment),
        (status = 401, description = "`auth.invalid_enrolment`: unknown user, wrong or used code", body = crate::openapi::ErrorBody)
    )
)]
pub async fn enrol(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    ApiJson(body): ApiJson<EnrolRequest>,
) -> Result<Json<Value>, ApiError> {
    const ACTION: &str = "auth.enrol";
    let (who, operator) =
        enrolling(&state, &ctx, ACTION, &body.username, &body.enrolment_code).await?;
    if let Err(e) = check_password(&who.name, &body.password) {
        return Err(refuse(
            &state,
            &ctx,
            Some(&who),
            ACTION,
            "auth.weak_password",
            e.into(),
        )
        .await?);
    }
    let password_hash = hash_secret(body.password.clone()).await?;
    let totp = state.vault.new_totp(&who.id, &who.name)?;
    let codes = new_recovery_codes().await?;
    audit(
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
    // Only while the record is the unfinished one just read: a concurrent
    // confirm wins.
    let mut changed = operator.clone();
    changed.password_hash = password_hash;
    changed.totp_sealed = totp.sealed.clone();
    let stored = state.vault.replace_operator(&operator, changed).await;
    if !matches!(stored, Ok(true)) {
        audit(
            &state,
            &ctx,
            Some(&who),
            ACTION,
            None,
            Outcome::Failed,
            Some("auth.already_enrolled".into()),
        )
        .await?;
        stored?;
        return Err(invalid_enrolment());
    }
    let stored = codes
        .stored
        .into_iter()
        .map(|(code_id, hash)| {
            let code = strongroom_store::RecoveryCodeRecord {
                code_id,
                hash,
                seal: Vec::new(),
            };
            state.vault.sealed_recovery_code(&who.id, code)
        })
        .collect::<Result<Vec<_>, _>>()?;
    central
        .set_recovery_codes(&who.id, stored)
        .await
        .map_err(VaultError::from)?;
    let shown: Vec<&str> = codes.shown.iter().map(|c| c.as_str()).collect();
    Ok(Json(json!({
        "otpauth_uri": totp.uri.as_str(),
        "totp_secret": totp.secret_base32.as_str(),
        "recovery_codes": shown,
        "next": "add the URI to an authenticator app, then POST /v1/auth/enrol/confirm with its current code",
    })))
}

/// `POST /v1/auth/enrol/confirm`: the first code from the authenticator
/// proves the seed arrived; the enrolment code stops working.
#[utoipa::path(
    post,
    path = "/v1/auth/enrol/confirm",
    tag = "people",
    request_body = ConfirmRequest,
    responses(
        (status = 204, description = "Enrolled: the person can log in"),
        (status = 401, description = "`auth.invalid_enrolment` or `auth.invalid_totp`", body = crate::openapi::ErrorBody),
        (status = 409, description = "`auth.enrol_first` or `auth.enrolment_changed`", body = crate::openapi::ErrorBody)
    )
)]
pub async fn confirm(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    ApiJson(body): ApiJson<ConfirmRequest>,
) -> Result<StatusCode, ApiError> {
    const ACTION: &str = "auth.enrol_confirm";
    let (who, operator) =
        enrolling(&state, &ctx, ACTION, &body.username, &body.enrolment_code).await?;
    if operator.totp_sealed.is_empty() {
        return Err(refuse(
            &state,
            &ctx,
            Some(&who),
            ACTION,
            "auth.not_enrolled",
            ApiError::new(
                StatusCode::CONFLICT,
                "auth.enrol_first",
                "set a password first: POST /v1/auth/enrol",
            ),
        )
        .await?);
    }
    let factor = check_factor(
        &state,
        &ctx,
        Some(&operator),
        Some(body.totp.as_str()),
        None,
    )
    .await?;
    if let Err(reason) = use_factor(&state, &who.id, factor).await? {
        return Err(refuse(
            &state,
            &ctx,
            Some(&who),
            ACTION,
            reason,
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "auth.invalid_totp",
                "that code does not match: check the authenticator app's clock and try the next code",
            ),
        )
        .await?);
    }
    audit(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        None,
        Outcome::Allowed,
        None,
    )
    .await?;
    // Only the seed this code proved, and only once.
    let mut changed = operator.clone();
    changed.enrolled = true;
    changed.enrolment_hash = String::new();
    let finished = state.vault.replace_operator(&operator, changed).await?;
    if !finished {
        return Err(refuse(
            &state,
            &ctx,
            Some(&who),
            ACTION,
            "auth.enrolment_changed",
            ApiError::new(
                StatusCode::CONFLICT,
                "auth.enrolment_changed",
                "the enrolment changed while it was confirmed: run the enrolment again",
            ),
        )
        .await?);
    }
    Ok(StatusCode::NO_CONTENT)
}
