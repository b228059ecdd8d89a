//! CVVs shared by several nodes: sealed in this process, kept elsewhere for
//! minutes, taken once.
//!
//! When several vault nodes serve one gateway, the node that tokenizes a
//! card is rarely the one that relays it, so a CVV held in one node's memory
//! is of no use. A [`SharedCvvStore`] (Redis, in the server) keeps it
//! instead, under two rules that keep the store itself out of PCI scope for
//! plaintext:
//!
//! * the vault seals every CVV (AES-256-GCM-SIV, with a key derived from the
//!   root key, bound to tenant, card and CVV token) **before** it leaves the
//!   process: the store, its memory, its persistence files and its
//!   replication see ciphertext only;
//! * the name it is kept under is a keyed MAC of tenant, card and CVV token,
//!   so the store's key list yields no tokens, and a caller naming another
//!   tenant or card computes another name and finds nothing (leaving the
//!   real one in place).
//!
//! The store keeps each entry with a time to live and hands it out once: its
//! take is atomic (read and delete in one step), so two nodes racing for one
//! CVV cannot both get it.

use crate::CardError;

/// Where sealed CVVs wait, shared by every node of a vault.
#[async_trait::async_trait]
pub trait SharedCvvStore: Send + Sync {
    /// Keeps `sealed` under `name` for `ttl_ms`. Never overwrites: an
    /// existing name is an error (names are random).
    async fn put(&self, name: &str, sealed: &[u8], ttl_ms: u64) -> Result<(), CardError>;

    /// Removes and returns what is kept under `name`, atomically; `None` if
    /// nothing is (never put, taken already, or expired).
    async fn take(&self, name: &str) -> Result<Option<Vec<u8>>, CardError>;
}

/// Encodes what is sealed for the shared store: the expiry (so a clock in the
/// vault, not only the store's time to live, bounds a CVV's life) and the
/// digits.
pub fn encode(expires_at_ms: i64, cvv: &str) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(8 + cvv.len()));
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(cvv.as_bytes());
    out
}

/// Decodes [`encode`]'s bytes: the CVV if it is still valid at `now_ms`.
pub fn decode(plain: &[u8], now_ms: i64) -> Result<Option<zeroize::Zeroizing<String>>, CardError> {
    let (Some(expiry), Some(digits)) = (plain.get(..8), plain.get(8..)) else {
        return Err(CardError::Unavailable);
    };
    let mut be = [0u8; 8];
    be.copy_from_slice(expiry);
    if i64::from_be_bytes(be) <= now_ms {
        return Ok(None);
    }
    let cvv = std::str::from_utf8(digits).map_err(|_| CardError::Unavailable)?;
    crate::cvv::check_cvv(cvv)?;
    Ok(Some(zeroize::Zeroizing::new(cvv.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sealed_form_carries_its_expiry() {
        let bytes = encode(1_000, "123");
        assert_eq!(decode(&bytes, 999).unwrap().unwrap().as_str(), "123");
        assert!(decode(&bytes, 1_000).unwrap().is_none(), "expired");
        assert!(decode(&bytes[..5], 0).is_err(), "truncated");
        assert!(decode(&encode(1_000, "12x"), 0).is_err(), "not a CVV");
    }
}
