//! Ed25519 signatures: checkpoints of the audit chain that anyone holding
//! the public key can check, without the root key.
//!
//! The key pair is derived from the root key (its seed is an HKDF output),
//! so every node of a vault has the same one and nothing new must be stored
//! or backed up; its public key is published with each checkpoint and
//! printed by `strongroom audit checkpoint`.

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair};

use crate::{CryptoError, KeyBytes};

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// The key pair whose private seed is `seed` (a derived sub-key).
    pub fn from_seed(seed: &KeyBytes) -> Result<Self, CryptoError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.expose())
            .map_err(|_| CryptoError::InvalidKey)?;
        Ok(Self { pair })
    }

    /// The public key, for verifiers.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

/// Checks an Ed25519 signature of `message` under `public_key`.
pub fn verify(public_key: &[u8], message: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(message, sig)
        .map_err(|_| CryptoError::Integrity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_under_its_key_only_and_for_its_message_only() {
        let key = SigningKey::from_seed(&KeyBytes::new([7u8; 32])).unwrap();
        let other = SigningKey::from_seed(&KeyBytes::new([8u8; 32])).unwrap();
        let sig = key.sign(b"checkpoint 41");
        assert!(verify(&key.public_key(), b"checkpoint 41", &sig).is_ok());
        assert!(verify(&key.public_key(), b"checkpoint 42", &sig).is_err());
        assert!(verify(&other.public_key(), b"checkpoint 41", &sig).is_err());
        // The same seed gives the same key on every node.
        let again = SigningKey::from_seed(&KeyBytes::new([7u8; 32])).unwrap();
        assert_eq!(key.public_key(), again.public_key());
    }
}
