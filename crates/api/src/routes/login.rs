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
use strongroom_store::{OperatorRecord, PrincipalRecord};
use strongroom_vault::policy::MFA_FRESH_SECS;
use strongroom_vault::{Principal, RequestContext, VaultError};
use zeroize::Zeroizing;

use crate::ApiState;
use crate::auth::{Authenticated, issue};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::identity::{KIND_USER, hash_secret, principal_of, verify_secret};
use crate::json::ApiJson;
use crate::passwords::{
    check_password, new_recovery_codes, normalise_recovery_code, recovery_code_id,
};

/// Longest wait between attempts after repeated failures, seconds.
const MAX_BACKOFF_SECS: i64 = 60;

/// Body of `POST /v1/auth/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: Zeroizing<String>,
    /// The current code of the authenticator app.
    #[serde(default)]
    totp: Option<Zeroizing<String>>,
    /// Instead of `totp`: one of the recovery codes (each works once).
    #[serde(default)]
    recovery_code: Option<Zeroizing<String>>,
}

/// Body of `POST /v1/auth/step-up`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    totp: Zeroizing<String>,
}

/// Body of `POST /v1/auth/enrol`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    username: String,
    enrolment_code: Zeroizing<String>,
    password: Zeroizing<String>,
}

/// Body of `POST /v1/auth/enrol/confirm`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    username: String,
    enrolment_code: Zeroizing<String>,
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

async fn audit(
    state: &ApiState,
    ctx: &RequestContext,
    who: Option<&Principal>,
    action: &str,
    outcome: Outcome,
    reason: Option<String>,
) -> Result<(), ApiError> {
    let event = state
        .vault
        .event(ctx, who, action, None, None, outcome, reason);
    state.vault.record(event).await?;
    Ok(())
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
        Outcome::Denied,
        Some(reason.into()),
    )
    .await?;
    Ok(error)
}

/// A person and their login record, if the name belongs to one.
async fn person(
    state: &ApiState,
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
    let operator = central
        .operator(&record.id)
        .await
        .map_err(VaultError::from)?;
    Ok(operator.map(|o| (record, o)))
}

/// Seconds to wait after `failures` failures in a row.
fn backoff_secs(failures: i64) -> i64 {
    if failures <= 0 {
        0
    } else {
        1i64.checked_shl(u32::try_from(failures - 1).unwrap_or(u32::MAX))
            .unwrap_or(MAX_BACKOFF_SECS)
            .min(MAX_BACKOFF_SECS)
    }
}

/// Why a person may not log in now, before any secret is checked.
fn barred(
    record: &PrincipalRecord,
    operator: &OperatorRecord,
    now_ms: i64,
) -> Option<&'static str> {
    if record.disabled {
        Some("auth.disabled")
    } else if record.pending_approval {
        Some("auth.pending_approval")
    } else if !operator.enrolled {
        Some("auth.not_enrolled")
    } else if operator.locked {
        Some("auth.locked")
    } else if now_ms < operator.last_failure_at + backoff_secs(operator.failed_logins) * 1000 {
        Some("auth.backoff")
    } else {
        None
    }
}

/// Checks a TOTP code and uses up its time step. `Ok(false)` for a wrong or
/// already used code.
async fn use_totp(
    state: &ApiState,
    operator: &OperatorRecord,
    code: &str,
) -> Result<bool, ApiError> {
    let Some(step) = state
        .vault
        .check_totp(&operator.principal_id, &operator.totp_sealed, code)?
    else {
        return Ok(false);
    };
    Ok(state
        .vault
        .stores()
        .central
        .accept_totp_step(&operator.principal_id, step)
        .await
        .map_err(VaultError::from)?)
}

/// Checks a recovery code and deletes it.
async fn use_recovery_code(
    state: &ApiState,
    operator: &OperatorRecord,
    code: &str,
) -> Result<bool, ApiError> {
    let central = &state.vault.stores().central;
    let hash = match recovery_code_id(code) {
        Some(id) => central
            .recovery_code(&operator.principal_id, &id)
            .await
            .map_err(VaultError::from)?
            .map(|h| (id, h)),
        None => None,
    };
    let ok = verify_secret(
        normalise_recovery_code(code),
        hash.as_ref().map(|(_, h)| h.clone()),
    )
    .await;
    match hash {
        Some((id, _)) if ok => Ok(central
            .consume_recovery_code(&operator.principal_id, &id)
            .await
            .map_err(VaultError::from)?),
        _ => Ok(false),
    }
}

/// Counts a failure; records the lock if this one locked the account.
async fn failed(
    state: &ApiState,
    ctx: &RequestContext,
    who: &Principal,
    action: &str,
    reason: &str,
) -> Result<ApiError, ApiError> {
    let now = state.vault.clock().now_ms();
    let (count, locked) = state
        .vault
        .stores()
        .central
        .record_login_failure(&who.id, now, state.config.lock_after_failures)
        .await
        .map_err(VaultError::from)?;
    let note = if locked {
        format!("{reason}; account locked after {count} failures")
    } else {
        format!("{reason}; {count} failures in a row")
    };
    audit(state, ctx, Some(who), action, Outcome::Denied, Some(note)).await?;
    Ok(invalid_login())
}

