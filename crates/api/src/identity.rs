//! Principals and their credentials.
//!
//! # Client secrets
//! A client secret is 256 random bits shown once at creation. It is stored
//! only as an argon2id hash (7 MiB, 5 passes: one of OWASP's equivalent
//! baseline configurations). For a
//! random 256-bit secret a fast hash would already resist brute force; we
//! use argon2id anyway so that a stolen central database gives an attacker
//! nothing to grind even if a secret was ever set by hand, and one verifier
//! serves every credential kind. Hashing is CPU- and memory-heavy, so at most
//! one verification per core runs at a time; a token lives for minutes, so
//! this is paid once per client per token, not per request.

use std::sync::{Arc, LazyLock};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use strongroom_crypto::random;
use strongroom_store::{OperatorRecord, PrincipalRecord};
use strongroom_vault::policy::{ALL_TENANTS, validate_tenant};
use strongroom_vault::{Principal, VaultError};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::roles::RoleCatalog;

/// Prefix of client ids.
pub const CLIENT_ID_PREFIX: &str = "srci_";
/// Prefix of client secrets, so they are recognisable in a leak scan.
pub const CLIENT_SECRET_PREFIX: &str = "srcs_";
/// Prefix of a person's one-time enrolment code.
pub const ENROLMENT_CODE_PREFIX: &str = "sren_";
/// Kind of a service principal (client credentials).
pub const KIND_SERVICE: &str = "service";
/// Kind of a person (password and TOTP).
pub const KIND_USER: &str = "user";

static HASHING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(Semaphore::new(cores))
});

fn hasher() -> Result<Argon2<'static>, VaultError> {
    // OWASP's argon2id configurations trade memory for passes at equal
    // strength; 7 MiB x 5 passes keeps a burst of logins from holding tens of
    // megabytes per core (glibc keeps large freed blocks in its heap).
    let params = Params::new(7 * 1024, 5, 1, None)
        .map_err(|_| VaultError::Invalid("argon2 parameters".into()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a secret with argon2id (off the async threads).
pub async fn hash_secret(secret: Zeroizing<String>) -> Result<String, VaultError> {
    let _permit = HASHING.acquire().await.map_err(|_| VaultError::Sealed)?;
    tokio::task::spawn_blocking(move || {
        hasher()?
            .hash_password(secret.as_bytes())
            .map(|h| h.to_string())
            .map_err(|_| VaultError::Invalid("could not hash secret".into()))
    })
    .await
    .map_err(|_| VaultError::Invalid("hashing task failed".into()))?
}

/// A hash of a random secret nobody knows, verified against when a client id
/// is unknown so the response time does not reveal which ids exist.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let secret = random::hex_id::<32>().ok()?;
    hasher()
        .ok()?
        .hash_password(secret.as_bytes())
        .ok()
        .map(|h| h.to_string())
});

/// Checks a secret against a stored hash, in constant time with respect to
/// the secret. `None` runs a dummy check of equal cost and fails.
pub async fn verify_secret(secret: Zeroizing<String>, hash: Option<String>) -> bool {
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    let real = hash.is_some();
    let Some(hash) = hash.or_else(|| DUMMY_HASH.clone()) else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok();
        ok && real
    })
    .await
    .unwrap_or(false)
}

/// A new one-time secret (client secret, enrolment code, bootstrap token):
/// `prefix`, then 128 random bits twice over (a random token and a random
/// hex id), so a leak scanner recognises it by its prefix.
pub fn new_secret(prefix: &str) -> Result<Zeroizing<String>, VaultError> {
    Ok(Zeroizing::new(
        random::token(prefix)? + &random::hex_id::<16>()?,
    ))
}

/// Every principal id begins so (the bootstrap people's fixed ids too);
/// an access token naming any other subject is refused.
pub const PRINCIPAL_ID_PREFIX: &str = "p_";

/// A new principal's one-time credentials.
pub struct NewCredentials {
    /// The stored record.
    pub record: PrincipalRecord,
    /// Shown once: a service's client secret, or a person's enrolment code
    /// (with which they set their password and TOTP).
    pub client_secret: Zeroizing<String>,
    /// A person's login record, waiting for enrolment.
    pub operator: Option<OperatorRecord>,
}

