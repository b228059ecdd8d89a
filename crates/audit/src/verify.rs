//! Checking the chain from the first record to the last.

use std::sync::Arc;

use strongroom_crypto::KeyBytes;
use strongroom_crypto::mac::MacKey;
use strongroom_store::{AuditStore, StoreError};

use crate::AuditEvent;
use crate::head::ChainHead;

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
    /// The log ends before the head the vault sealed (record `head`): the
    /// records from this one to it were cut off the end.
    Cut {
        /// The sealed head's sequence number.
        head: u64,
    },
    /// The record at the sealed head's number is not the one sealed: the
    /// tail was cut and written again.
    HeadMismatch,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Problem::Missing => "record is missing (deleted or renumbered)",
            Problem::MacMismatch => "MAC does not match (record edited, reordered or inserted)",
            Problem::Malformed => "record body is not a valid audit event",
            Problem::Cut { head } => {
                return write!(
                    f,
                    "the log ends here, but the vault sealed record {head} as written: \
                     the records from here to {head} were cut off the end"
                );
            }
            Problem::HeadMismatch => {
                "not the record the vault sealed as its head (the tail was cut and written again)"
            }
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
    /// The time written in the last good record, if any.
    pub last_time: Option<String>,
    /// The head the vault sealed outside the audit store, if it has one:
    /// the log is proven complete up to it.
    pub sealed_head: Option<u64>,
}

impl VerifyReport {
    /// True when every record checked out and none is missing up to the
    /// sealed head.
    pub fn is_intact(&self) -> bool {
        self.first_bad.is_none()
    }

    /// The last record proven present and unchanged, with nothing cut
    /// before it: the sealed head, when the chain reaches it. Records after
    /// it verify by the chain, but their removal could not be detected.
    pub fn proven_through(&self) -> u64 {
        match (&self.first_bad, self.sealed_head) {
            (None, Some(head)) => head.min(self.last_seq),
            _ => 0,
        }
    }
}

/// Walks the whole log and reports the first record that breaks the chain,
/// or, given the vault's sealed `head`, where the log falls short of it.
pub async fn verify(
    store: &Arc<dyn AuditStore>,
    audit_key: &KeyBytes,
    head: Option<&ChainHead>,
) -> Result<VerifyReport, StoreError> {
    let key = MacKey::new(audit_key);
    let mut expected_seq: u64 = 1;
    let mut prev: Vec<u8> = Vec::new();
    let mut last_time = None;
    let report = |verified: u64, first_bad, last_time| VerifyReport {
        verified,
        last_seq: verified,
        first_bad,
        last_time,
        sealed_head: head.map(|h| h.seq),
    };
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
            } else if head.is_some_and(|h| h.seq == rec.seq && h.mac != rec.mac) {
                Some(Problem::HeadMismatch)
            } else {
                match AuditEvent::from_body(&rec.body) {
                    None => Some(Problem::Malformed),
                    Some(event) => {
                        last_time = Some(event.time);
                        None
                    }
                }
            };
            if let Some(problem) = bad {
                let first_bad = Some((expected_seq, problem));
                return Ok(report(expected_seq - 1, first_bad, last_time));
            }
            prev = rec.mac;
            expected_seq += 1;
        }
        if page_len < PAGE {
            let last = expected_seq - 1;
            let cut = head
                .filter(|h| h.seq > last)
                .map(|h| (last + 1, Problem::Cut { head: h.seq }));
            return Ok(report(last, cut, last_time));
        }
    }
}
