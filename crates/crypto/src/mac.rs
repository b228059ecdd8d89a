//! HMAC-SHA-256: keyed fingerprints for de-duplication and the audit chain.
//!
//! A fingerprint is never a plain hash: voucher codes are short enough that an
//! unkeyed hash is brute-forced in seconds. Under a 256-bit key held only in
//! the unsealed vault, a stolen fingerprint column reveals nothing.

use aws_lc_rs::hmac;

use crate::{CryptoError, KeyBytes};

/// Length of a MAC tag in bytes.
pub const TAG_LEN: usize = 32;

/// An HMAC-SHA-256 key.
pub struct MacKey {
    key: hmac::Key,
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

impl MacKey {
    /// Loads a 256-bit MAC key.
    pub fn new(key: &KeyBytes) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key.expose()),
        }
    }

    /// The tag over the concatenation of `parts`, each prefixed by its length
    /// so that part boundaries are unambiguous.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in parts {
            ctx.update(&(part.len() as u32).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Checks a tag in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> Result<(), CryptoError> {
        let expected = self.tag(parts);
        if subtle::ConstantTimeEq::ct_eq(expected.as_slice(), tag).into() {
            Ok(())
        } else {
            Err(CryptoError::Integrity)
        }
    }
}

/// Plain HMAC-SHA-256 of `parts` concatenated, under a key of any length:
/// for signatures a receiver outside Strongroom checks with its own HMAC
/// library (alert webhooks), where the length-prefixed [`MacKey::tag`]
/// would be a needless peculiarity.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; TAG_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// Checks a [`hmac_sha256`] tag in constant time.
pub fn verify_hmac_sha256(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> Result<(), CryptoError> {
    let expected = hmac_sha256(key, parts);
    if subtle::ConstantTimeEq::ct_eq(expected.as_slice(), tag).into() {
        Ok(())
    } else {
        Err(CryptoError::Integrity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_depend_on_key_and_boundaries() {
        let k1 = MacKey::new(&KeyBytes::new([1; 32]));
        let k2 = MacKey::new(&KeyBytes::new([2; 32]));
        let t = k1.tag(&[b"ab", b"c"]);
        assert_ne!(t, k2.tag(&[b"ab", b"c"]));
        assert_ne!(t, k1.tag(&[b"a", b"bc"]));
        assert!(k1.verify(&[b"ab", b"c"], &t).is_ok());
        assert!(k1.verify(&[b"ab", b"d"], &t).is_err());
        assert!(k1.verify(&[b"ab", b"c"], &t[..31]).is_err());
    }
}