/// Validates a request to create a principal and makes its credentials.
/// `created_by` is the creating principal's id (empty for bootstrap).
/// Role names must be built-in or known to `catalog`. A principal whose
/// roles grant (or, once pending changes are approved, would grant) a
/// permission that [`strongroom_vault::PermissionSet::needs_approval`] is created pending
/// when `created_by` is not empty.
pub async fn new_principal(
    catalog: &RoleCatalog,
    name: &str,
    kind: &str,
    roles: &[String],
    tenants: &[String],
    now_ms: i64,
    created_by: &str,
) -> Result<NewCredentials, VaultError> {
    if kind != KIND_SERVICE && kind != KIND_USER {
        return Err(VaultError::Invalid(
            "kind must be 'service' (client credentials) or 'user' (a person)".into(),
        ));
    }
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(VaultError::Invalid(
            "name must be 1-64 characters of letters, digits, '-', '_', '.', '@'".into(),
        ));
    }
    if roles.is_empty() {
        return Err(VaultError::Invalid("give at least one role".into()));
    }
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    if let Some(unknown) = roles.iter().find(|r| !catalog.exists(r)) {
        return Err(VaultError::Invalid(format!(
            "unknown role '{unknown}'; built-in roles are: ingest, fulfilment, security_officer, admin, auditor, support, stock_manager, and GET /v1/roles lists the custom ones"
        )));
    }
    let granted = catalog.permissions_if_approved(&roles);
    if granted.defeats_dual_control() {
        // One principal creating principals and approving them would be a
        // single person on both sides of dual control.
        return Err(VaultError::Invalid(
            "a principal that manages principals or roles cannot also reveal secrets (not even masked), read their metadata, reactivate, delete, manage keys or approve: administration and access to secrets are kept apart".into(),
        ));
    }
    if tenants.is_empty() {
        return Err(VaultError::Invalid(
            "give at least one tenant (or '*' for all)".into(),
        ));
    }
    for t in tenants {
        if t != ALL_TENANTS {
            validate_tenant(t)?;
        }
    }
    let id = random::token(PRINCIPAL_ID_PREFIX)?;
    let (client_secret, secret_hash, operator) = if kind == KIND_USER {
        // A person has no client secret; the code lets them enrol once.
        let code = new_secret(ENROLMENT_CODE_PREFIX)?;
        let operator = OperatorRecord {
            principal_id: id.clone(),
            password_hash: String::new(),
            enrolment_hash: hash_secret(code.clone()).await?,
            totp_sealed: Vec::new(),
            enrolled: false,
            totp_last_step: 0,
            failed_logins: 0,
            last_failure_at: 0,
            factor_failures: 0,
            locked: false,
            seal: Vec::new(),
        };
        (code, String::new(), Some(operator))
    } else {
        let secret = new_secret(CLIENT_SECRET_PREFIX)?;
        let hash = hash_secret(secret.clone()).await?;
        (secret, hash, None)
    };
    Ok(NewCredentials {
        record: PrincipalRecord {
            id,
            client_id: random::token(CLIENT_ID_PREFIX)?,
            name: name.to_owned(),
            roles,
            tenants: tenants.to_vec(),
            secret_hash,
            created_at: now_ms,
            disabled: false,
            created_by: created_by.to_owned(),
            // A service credential never proves a second factor, so one
            // that manages principals needs a second person too: otherwise
            // an administrator with a fresh step-up could mint a lasting
            // credential that never asks for one.
            pending_approval: !created_by.is_empty()
                && (granted.needs_approval() || (kind == KIND_SERVICE && granted.manages())),
            kind: kind.to_owned(),
            previous_secret_hash: String::new(),
            previous_valid_until: 0,
            seal: Vec::new(),
        },
        client_secret,
        operator,
    })
}

impl NewCredentials {
    /// The principal's row (and a person's login record) with their seals,
    /// ready to be written.
    pub fn sealed(mut self, vault: &strongroom_vault::Vault) -> Result<Self, VaultError> {
        self.record = vault.sealed(self.record)?;
        self.operator = self.operator.map(|o| vault.sealed(o)).transpose()?;
        Ok(self)
    }
}

/// The policy view of a stored principal, its roles resolved by `catalog`
/// (unknown role names grant nothing).
pub fn principal_of(record: &PrincipalRecord, catalog: &RoleCatalog) -> Principal {
    Principal {
        id: record.id.clone(),
        name: record.name.clone(),
        permissions: catalog.permissions(&record.roles),
        roles: record.roles.clone(),
        tenants: record.tenants.clone(),
        human: record.kind == KIND_USER,
        // Proven only by a login or step-up, never by the stored record.
        mfa_recent: false,
    }
}
