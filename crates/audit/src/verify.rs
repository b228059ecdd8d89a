//! Checking the chain from the first record to the last.

use std::sync::Arc;

use strongroom_crypto::KeyBytes;
use strongroom_crypto::mac::MacKey;
use strongroom_store::{AuditStore, StoreError};

use crate::AuditEvent;

const PAGE: usize = 10_000;

/// Why a record failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The record at this position is missing (deleted, or the log was cut
    /// and renumbered).
    Missing,
    /// The record's MAC does not match its content and place in the chain:
    /// it was edited, moved, or inserted.
    MacMismatch,
    /// The record's body is not a valid audit event.
    Malformed,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Problem::Missing => "record is missing (deleted or renumbered)",
            Problem::MacMismatch => "MAC does not match (record edited, reordered or inserted)",
            Problem::Malformed => "record body is not a valid audit event",
        })
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked and found good, in order, before any failure.
    pub verified: u64,
    /// Sequence number of the last good record (0 for an empty log).
    pub last_seq: u64,
    /// The first bad record and what is wrong with it.
    pub first_bad: Option<(u64, Problem)>,
}

impl VerifyReport {
    /// True when every record checked out.
    pub fn is_intact(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Walks the whole log and reports the first record that breaks the chain.
pub async fn verify(
    store: &Arc<dyn AuditStore>,
    audit_key: &KeyBytes,
) -> Result<VerifyReport, StoreError> {
    let key = MacKey::new(audit_key);
    let mut expected_seq: u64 = 1;
    let mut prev: Vec<u8> = Vec::new();
    loop {
        let page = store.read_from(expected_seq, PAGE).await?;
        let page_len = page.len();
        for rec in page {
            let bad = if rec.seq != expected_seq {
                Some(Problem::Missing)
            } else if key
                .verify(
                    &[&prev, &rec.seq.to_be_bytes(), rec.body.as_bytes()],
                    &rec.mac,
                )
                .is_err()
            {
                Some(Problem::MacMismatch)
            } else if AuditEvent::from_body(&rec.body).is_none() {
                Some(Problem::Malformed)
            } else {
                None
            };
            if let Some(problem) = bad {
                return Ok(VerifyReport {
                    verified: expected_seq - 1,
                    last_seq: expected_seq - 1,
                    first_bad: Some((expected_seq, problem)),
                });
            }
            prev = rec.mac;
            expected_seq += 1;
        }
        if page_len < PAGE {
            return Ok(VerifyReport {
                verified: expected_seq - 1,
                last_seq: expected_seq - 1,
                first_bad: None,
            });
        }
    }
}