/// A person's access token, second factor proven `now`.
fn person_token(state: &ApiState, who: &Principal, now: i64) -> Result<Json<Value>, ApiError> {
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
    let found = person(&state, &body.username).await?;
    let bar = found.as_ref().and_then(|(r, o)| barred(r, o, now));
    // The password is hashed whatever happens, so timing tells nothing.
    let hash = found
        .as_ref()
        .filter(|_| bar.is_none())
        .map(|(_, o)| o.password_hash.clone());
    let password_ok = verify_secret(body.password.clone(), hash).await;
    let Some((record, operator)) = found else {
        return Err(refuse(
            &state,
            &ctx,
            None,
            ACTION,
            "auth.unknown_user",
            invalid_login(),
        )
        .await?);
    };
    let who = principal_of(&record);
    if let Some(reason) = bar {
        return Err(refuse(&state, &ctx, Some(&who), ACTION, reason, invalid_login()).await?);
    }
    if !password_ok {
        return Err(failed(&state, &ctx, &who, ACTION, "auth.bad_password").await?);
    }
    let second = match (&body.totp, &body.recovery_code) {
        (Some(code), None) => use_totp(&state, &operator, code)
            .await?
            .then_some("totp")
            .ok_or("auth.bad_totp"),
        (None, Some(code)) => use_recovery_code(&state, &operator, code)
            .await?
            .then_some("recovery_code")
            .ok_or("auth.bad_recovery_code"),
        _ => Err("auth.second_factor_missing"),
    };
    let factor = match second {
        Ok(factor) => factor,
        Err(reason) => return Err(failed(&state, &ctx, &who, ACTION, reason).await?),
    };
    state
        .vault
        .stores()
        .central
        .record_login_success(&who.id)
        .await
        .map_err(VaultError::from)?;
    audit(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        Outcome::Allowed,
        Some(format!("factor={factor}")),
    )
    .await?;
    person_token(&state, &who, now)
}

/// `POST /v1/auth/step-up`: a person proves their second factor again and
/// gets a new token, good for sensitive actions for the next five minutes.
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
    let operator = state
        .vault
        .stores()
        .central
        .operator(&who.id)
        .await
        .map_err(VaultError::from)?;
    let Some(operator) = operator else {
        return Err(refuse(
            &state,
            &ctx,
            Some(&who),
            ACTION,
            "auth.not_enrolled",
            invalid_login(),
        )
        .await?);
    };
    let record = state
        .vault
        .stores()
        .central
        .principal_by_id(&who.id)
        .await
        .map_err(VaultError::from)?;
    let bar = match &record {
        Some(r) => barred(r, &operator, now),
        None => Some("auth.unknown_user"),
    };
    if let Some(reason) = bar {
        return Err(refuse(&state, &ctx, Some(&who), ACTION, reason, invalid_login()).await?);
    }
    if !use_totp(&state, &operator, &body.totp).await? {
        return Err(failed(&state, &ctx, &who, ACTION, "auth.bad_totp").await?);
    }
    audit(&state, &ctx, Some(&who), ACTION, Outcome::Allowed, None).await?;
    person_token(&state, &who, now)
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
    let found = person(state, username).await?;
    let hash = found
        .as_ref()
        .filter(|(r, o)| !r.disabled && !o.enrolled && !o.enrolment_hash.is_empty())
        .map(|(_, o)| o.enrolment_hash.clone());
    let ok = verify_secret(code.clone(), hash).await;
    match found {
        Some((record, operator)) if ok => Ok((principal_of(&record), operator)),
        found => {
            let who = found.as_ref().map(|(r, _)| principal_of(r));
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
    audit(&state, &ctx, Some(&who), ACTION, Outcome::Allowed, None).await?;
    let central = &state.vault.stores().central;
    central
        .put_operator(OperatorRecord {
            password_hash,
            totp_sealed: totp.sealed.clone(),
            enrolled: false,
            totp_last_step: 0,
            ..operator
        })
        .await
        .map_err(VaultError::from)?;
    central
        .set_recovery_codes(&who.id, codes.stored)
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
    if !use_totp(&state, &operator, &body.totp).await? {
        return Err(refuse(&state, &ctx, Some(&who), ACTION, "auth.bad_totp", ApiError::new(
            StatusCode::UNAUTHORIZED,
            "auth.invalid_totp",
            "that code does not match: check the authenticator app's clock and try the next code",
        )).await?);
    }
    audit(&state, &ctx, Some(&who), ACTION, Outcome::Allowed, None).await?;
    // Re-read: the accepted step was just stored and must be kept.
    let current = state
        .vault
        .stores()
        .central
        .operator(&who.id)
        .await
        .map_err(VaultError::from)?
        .unwrap_or(operator);
    state
        .vault
        .stores()
        .central
        .put_operator(OperatorRecord {
            enrolled: true,
            enrolment_hash: String::new(),
            ..current
        })
        .await
        .map_err(VaultError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_a_minute() {
        let waits: Vec<i64> = (0..10).map(backoff_secs).collect();
        assert_eq!(waits, vec![0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_secs(1000), 60);
    }
}
