//! The password policy for people, and their recovery codes.
//!
//! # Passwords
//! At least 12 characters (NIST SP 800-63B allows 8; a vault of money asks
//! for more), at most 128, not containing the user name, and not one of the
//! 10,000 most common passwords (compared without case). No composition
//! rules: they push people to `Password1!`, which the list refuses anyway.
//! Each refusal says exactly which rule failed. Passwords are hashed with
//! the same argon2id as client secrets (see `identity`).
//!
//! # Recovery codes
//! Ten single-use codes, shown once at enrolment, for a lost authenticator.
//! Each is `xxxx-xxxx-xxxx-xxxx` in lowercase base32 (80 bits): the first
//! group names the code and the other three are its secret, so a login
//! checks one argon2id hash rather than ten. Only the hash is stored, and a
//! used code is deleted.

use std::collections::HashSet;
use std::sync::LazyLock;

use data_encoding::BASE32_NOPAD;
use strongroom_crypto::random;
use strongroom_vault::VaultError;
use zeroize::Zeroizing;

use crate::identity::hash_secret;

/// Fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most characters a password may have (argon2 takes any length; a bound
/// keeps a request from hashing megabytes).
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
});

/// Checks a new password against the policy; the error says which rule.
pub fn check_password(username: &str, password: &str) -> Result<(), VaultError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(VaultError::Invalid(format!(
            "the password is too short: use at least {MIN_PASSWORD_CHARS} characters (a few unrelated words work well)"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(VaultError::Invalid(format!(
            "the password is too long: at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    let lower = password.to_lowercase();
    let user = username.trim().to_lowercase();
    if !user.is_empty() && lower.contains(&user) {
        return Err(VaultError::Invalid(
            "the password must not contain the user name".into(),
        ));
    }
    if COMMON.contains(lower.as_str()) {
        return Err(VaultError::Invalid(
            "that password is one of the 10,000 most common: choose another".into(),
        ));
    }
    Ok(())
}

/// A set of new recovery codes: the codes to show once, and (id, hash) pairs
/// to store.
pub struct RecoveryCodes {
    /// The codes, `xxxx-xxxx-xxxx-xxxx`.
    pub shown: Vec<Zeroizing<String>>,
    /// (code id, argon2id PHC string of the whole code).
    pub stored: Vec<(String, String)>,
}

/// Makes [`RECOVERY_CODES`] new codes.
pub async fn new_recovery_codes() -> Result<RecoveryCodes, VaultError> {
    let mut shown = Vec::with_capacity(RECOVERY_CODES);
    let mut stored = Vec::with_capacity(RECOVERY_CODES);
    let mut ids = HashSet::new();
    while shown.len() < RECOVERY_CODES {
        let raw = Zeroizing::new(random::bytes::<10>()?);
        let text = Zeroizing::new(BASE32_NOPAD.encode(raw.as_slice()).to_lowercase());
        let groups: Vec<&str> = (0..4).filter_map(|i| text.get(i * 4..i * 4 + 4)).collect();
        let code = Zeroizing::new(groups.join("-"));
        let id = groups.first().map(|g| g.to_string()).unwrap_or_default();
        if !ids.insert(id.clone()) {
            continue;
        }
        stored.push((id, hash_secret(code.clone()).await?));
        shown.push(code);
    }
    Ok(RecoveryCodes { shown, stored })
}

/// The id of a recovery code as typed (its first group), if it looks like one.
pub fn recovery_code_id(code: &str) -> Option<String> {
    let code = code.trim().to_lowercase();
    let groups: Vec<&str> = code.split('-').collect();
    let well_formed = groups.len() == 4
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_alphanumeric()));
    well_formed.then(|| groups.first().map(|g| g.to_string()))?
}

/// A recovery code as typed, normalised for hashing.
pub fn normalise_recovery_code(code: &str) -> Zeroizing<String> {
    Zeroizing::new(code.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_refuses_with_its_own_reason() {
        let too_short = check_password("alice", "short-pw").unwrap_err();
        assert!(too_short.to_string().contains("at least 12"));
        let with_name = check_password("alice", "my-name-is-ALICE-ok").unwrap_err();
        assert!(with_name.to_string().contains("user name"));
        let common = check_password("bob", "QWERTY123456").unwrap_err();
        assert!(common.to_string().contains("most common"), "{common}");
        let long = "x".repeat(MAX_PASSWORD_CHARS + 1);
        assert!(check_password("bob", &long).is_err());
        check_password("alice", "correct horse battery staple").unwrap();
    }

    #[test]
    fn the_embedded_list_is_the_ten_thousand() {
        assert_eq!(COMMON.len(), 10_000);
        assert!(COMMON.contains("123456"));
    }

    #[tokio::test]
    async fn recovery_codes_are_distinct_and_name_themselves() {
        let codes = new_recovery_codes().await.unwrap();
        assert_eq!(codes.shown.len(), RECOVERY_CODES);
        for (code, (id, hash)) in codes.shown.iter().zip(&codes.stored) {
            assert_eq!(recovery_code_id(code).as_deref(), Some(id.as_str()));
            assert!(hash.starts_with("$argon2id$"));
            assert!(!hash.contains(code.as_str()));
        }
        assert_eq!(recovery_code_id("not-a-code"), None);
    }
}
