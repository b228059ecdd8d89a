//! What a supplier call can end in, classified by what to do next.

use std::time::Duration;

/// Why a supplier call failed. Messages never carry a code, a PIN, a claim
/// URL or a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SupplierError {
    /// Worth retrying: a timeout before the request was sent, a refused
    /// connection, a 5xx, a 429. `retry_after` is the supplier's own hint.
    #[error("{supplier}: temporary failure: {why}")]
    Transient {
        /// The supplier's name.
        supplier: String,
        /// What happened.
        why: String,
        /// The supplier's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// A business answer: no stock, no funds, unknown product, bad
    /// request — even when it came in an HTTP 200. Retrying cannot help.
    #[error("{supplier}: refused ({code}): {why}")]
    Rejected {
        /// The supplier's name.
        supplier: String,
        /// The supplier's error code (e.g. `RE006`).
        code: String,
        /// Its message.
        why: String,
    },
    /// The request may have reached the supplier (a timeout or a broken
    /// connection after sending an order): the order must be looked up by
    /// its client reference before anything is bought again.
    #[error("{supplier}: outcome unknown: {why}")]
    Ambiguous {
        /// The supplier's name.
        supplier: String,
        /// What happened.
        why: String,
    },
    /// The supplier's circuit is open: it failed repeatedly and is not
    /// called until `retry_in` has passed.
    #[error("{supplier}: not called for {retry_in:?}: it failed repeatedly")]
    CircuitOpen {
        /// The supplier's name.
        supplier: String,
        /// How long until a trial call is allowed.
        retry_in: Duration,
    },
    /// Retries ran out; the last failure.
    #[error("{supplier}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// The supplier's name.
        supplier: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure's message.
        last: String,
    },
}

impl SupplierError {
    /// Whether waiting and calling again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SupplierError::Transient { .. })
    }

    /// Whether the failure says something about the supplier's health (and
    /// so counts towards opening its circuit). A rejection is the supplier
    /// working as it should.
    pub fn counts_against_supplier(&self) -> bool {
        matches!(
            self,
            SupplierError::Transient { .. } | SupplierError::Ambiguous { .. }
        )
    }
}
