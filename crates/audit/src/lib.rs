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
//! of the chain key (any unsealed node has it) could rewrite it. The vault
//! seals the chain [`head`] it last made durable into the vault store, where
//! the audit store's writer cannot reach, and refuses to append after a log
//! that ends before it; signed [`checkpoint`]s of the head, kept outside
//! Strongroom altogether, catch a rewrite by a holder of the key too.
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
pub mod head;
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
    /// The log ends before the head the vault sealed, or was renumbered
    /// below it: records were cut. Nothing more is appended.
    #[error("{0}")]
    Cut(String),
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
    head: Option<Arc<head::HeadKeeper>>,
    /// Set once the log is found cut: from then on nothing is appended, so
    /// refused appends cannot renumber the log back past the head.
    cut: Arc<std::sync::OnceLock<String>>,
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
            head: None,
            cut: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// The same log, with every durable head handed to `keeper` (which seals
    /// it outside the audit store), and appends refused once the log is
    /// found numbered below a head already made durable (it was cut).
    pub fn with_head(mut self, keeper: Arc<head::HeadKeeper>) -> Self {
        self.head = Some(keeper);
        self
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
        if let Some(what) = self.cut.get() {
            return Err(self.failed(AuditError::Cut(what.clone())));
        }
        // Everything made durable before this append began must lie below
        // it: the log only grows.
        let floor = self.head.as_ref().map(|k| k.current());
        let last = Arc::new(std::sync::Mutex::new(None::<head::ChainHead>));
        let chain = match &self.head {
            None => self.chain.clone(),
            Some(_) => {
                let (inner, last) = (self.chain.clone(), last.clone());
                Arc::new(move |prev: &[u8], seq: u64, body: &str| {
                    let mac = inner(prev, seq, body);
                    // The last computation of this append's chain is the one
                    // that commits (a retried group chains again).
                    if let Ok(mut l) = last.lock() {
                        *l = Some(head::ChainHead {
                            seq,
                            mac: mac.clone(),
                        });
                    }
                    mac
                }) as ChainFn
            }
        };
        let seqs = match self.store.append(bodies, chain).await {
            Ok(seqs) => seqs,
            Err(e) => return Err(self.failed(AuditError::Unavailable(e))),
        };
        if let (Some(keeper), Some(floor), Some(first)) = (&self.head, floor, seqs.first()) {
            if *first <= floor {
                let what = format!(
                    "the audit log was cut: this node had made record {floor} durable, \
                     and the store numbered new records from {first}; nothing more is appended"
                );
                let what = self.cut.get_or_init(|| what).clone();
                return Err(self.failed(AuditError::Cut(what)));
            }
            let made = last.lock().ok().and_then(|mut l| l.take());
            if let Some(made) = made.filter(|h| seqs.last() == Some(&h.seq)) {
                keeper.committed(made);
            }
        }
        if let Some(tap) = &self.tap {
            let records: Vec<(u64, &AuditEvent)> =
                seqs.iter().copied().zip(events.iter()).collect();
            tap.observe(&records);
        }
        Ok(seqs)
    }

    fn failed(&self, e: AuditError) -> AuditError {
        if let Some(tap) = &self.tap {
            tap.append_failed(&e);
        }
        e
    }

    /// Appends one event durably.
    pub async fn append_one(&self, event: AuditEvent) -> Result<u64, AuditError> {
        let seqs = self.append(std::slice::from_ref(&event)).await?;
        seqs.first().copied().ok_or(AuditError::Encode)
    }
}
