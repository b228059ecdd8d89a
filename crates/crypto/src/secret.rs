//! Secret value types.
//!
//! Secret bytes never implement `Display` or `Serialize`, their `Debug` prints
//! `[redacted]`, and their memory is zeroed when dropped. Reading one is an
//! explicit call to [`SecretBytes::expose`], so every place that touches
//! plaintext is easy to find.

use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::KEY_LEN;

/// Variable-length secret bytes: a voucher code, a PAN, a CVV.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps bytes that are secret. The caller's buffer is moved, not copied.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Takes a copy of a secret string's bytes.
    pub fn from_str_copy(value: &str) -> Self {
        Self(value.as_bytes().to_vec())
    }

    /// The plaintext. Each caller is a place where secret bytes are used.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes; lengths are not secret in Strongroom's threat model.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality, for comparing secrets without a timing oracle.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A 256-bit symmetric key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyBytes([u8; KEY_LEN]);

impl KeyBytes {
    /// Wraps 32 key bytes.
    pub fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Builds a key from a slice, which must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, crate::CryptoError> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| crate::CryptoError::InvalidKey)?;
        Ok(Self(array))
    }

    /// A fresh random key from the OS CSPRNG.
    pub fn generate() -> Result<Self, crate::CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        crate::random::fill(bytes.as_mut())?;
        Ok(Self(*bytes))
    }

    /// The key bytes, for handing to a primitive.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = SecretBytes::from_str_copy("GIFT-1234-5678");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let key = KeyBytes::new([7u8; KEY_LEN]);
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn constant_time_equality_compares_content() {
        let a = SecretBytes::from_str_copy("abc");
        assert!(a.ct_eq(&SecretBytes::from_str_copy("abc")));
        assert!(!a.ct_eq(&SecretBytes::from_str_copy("abd")));
        assert!(!a.ct_eq(&SecretBytes::from_str_copy("abcd")));
    }
}
