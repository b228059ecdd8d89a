//! The audit log: every access to a secret or a principal, allowed or denied,
//! as an append-only chain of records that a single edit breaks.
//!
//! # The chain
//! Record `n` carries `mac_n = HMAC(k_audit, mac_{n-1} ‖ n ‖ body_n)`, with
//! `mac_0` empty. `k_audit` is derived from the root key, so only a holder of
//! the unsealed vault (or of enough key shares) can extend or check the chain:
//! an attacker who can write the audit file cannot forge records that verify.
//! Editing a record breaks its own MAC; deleting one leaves a gap in the
//! sequence; swapping two breaks the first of them. [`verify`] names the
//! first record that fails.
//!
//! # What the chain alone cannot show
//! Cutting records off the *end* leaves a shorter, valid chain, and a holder
//! of the chain key (any unsealed node has it) could rewrite it. Signed
//! [`checkpoint`]s of the chain head, kept outside the audit store, catch
//! both.
//!
//! # Fail closed
//! [`AuditLog::append`] returns only once the records are durable; the vault
//! does not complete an operation whose record could not be written.
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

pub mod checkpoint;
mod event;
pub mod export;
pub mod search;
mod verify;

use std::sync::Arc;

use strongroom_crypto::KeyBytes;
use strongroom_crypto::mac::MacKey;
use strongroom_store::{AuditStore, ChainFn, StoreError};

pub use event::{AuditEvent, AuditItem, Outcome};
pub use verify::{Problem, VerifyReport, verify};

/// Purpose label for deriving the audit chain key from the root key.
pub const AUDIT_KEY_PURPOSE: &str = "audit-chain-v1";

/// Errors from the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The record could not be made durable; the operation it describes must fail.
    #[error("audit log unavailable: {0}")]
    Unavailable(#[from] StoreError),
    /// A record could not be encoded.
    #[error("audit record could not be encoded")]
    Encode,
}

/// The chain computation for `key`.
pub fn chain_fn(key: Arc<MacKey>) -> ChainFn {
    Arc::new(move |prev: &[u8], seq: u64, body: &str| {
        key.tag(&[prev, &seq.to_be_bytes(), body.as_bytes()])
            .to_vec()
    })
}

/// Sees every record once it is durable: the live event stream that
/// detectors and metrics read.
///
/// Called on the appending task, after the write and before the operation
/// it records returns, so it must not block or wait: hand the records on
/// (a bounded channel) and return. A tap never sees a record that was not
/// written, and cannot stop one from being written.
pub trait LiveTap: Send + Sync {
    /// Records just made durable, in order, with their sequence numbers.
    fn observe(&self, records: &[(u64, &AuditEvent)]);

    /// An append failed: the operations it recorded were refused, and the
    /// failure of audit logging is itself something to raise.
    fn append_failed(&self, error: &AuditError);
}

/// A writable audit log: a store plus the chain key.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn AuditStore>,
    chain: ChainFn,
    tap: Option<Arc<dyn LiveTap>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

impl AuditLog {
    /// A log over `store`, chained under the key derived from the root key.
    pub fn new(store: Arc<dyn AuditStore>, audit_key: &KeyBytes) -> Self {
        Self {
            store,
            chain: chain_fn(Arc::new(MacKey::new(audit_key))),
            tap: None,
        }
    }

    /// The same log, with every durable record also shown to `tap`.
    pub fn with_tap(mut self, tap: Arc<dyn LiveTap>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Appends events durably, in order; returns their sequence numbers.
    pub async fn append(&self, events: &[AuditEvent]) -> Result<Vec<u64>, AuditError> {
        let bodies = events
            .iter()
            .map(AuditEvent::to_body)
            .collect::<Result<Vec<_>, _>>()?;
        let seqs = match self.store.append(bodies, self.chain.clone()).await {
            Ok(seqs) => seqs,
            Err(e) => {
                let e = AuditError::Unavailable(e);
                if let Some(tap) = &self.tap {
                    tap.append_failed(&e);
                }
                return Err(e);
            }
        };
        if let Some(tap) = &self.tap {
            let records: Vec<(u64, &AuditEvent)> =
                seqs.iter().copied().zip(events.iter()).collect();
            tap.observe(&records);
        }
        Ok(seqs)
    }

    /// Appends one event durably.
    pub async fn append_one(&self, event: AuditEvent) -> Result<u64, AuditError> {
        let seqs = self.append(std::slice::from_ref(&event)).await?;
        seqs.first().copied().ok_or(AuditError::Encode)
    }
}
