//! The chain head, kept where the audit store's writer cannot rewrite it.
//!
//! A chain proves every record up to its last one, but not that the last
//! one is the real end: `DELETE FROM audit_log WHERE seq > N` leaves a
//! shorter chain that verifies. So the vault seals the head it last made
//! durable (sequence number and MAC, under a tag of the audit key) into the
//! **vault** store, which has its own file and credentials. Whoever can write
//! the audit store alone cannot move it; a log that ends before it was cut.
//!
//! The head follows the log closely but not in the same transaction (two
//! stores): after every durable append the newest head is handed to a
//! writer task, which seals it into the vault store, the latest one winning
//! when appends outpace it. Records appended since the last head write (a
//! few milliseconds' worth on a busy node) are proven by the chain only;
//! [`crate::verify`] says so rather than calling them proven.
//!
//! With several nodes on one PostgreSQL, each node writes the head of its own
//! appends, and none moves a later head back, so the sealed head is never
//! past the log's real end and at most a moment short of it.

use std::sync::Arc;

use strongroom_crypto::mac::{MacKey, TAG_LEN};
use strongroom_store::{AuditStore, RecordStore, StoreError};
use tokio::sync::watch;

/// Vault-store meta name of the sealed head.
pub const HEAD_META: &str = "audit_head_v1";

const MAGIC: &[u8; 4] = b"srh1";
const LABEL: &[u8] = b"audit-head-v1";

/// A record the log must contain: its sequence number and chain MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the record.
    pub seq: u64,
    /// Its chain MAC.
    pub mac: Vec<u8>,
}

/// Why a sealed head could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    /// The stored value is not a head this vault sealed.
    #[error("the sealed audit head in the vault store is malformed or forged")]
    Forged,
}

impl ChainHead {
    /// The bytes kept in the vault store: the head and a tag over it.
    pub fn seal(&self, key: &MacKey) -> Vec<u8> {
        let seq = self.seq.to_be_bytes();
        let tag = key.tag(&[LABEL, &seq, &self.mac]);
        let mut out = Vec::with_capacity(4 + 8 + TAG_LEN + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&seq);
        out.extend_from_slice(&self.mac);
        out.extend_from_slice(&tag);
        out
    }

    /// The head sealed in `bytes`, its tag checked.
    pub fn open(bytes: &[u8], key: &MacKey) -> Result<Self, HeadError> {
        let (magic, rest) = bytes.split_at_checked(4).ok_or(HeadError::Forged)?;
        let (seq, rest) = rest.split_at_checked(8).ok_or(HeadError::Forged)?;
        let (mac, tag) = rest.split_at_checked(TAG_LEN).ok_or(HeadError::Forged)?;
        if magic != MAGIC || tag.len() != TAG_LEN {
            return Err(HeadError::Forged);
        }
        key.verify(&[LABEL, seq, mac], tag)
            .map_err(|_| HeadError::Forged)?;
        let seq = u64::from_be_bytes(seq.try_into().map_err(|_| HeadError::Forged)?);
        Ok(Self {
            seq,
            mac: mac.to_vec(),
        })
    }
}

/// Reads the sealed head from the vault store: `None` if none was ever
/// written (a vault from before sealed heads, or one with an empty log).
pub async fn load(
    vault: &Arc<dyn RecordStore>,
    key: &MacKey,
) -> Result<Option<Result<ChainHead, HeadError>>, StoreError> {
    Ok(vault
        .get_meta(HEAD_META)
        .await?
        .map(|bytes| ChainHead::open(&bytes, key)))
}

/// How the log stands against a sealed head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The log holds the head's record, unchanged.
    Reaches,
    /// The log ends at `last` (0: empty), before the head: records
    /// `last + 1 ..= head` were cut.
    EndsBefore {
        /// The log's last sequence number.
        last: u64,
    },
    /// The log has a record at the head's number, but not the one sealed:
    /// the tail was cut and written again.
    Rewritten,
}

/// Checks that the log still reaches `head`.
pub async fn reach(store: &Arc<dyn AuditStore>, head: &ChainHead) -> Result<Reach, StoreError> {
    let at = store.read_from(head.seq, 1).await?;
    match at.first() {
        Some(rec) if rec.seq == head.seq => Ok(if subtle_eq(&rec.mac, &head.mac) {
            Reach::Reaches
        } else {
            Reach::Rewritten
        }),
        _ => {
            let last = store
                .read_back(u64::MAX, 1)
                .await?
                .first()
                .map_or(0, |r| r.seq);
            Ok(Reach::EndsBefore {
                last: last.min(head.seq.saturating_sub(1)),
            })
        }
    }
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    // Public values (MACs already in the store): no constant-time need.
    a == b
}

/// Keeps the newest durable head and seals it into the vault store from a
/// task of its own. Dropping the keeper ends the task after its last write.
#[derive(Debug)]
pub struct HeadKeeper {
    latest: watch::Sender<Option<ChainHead>>,
}

impl HeadKeeper {
    /// Starts the writer task. Must run inside a Tokio runtime.
    pub fn spawn(vault: Arc<dyn RecordStore>, key: Arc<MacKey>, start: Option<ChainHead>) -> Self {
        let (latest, mut rx) = watch::channel(start);
        tokio::spawn(async move {
            let mut written: u64 = rx.borrow().as_ref().map_or(0, |h| h.seq);
            loop {
                let closed = rx.changed().await.is_err();
                let head = rx.borrow_and_update().clone();
                if let Some(head) = head.filter(|h| h.seq > written) {
                    // Another node may have sealed a later head: never move
                    // it back (the read and the write are not one step, so
                    // two nodes can still race; the head then falls short,
                    // never past the end).
                    let stored = vault.get_meta(HEAD_META).await.ok().flatten();
                    let later = stored
                        .and_then(|b| ChainHead::open(&b, &key).ok())
                        .is_some_and(|s| s.seq >= head.seq);
                    if later {
                        written = head.seq;
                        if closed {
                            break;
                        }
                        continue;
                    }
                    match vault.put_meta(HEAD_META, head.seal(&key)).await {
                        Ok(()) => written = head.seq,
                        Err(e) => tracing::warn!(error = %e, seq = head.seq,
                            "could not seal the audit head into the vault store; will retry with the next"),
                    }
                }
                if closed {
                    break;
                }
            }
        });
        Self { latest }
    }

    /// The newest head made durable so far (by this node).
    pub fn current(&self) -> u64 {
        self.latest.borrow().as_ref().map_or(0, |h| h.seq)
    }

    /// Records that `head` is durable; an older one changes nothing.
    pub fn committed(&self, head: ChainHead) {
        self.latest.send_if_modified(|cur| {
            if cur.as_ref().is_some_and(|c| c.seq >= head.seq) {
                false
            } else {
                *cur = Some(head);
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongroom_crypto::KeyBytes;

    #[test]
    fn a_sealed_head_opens_only_unchanged_and_under_its_key() {
        let key = MacKey::new(&KeyBytes::new([3; 32]));
        let head = ChainHead {
            seq: 41,
            mac: vec![9; 32],
        };
        let sealed = head.seal(&key);
        assert_eq!(ChainHead::open(&sealed, &key), Ok(head.clone()));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(
                ChainHead::open(&bad, &key),
                Err(HeadError::Forged),
                "byte {i}"
            );
        }
        assert!(ChainHead::open(&sealed[..20], &key).is_err());
        let other = MacKey::new(&KeyBytes::new([4; 32]));
        assert!(ChainHead::open(&sealed, &other).is_err());
    }
}
