//! Sub-key derivation with HKDF-SHA-256 (RFC 5869).
//!
//! Keys with a fixed purpose (the key that wraps the keyring, the token
//! signing key, the root-key check value) are derived from the root key with
//! a distinct `info` label each, so no two purposes ever share a key.

use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};

use crate::{CryptoError, KEY_LEN, KeyBytes};

/// Domain-separation salt for every derivation from the root key.
const SALT: &[u8] = b"strongroom/v1/root-key-derivation";

/// Derives a 256-bit key for `purpose` from `root`.
pub fn derive(root: &KeyBytes, purpose: &str) -> Result<KeyBytes, CryptoError> {
    let prk = Salt::new(HKDF_SHA256, SALT).extract(root.expose());
    let info = [purpose.as_bytes()];
    let okm = prk
        .expand(&info, HKDF_SHA256)
        .map_err(|_| CryptoError::InvalidKey)?;
    let mut out = [0u8; KEY_LEN];
    okm.fill(&mut out).map_err(|_| CryptoError::InvalidKey)?;
    let key = KeyBytes::new(out);
    zeroize::Zeroize::zeroize(&mut out);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_are_separated_and_deterministic() {
        let root = KeyBytes::new([9u8; 32]);
        let a = derive(&root, "keyring-wrap").unwrap();
        let b = derive(&root, "token-signing").unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose(), derive(&root, "keyring-wrap").unwrap().expose());
    }
}
