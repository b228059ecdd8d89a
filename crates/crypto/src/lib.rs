//! Cryptography for Strongroom, with no I/O.
//!
//! Everything here is a thin, typed layer over `aws-lc-rs` (and `vsss-rs` for
//! Shamir sharing): this crate chooses algorithms, binds context into every
//! operation and makes secret material hard to misuse. It implements no
//! primitive of its own.
//!
//! * [`secret`]: types for secret bytes that redact themselves and zero on drop.
//! * [`aead`]: the record envelope (AES-256-GCM-SIV with a random nonce).
//! * [`kdf`]: HKDF-SHA-256 sub-key derivation from the root key.
//! * [`mac`]: HMAC-SHA-256 for fingerprints and the audit chain.
//! * [`digest`]: SHA-256 of public data (request hashes for idempotency).
//! * [`sign`]: Ed25519 signatures of audit checkpoints.
//! * [`shamir`]: k-of-n split of the root key into printable, checksummed shares.
//! * [`random`]: the OS CSPRNG, and random tokens and identifiers.
#![forbid(unsafe_code)]
// Tests may panic: a failed unwrap is a failed test, which is the point.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod aead;
pub mod digest;
mod error;
pub mod kdf;
pub mod mac;
pub mod random;
pub mod secret;
pub mod shamir;
pub mod sign;

pub use error::CryptoError;
pub use secret::{KeyBytes, SecretBytes};

/// Length in bytes of every symmetric key Strongroom uses (256 bits).
pub const KEY_LEN: usize = 32;
