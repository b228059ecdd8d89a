//! Randomness from the operating system's CSPRNG (through aws-lc-rs), and the
//! random identifiers built from it.

use data_encoding::{BASE32_NOPAD, HEXLOWER};

use crate::CryptoError;

/// Fills `out` with bytes from the OS CSPRNG.
pub fn fill(out: &mut [u8]) -> Result<(), CryptoError> {
    aws_lc_rs::rand::fill(out).map_err(|_| CryptoError::Random)
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}

/// An opaque token: `prefix` followed by 128 random bits in lower-case base32
/// (26 characters). 128 bits make guessing a live token hopeless at any rate
/// an API can serve, and base32 avoids characters that need escaping.
pub fn token(prefix: &str) -> Result<String, CryptoError> {
    let raw = bytes::<16>()?;
    let mut out = String::with_capacity(prefix.len() + 26);
    out.push_str(prefix);
    out.push_str(&BASE32_NOPAD.encode(&raw).to_ascii_lowercase());
    Ok(out)
}

/// A random identifier of `N` bytes in lower-case hex (request ids, vault ids).
pub fn hex_id<const N: usize>() -> Result<String, CryptoError> {
    Ok(HEXLOWER.encode(&bytes::<N>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_128_bit() {
        let a = token("sr_vc_").unwrap();
        let b = token("sr_vc_").unwrap();
        assert!(a.starts_with("sr_vc_"));
        assert_eq!(a.len(), "sr_vc_".len() + 26);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }
}
