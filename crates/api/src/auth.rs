//! Access tokens: short-lived HS256 JWTs, and the extractor that checks them.
//!
//! # Why HS256
//! Only Strongroom nodes issue and verify these tokens, and every node of a
//! vault already shares the root key, from which the signing key is derived.
//! A symmetric MAC costs a microsecond to verify, where a signature check on
//! every request would cost tens. Verification pins the algorithm, so
//! `alg: none` and algorithm-confusion tokens are refused, and checks issuer,
//! audience and expiry against the vault's clock. Sealing the vault makes
//! every outstanding token unverifiable.

use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use strongroom_crypto::KeyBytes;
use strongroom_vault::policy::MFA_FRESH_SECS;
use strongroom_vault::{Principal, VaultError};

use crate::ApiState;
use crate::error::ApiError;

const ISSUER: &str = "strongroom";
const AUDIENCE: &str = "strongroom-api";
/// Tolerated clock difference between nodes for `iat`, in seconds.
const SKEW_SECS: i64 = 60;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Principal id.
    pub sub: String,
    /// Principal name.
    pub name: String,
    /// Role names.
    pub roles: Vec<String>,
    /// Tenants.
    pub tenants: Vec<String>,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Issued at, Unix milliseconds (compared with the unseal time).
    pub iat_ms: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// `service` or `user` (a person).
    #[serde(default = "service_kind")]
    pub kind: String,
    /// When a person last proved their second factor, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_at: Option<i64>,
    /// Not before, Unix seconds: never issued by Strongroom, but honoured
    /// if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

fn service_kind() -> String {
    crate::identity::KIND_SERVICE.to_owned()
}

/// The signing and verifying keys of the current unseal, built once rather
/// than copying the key on every request.
pub struct TokenKeys {
    source: Arc<KeyBytes>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// Cache of [`TokenKeys`], dropped as soon as the vault is found sealed.
#[derive(Default)]
pub struct TokenKeyCache(RwLock<Option<Arc<TokenKeys>>>);

impl TokenKeyCache {
    /// Forgets the keys (on seal).
    pub fn clear(&self) {
        if let Ok(mut slot) = self.0.write() {
            *slot = None;
        }
    }

    fn get(&self, vault: &strongroom_vault::Vault) -> Result<Arc<TokenKeys>, VaultError> {
        let source = match vault.token_signing_key() {
            Ok(k) => k,
            Err(e) => {
                if let Ok(mut slot) = self.0.write() {
                    *slot = None;
                }
                return Err(e);
            }
        };
        if let Ok(slot) = self.0.read()
            && let Some(keys) = slot.as_ref()
            && Arc::ptr_eq(&keys.source, &source)
        {
            return Ok(keys.clone());
        }
        let keys = Arc::new(TokenKeys {
            encoding: EncodingKey::from_secret(source.expose()),
            decoding: DecodingKey::from_secret(source.expose()),
            validation: validation(),
            source,
        });
        // Cache only if the vault was not sealed (or re-keyed) meanwhile.
        let still_current = vault
            .token_signing_key()
            .is_ok_and(|k| Arc::ptr_eq(&k, &keys.source));
        if still_current && let Ok(mut slot) = self.0.write() {
            *slot = Some(keys.clone());
        }
        Ok(keys)
    }
}

/// What every access token must satisfy: HS256 only (so `alg: none` and
/// algorithm confusion fail), our issuer and audience, the standard claims.
fn validation() -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    // Expiry is checked in `verify` against the vault's clock, not the system's.
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
    validation
}

/// Issues an access token for `principal`, valid `ttl_secs` from `now_ms`;
/// for a person, `mfa_at` is when they last proved their second factor.
pub fn issue(
    state: &ApiState,
    principal: &Principal,
    now_ms: i64,
    ttl_secs: u64,
    mfa_at: Option<i64>,
) -> Result<String, ApiError> {
    let keys = state.token_keys.get(&state.vault)?;
    let iat = now_ms / 1000;
    let claims = Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: principal.id.clone(),
        name: principal.name.clone(),
        roles: principal.roles.clone(),
        tenants: principal.tenants.clone(),
        iat,
        iat_ms: now_ms,
        exp: iat.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX)),
        jti: strongroom_crypto::random::hex_id::<12>().map_err(VaultError::from)?,
        kind: if principal.human {
            crate::identity::KIND_USER
        } else {
            crate::identity::KIND_SERVICE
        }
        .to_owned(),
        mfa_at: mfa_at.filter(|_| principal.human),
        nbf: None,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
        .map_err(|_| ApiError::from(VaultError::Invalid("could not sign token".into())))
}

/// Why a bearer token was refused. Kept for the audit log; the client sees
/// one uniform message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Bad signature, algorithm, issuer, audience or encoding.
    Invalid,
    /// Past its expiry.
    Expired,
    /// The principal has been disabled since the token was issued.
    Revoked,
}

impl TokenProblem {
    fn reason(self) -> &'static str {
        match self {
            TokenProblem::Missing => "auth.missing_token",
            TokenProblem::Invalid => "auth.invalid_token",
            TokenProblem::Expired => "auth.expired_token",
            TokenProblem::Revoked => "auth.revoked_principal",
        }
    }
}

