use thiserror::Error;

/// Errors from cryptographic operations.
///
/// None of them carries secret material; messages are safe to log.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A ciphertext failed authentication: it was altered, moved to another
    /// record, or opened with the wrong key or context.
    #[error("integrity check failed: the record was altered or does not belong here")]
    Integrity,
    /// A ciphertext is shorter than the envelope header and tag.
    #[error("ciphertext is malformed")]
    Malformed,
    /// The operating system's random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// A key had the wrong length or could not be loaded.
    #[error("invalid key material")]
    InvalidKey,
    /// A Shamir share could not be parsed or verified.
    #[error("invalid share: {0}")]
    InvalidShare(&'static str),
    /// Shares could not be split or combined.
    #[error("secret sharing failed: {0}")]
    Sharing(&'static str),
}
