//! Vault errors, each with a stable machine code.

use strongroom_audit::AuditError;
use strongroom_crypto::CryptoError;
use strongroom_store::StoreError;
use thiserror::Error;

/// Everything a vault operation can refuse or fail with. Messages never
/// contain a secret, and never say whether a token exists in another tenant.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The vault is sealed; unseal it first.
    #[error("the vault is sealed; unseal it with the key shares first")]
    Sealed,
    /// The data directory was never initialised.
    #[error("the vault is not initialised; run `strongroom init` first")]
    NotInitialized,
    /// The vault is already initialised.
    #[error("the vault is already initialised")]
    AlreadyInitialized,
    /// A share was malformed or belongs elsewhere.
    #[error("invalid key share: {0}")]
    InvalidShare(String),
    /// The shares given did not rebuild the root key; progress was reset.
    #[error(
        "the key shares do not reconstruct the root key; unseal progress was reset, start again"
    )]
    UnsealFailed,
    /// The caller's role does not grant this action.
    #[error("your role does not allow {0}")]
    Forbidden(&'static str),
    /// A person asked for a sensitive action without a recent second factor.
    #[error(
        "this needs a second factor proven in the last 5 minutes: POST /v1/auth/step-up with a TOTP code"
    )]
    MfaRequired,
    /// No such token for this caller (unknown, deleted, or another tenant's).
    #[error("no secret with that token")]
    NotFound,
    /// The reveal window is closed.
    #[error("the secret's reveal window is closed; a security officer must reactivate it")]
    Dormant,
    /// The value is already stored in this tenant and class.
    #[error("this value is already stored in the tenant and class as {existing}")]
    Duplicate {
        /// Token of the existing record.
        existing: String,
    },
    /// The request was invalid.
    #[error("{0}")]
    Invalid(String),
    /// The caller is bound to several tenants and named none.
    #[error("name a tenant: your credential is bound to more than one")]
    TenantRequired,
    /// A sealed record failed authentication.
    #[error("the stored record failed its integrity check and was not revealed")]
    Integrity,
    /// The audit record could not be written, so the operation did not happen.
    #[error("the audit log could not record this request, so it was refused")]
    AuditUnavailable,
    /// A store failed.
    #[error("storage unavailable")]
    Store(#[source] StoreError),
    /// A conflict in stored state (an existing name, …).
    #[error("{0}")]
    Conflict(&'static str),
    /// Cryptographic failure that is not an integrity failure (RNG, key load).
    #[error("cryptographic failure")]
    Crypto(#[source] CryptoError),
    /// The shared CVV store (Redis) could not hold or hand out a CVV.
    #[error("the CVV store is unavailable; try again")]
    CvvStoreUnavailable,
    /// A stored row that decides access does not carry the vault's seal: it
    /// was written or changed behind the vault's back. Nothing was done; the
    /// attempt is audited and raised as a critical alert.
    #[error(
        "a stored record ({0}) failed its integrity check: it was changed outside Strongroom, \
         so the request was refused and the security officers alerted"
    )]
    Tampered(String),
    /// The audit log ends before (or was renumbered below) the head the
    /// vault sealed: records were cut. Nothing more is appended.
    #[error("{0}")]
    AuditCut(String),
}

impl VaultError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            VaultError::Sealed => "vault.sealed",
            VaultError::NotInitialized => "vault.not_initialized",
            VaultError::AlreadyInitialized => "vault.already_initialized",
            VaultError::InvalidShare(_) => "unseal.invalid_share",
            VaultError::UnsealFailed => "unseal.failed",
            VaultError::Forbidden(_) => "auth.forbidden",
            VaultError::MfaRequired => "auth.mfa_required",
            VaultError::NotFound => "secret.not_found",
            VaultError::Dormant => "vault.dormant",
            VaultError::Duplicate { .. } => "vault.duplicate",
            VaultError::Invalid(_) => "request.invalid",
            VaultError::TenantRequired => "request.tenant_required",
            VaultError::Integrity => "vault.integrity",
            VaultError::AuditUnavailable => "audit.unavailable",
            VaultError::Store(_) => "store.unavailable",
            VaultError::Conflict(_) => "request.conflict",
            VaultError::Crypto(_) => "vault.crypto",
            VaultError::CvvStoreUnavailable => "card.cvv_store_unavailable",
            VaultError::Tampered(_) => "store.tampered",
            VaultError::AuditCut(_) => "audit.cut",
        }
    }
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => VaultError::Conflict(what),
            other => VaultError::Store(other),
        }
    }
}

impl From<AuditError> for VaultError {
    fn from(e: AuditError) -> Self {
        tracing::error!(error = %e, "audit append failed; refusing the operation");
        match e {
            AuditError::Cut(what) => VaultError::AuditCut(what),
            _ => VaultError::AuditUnavailable,
        }
    }
}

impl From<CryptoError> for VaultError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Integrity => VaultError::Integrity,
            other => VaultError::Crypto(other),
        }
    }
}