/// Verifies a bearer token and returns its principal.
pub fn verify(
    state: &ApiState,
    token: &str,
) -> Result<Principal, Result<TokenProblem, VaultError>> {
    let keys = state.token_keys.get(&state.vault).map_err(Err)?;
    let data = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &keys.validation)
        .map_err(|_| Ok(TokenProblem::Invalid))?;
    let claims = data.claims;
    let now = state.vault.clock().now_ms() / 1000;
    if now >= claims.exp {
        return Err(Ok(TokenProblem::Expired));
    }
    if claims.iat > now + SKEW_SECS || claims.iat_ms.div_euclid(1000) != claims.iat {
        return Err(Ok(TokenProblem::Invalid));
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + SKEW_SECS) {
        return Err(Ok(TokenProblem::Invalid));
    }
    // A validly signed token claiming a longer life than this server gives
    // (minted with a leaked key, or under another configuration) is refused:
    // the lifetime is the configuration's, not the token's.
    let human = claims.kind == crate::identity::KIND_USER;
    let most = if human {
        state.config.person_token_ttl_secs
    } else {
        state.config.token_ttl_secs
    };
    if claims.exp.saturating_sub(claims.iat) > i64::try_from(most).unwrap_or(i64::MAX) {
        return Err(Ok(TokenProblem::Invalid));
    }
    // Only principals hold tokens: the watch, the scheduler and other
    // `system:` actors act inside the server and never through one.
    if !claims.sub.starts_with(crate::identity::PRINCIPAL_ID_PREFIX) {
        return Err(Ok(TokenProblem::Invalid));
    }
    // Issued before the last unseal: sealing retires every token.
    if claims.iat_ms < state.vault.tokens_valid_from_ms().map_err(Err)? {
        return Err(Ok(TokenProblem::Expired));
    }
    if state.revocations.is_revoked(&claims.sub) {
        return Err(Ok(TokenProblem::Revoked));
    }

    let now_ms = state.vault.clock().now_ms();
    let mfa_recent = human
        && claims.mfa_at.is_some_and(|at| {
            at <= now_ms + SKEW_SECS * 1000 && now_ms - at <= MFA_FRESH_SECS * 1000
        });
    Ok(Principal {
        human,
        mfa_recent,
        id: claims.sub,
        name: claims.name,
        permissions: state.roles.permissions(&claims.roles),
        roles: claims.roles,
        tenants: claims.tenants,
    })
}

/// Reason code and error code of a frozen principal's requests.
pub const FROZEN: &str = "auth.principal_frozen";

fn frozen() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        FROZEN,
        "this principal is frozen after a security alert; a security officer must lift the freeze",
    )
}

/// Refuses (and audits) a token for a frozen principal: credentials alone
/// must not get round a freeze.
pub async fn refuse_if_frozen(
    state: &ApiState,
    ctx: &strongroom_vault::RequestContext,
    principal: &Principal,
    action: &str,
) -> Result<(), ApiError> {
    if !state.freezes.is_frozen(&principal.id) {
        return Ok(());
    }
    let event = state.vault.event(
        ctx,
        Some(principal),
        action,
        None,
        None,
        strongroom_audit::Outcome::Denied,
        Some(FROZEN.into()),
    );
    state.vault.record(event).await?;
    Err(frozen())
}

/// The token of an `Authorization: Bearer` header, if any.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// An authenticated caller. Refused tokens are audited and answered with a
/// uniform 401.
pub struct Authenticated(pub Principal);

impl FromRequestParts<ApiState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = bearer_token(&parts.headers);
        let outcome = match bearer {
            None => Err(Ok(TokenProblem::Missing)),
            Some(token) => verify(state, token),
        };
        match outcome {
            Ok(principal) => {
                let ctx = parts
                    .extensions
                    .get::<strongroom_vault::RequestContext>()
                    .cloned()
                    .unwrap_or_default();
                let rate = state.rate_limits.principal_rate(&principal.roles);
                if let Err(limited) = state
                    .rate_limits
                    .check(format!("principal:{}", principal.id), rate)
                    .await
                {
                    if limited.first_this_minute {
                        let event = state.vault.event(
                            &ctx,
                            Some(&principal),
                            "request.rate_limited",
                            None,
                            Some(parts.uri.path()),
                            strongroom_audit::Outcome::Denied,
                            Some("principal limit".into()),
                        );
                        state.vault.record(event).await?;
                    }
                    return Err(ApiError::rate_limited(limited.retry_after_secs));
                }
                // After the rate limit, so a frozen principal cannot flood
                // the audit log with refusals; after the token, so the
                // refusal names the principal.
                refuse_if_frozen(state, &ctx, &principal, "auth.authenticate").await?;
                Ok(Authenticated(principal))
            }
            Err(Err(vault_error)) => Err(vault_error.into()),
            Err(Ok(problem)) => {
                let ctx = parts
                    .extensions
                    .get::<strongroom_vault::RequestContext>()
                    .cloned()
                    .unwrap_or_default();
                let event = state.vault.event(
                    &ctx,
                    None,
                    "auth.authenticate",
                    None,
                    Some(parts.uri.path()),
                    strongroom_audit::Outcome::Denied,
                    Some(problem.reason().into()),
                );
                state.vault.record(event).await?;
                Err(ApiError::unauthenticated(match problem {
                    TokenProblem::Missing => {
                        "send an access token as 'Authorization: Bearer <token>' (get one from POST /v1/auth/token)"
                    }
                    _ => {
                        "the access token is invalid or expired; get a new one from POST /v1/auth/token"
                    }
                }))
            }
        }
    }
}
