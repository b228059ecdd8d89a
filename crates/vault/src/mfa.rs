//! People's second factor: TOTP (RFC 6238), with seeds sealed at rest.
//!
//! A TOTP seed is a secret like the codes the vault keeps: it is generated
//! here, shown once (in the `otpauth://` URI of enrolment) and stored only
//! sealed under a key derived from the root key (`operator-secret-v1`), with
//! the principal's id as associated data, so a sealed seed copied onto
//! another principal does not open. Codes are checked here, so after
//! enrolment the seed never leaves this crate in clear.
//!
//! Six digits, 30-second steps and HMAC-SHA-1: what every authenticator app
//! supports. One step of clock drift is accepted either way. The step that
//! matched is returned, so the caller can refuse its second use (the
//! central store's `accept_totp_step`); RFC 6238 §5.2 asks for exactly this.

use strongroom_crypto::aead::context;
use strongroom_crypto::random;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use crate::{Vault, VaultError};

/// Issuer shown by authenticator apps.
const ISSUER: &str = "Strongroom";
/// Seed length: 160 bits, RFC 4226's recommendation for HMAC-SHA-1.
const SEED_LEN: usize = 20;
/// Seconds per TOTP step.
pub const STEP_SECS: u64 = 30;

/// A new TOTP seed: sealed for storage, and the enrolment URI to show once.
pub struct NewTotp {
    /// The seed sealed under the operator key, bound to the principal.
    pub sealed: Vec<u8>,
    /// `otpauth://totp/…` for an authenticator app (holds the seed).
    pub uri: Zeroizing<String>,
    /// The seed in base32, for typing into an app by hand.
    pub secret_base32: Zeroizing<String>,
}

impl std::fmt::Debug for NewTotp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewTotp([redacted])")
    }
}

fn seed_context(principal_id: &str) -> Vec<u8> {
    context("totp-seed-v1", &[principal_id.as_bytes()])
}

fn totp(seed: Vec<u8>, account: &str) -> Result<Totp, VaultError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECS)
        .with_secret(seed)
        .with_issuer(Some(ISSUER))
        .with_account_name(account)
        .build()
        .map_err(|e| VaultError::Invalid(format!("cannot build a TOTP: {e}")))
}

impl Vault {
    /// Generates a TOTP seed for `principal_id`, shown to the person as
    /// `account` in their app.
    pub fn new_totp(&self, principal_id: &str, account: &str) -> Result<NewTotp, VaultError> {
        let u = self.unsealed()?;
        let seed = Zeroizing::new(random::bytes::<SEED_LEN>()?);
        let sealed = u
            .operator_key
            .seal(&seed_context(principal_id), seed.as_slice())?;
        let totp = totp(seed.to_vec(), account)?;
        let uri = totp
            .to_url()
            .map_err(|e| VaultError::Invalid(format!("cannot write the otpauth URI: {e}")))?;
        Ok(NewTotp {
            sealed,
            uri: Zeroizing::new(uri),
            secret_base32: Zeroizing::new(totp.secret().to_base32()),
        })
    }

    /// Checks a code against a sealed seed at the vault's current time.
    /// Returns the matching time step, or `None` for a wrong code. A seed
    /// that does not open (tampered, or another principal's) is an
    /// integrity error, never a match.
    pub fn check_totp(
        &self,
        principal_id: &str,
        sealed: &[u8],
        code: &str,
    ) -> Result<Option<i64>, VaultError> {
        let u = self.unsealed()?;
        let seed = u.operator_key.open(&seed_context(principal_id), sealed)?;
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        let now = u64::try_from(self.clock().now_ms() / 1000).unwrap_or(0);
        let totp = totp(seed.expose().to_vec(), "check")?;
        Ok(totp
            .check(code, now)
            .and_then(|step| i64::try_from(step).ok()))
    }
}
