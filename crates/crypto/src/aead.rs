//! The record envelope: AES-256-GCM-SIV with a random 96-bit nonce.
//!
//! # Why GCM-SIV
//! With plain AES-GCM a repeated nonce under one key leaks the authentication
//! key and the XOR of two plaintexts, so random nonces cap a key at 2^32
//! messages (NIST SP 800-38D, 8.3). AES-GCM-SIV (RFC 8452) is
//! nonce-misuse-resistant: a repeated nonce reveals only whether two
//! (associated data, plaintext) pairs were identical. Every Strongroom record's
//! associated data contains its unique token, so even that cannot happen.
//!
//! # The bound we enforce anyway
//! We still treat 2^32 records per key version as the limit, the same bound as
//! random-nonce AES-GCM, which keeps a good margin below RFC 8452's own limits.
//! Operators rotate before a version reaches [`RECORDS_PER_KEY_LIMIT`]
//! (automatic rotation by count is planned; see docs/architecture.md).
//!
//! # Format
//! `version (1 byte, = 1) || nonce (12 bytes) || ciphertext || tag (16 bytes)`.

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, Nonce, RandomizedNonceKey};
use zeroize::Zeroize;

use crate::{CryptoError, KeyBytes, SecretBytes};

/// Records sealed under one key version before the vault rotates it.
pub const RECORDS_PER_KEY_LIMIT: u64 = 1 << 32;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// A data-encryption key ready to seal and open envelopes.
pub struct EnvelopeKey {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvelopeKey([redacted])")
    }
}

impl EnvelopeKey {
    /// Loads a 256-bit key. aws-lc-rs keeps its own copy of the expanded key
    /// and clears it when this value is dropped.
    pub fn new(key: &KeyBytes) -> Result<Self, CryptoError> {
        let key = RandomizedNonceKey::new(&AES_256_GCM_SIV, key.expose())
            .map_err(|_| CryptoError::InvalidKey)?;
        Ok(Self { key })
    }

    /// Encrypts `plaintext`, binding `associated_data` (see [`context`]).
    pub fn seal(&self, associated_data: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        buf.push(FORMAT_V1);
        buf.extend_from_slice(&[0u8; NONCE_LEN]);
        let mut body = Vec::with_capacity(plaintext.len() + TAG_LEN);
        body.extend_from_slice(plaintext);
        let sealed = self
            .key
            .seal_in_place_append_tag(Aad::from(associated_data), &mut body);
        let nonce = match sealed {
            Ok(nonce) => nonce,
            Err(_) => {
                body.zeroize();
                return Err(CryptoError::Random);
            }
        };
        buf.truncate(1);
        buf.extend_from_slice(nonce.as_ref());
        buf.extend_from_slice(&body);
        Ok(buf)
    }

    /// Decrypts an envelope. Any change to the ciphertext, or a different
    /// associated data (another token, tenant, class or key version), yields
    /// [`CryptoError::Integrity`] and never a plaintext.
    pub fn open(
        &self,
        associated_data: &[u8],
        envelope: &[u8],
    ) -> Result<SecretBytes, CryptoError> {
        if envelope.len() < HEADER_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (header, body) = envelope.split_at(HEADER_LEN);
        let (version, nonce) = header.split_at(1);
        if version != [FORMAT_V1] {
            return Err(CryptoError::Malformed);
        }
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed)?;
        let mut buf = body.to_vec();
        let plain_len = match self
            .key
            .open_in_place(nonce, Aad::from(associated_data), &mut buf)
        {
            Ok(plain) => plain.len(),
            Err(_) => {
                buf.zeroize();
                return Err(CryptoError::Integrity);
            }
        };
        buf.truncate(plain_len);
        Ok(SecretBytes::new(buf))
    }
}

/// Builds unambiguous associated data from labelled fields: each field is
/// written as a 4-byte big-endian length followed by its bytes, after a
/// domain label. Two different field lists can never encode to the same bytes.
pub fn context(label: &str, fields: &[&[u8]]) -> Vec<u8> {
    let total: usize = label.len() + 4 + fields.iter().map(|f| f.len() + 4).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    for part in std::iter::once(label.as_bytes()).chain(fields.iter().copied()) {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> EnvelopeKey {
        EnvelopeKey::new(&KeyBytes::new([b; 32])).unwrap()
    }

    #[test]
    fn round_trip() {
        let k = key(1);
        let ad = context("record", &[b"tenant", b"token"]);
        let env = k.seal(&ad, b"GIFT-CODE-1").unwrap();
        assert_eq!(k.open(&ad, &env).unwrap().expose(), b"GIFT-CODE-1");
    }

    #[test]
    fn same_plaintext_gives_different_envelopes() {
        let k = key(1);
        let ad = context("record", &[b"t"]);
        assert_ne!(k.seal(&ad, b"x").unwrap(), k.seal(&ad, b"x").unwrap());
    }

    #[test]
    fn wrong_context_wrong_key_or_tampering_fail_closed() {
        let k = key(1);
        let ad = context("record", &[b"tenant-a", b"tok1"]);
        let env = k.seal(&ad, b"secret").unwrap();
        let other_ad = context("record", &[b"tenant-a", b"tok2"]);
        assert_eq!(k.open(&other_ad, &env).unwrap_err(), CryptoError::Integrity);
        assert_eq!(key(2).open(&ad, &env).unwrap_err(), CryptoError::Integrity);
        for i in 1..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            assert!(k.open(&ad, &bad).is_err(), "flip at byte {i} was accepted");
        }
        assert_eq!(k.open(&ad, &env[..10]).unwrap_err(), CryptoError::Malformed);
    }

    #[test]
    fn context_encoding_is_unambiguous() {
        assert_ne!(context("l", &[b"ab", b"c"]), context("l", &[b"a", b"bc"]));
        assert_ne!(context("l", &[b"a"]), context("la", &[]));
    }
}
