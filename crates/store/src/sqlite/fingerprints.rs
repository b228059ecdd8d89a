//! Where to look for a fingerprint: an in-memory index over the central
//! store's `secrets` rows.
//!
//! # Why in memory
//! Fingerprints are HMAC outputs, uniformly random. Kept in a B-tree index,
//! every insert lands on a different page, and SQLite's WAL writes each dirty
//! page whole at every commit: a batch of 1,000 secrets rewrote about 1,000
//! index pages (4 MiB) and the index, not the data, set the pace. With the
//! index in memory the `secrets` table is append-only on disk.
//!
//! # What it holds, and why it cannot lie
//! Only a *hint*: the first four bytes of each live fingerprint, mapped to
//! the rowids carrying them (about 10 bytes per secret; a million secrets
//! take about 10 MiB, 20 MiB while the table grows). Every candidate is confirmed against the row itself
//! (full fingerprint, tenant, class, state) before it counts, so a prefix
//! collision, or a row a reader cannot see yet, is never taken for a match.
//! Changes follow the writer's transactions through [`Shadow`]: a rolled-back
//! insert or delete is undone here too.
//!
//! # Why one process
//! Only the writer thread of the process that holds the data directory
//! changes it. The server takes an exclusive lock on the directory, so no
//! second process inserts secrets behind this index's back. The index is
//! rebuilt from the table each time the store opens.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use super::engine::Shadow;
use crate::StoreError;

/// The index key: the first four bytes of a fingerprint. Among a million
/// secrets about a hundred pairs share one, which costs only an extra
/// confirming read when one of them is looked up.
fn prefix(fingerprint: &[u8; 32]) -> u32 {
    u32::from_le_bytes(*fingerprint.first_chunk::<4>().unwrap_or(&[0; 4]))
}

/// Hashes a prefix by one multiplication. The keys are HMAC output under a
/// key no caller knows, so they are uniform and cannot be chosen to collide:
/// the keyed SipHash that protects ordinary maps from crafted keys is pure
/// cost here. The map takes bucket positions from the low bits of the hash,
/// which come from the key's low bits (uniform within a shard, as shards are
/// chosen by the top byte), and its probe tags from the top bits, which the
/// multiplication fills from every bit of the key.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }

    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

type PrefixMap<V> = HashMap<u32, V, BuildHasherDefault<PrefixHasher>>;

enum Change {
    Added(u32, i64),
    Removed(u32, i64),
}

/// Shards of the main map. A hash table grows by doubling, and for that
/// moment holds its old and new storage at once; split 256 ways, only one
/// small shard doubles at a time, so memory grows smoothly with the vault.
const SHARDS: usize = 256;

struct Inner {
    /// The first row for each prefix, when its rowid fits in 32 bits: nearly
    /// every prefix has exactly one, and eight bytes an entry keep a large
    /// vault's index small. Sharded by the prefix's top byte.
    first: Vec<PrefixMap<u32>>,
    /// Every other row: prefixes shared by several rows (allowed duplicates,
    /// collisions) and rowids past 2^32.
    more: PrefixMap<Vec<i64>>,
    /// Changes of the open transaction, to undo if it is rolled back.
    journal: Vec<Change>,
}

fn shard_of(key: u32) -> usize {
    (key >> 24) as usize % SHARDS
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            first: (0..SHARDS).map(|_| PrefixMap::default()).collect(),
            more: PrefixMap::default(),
            journal: Vec::new(),
        }
    }
}

impl Inner {
    fn shard(&self, key: u32) -> Option<&PrefixMap<u32>> {
        self.first.get(shard_of(key))
    }

    fn shard_mut(&mut self, key: u32) -> Option<&mut PrefixMap<u32>> {
        self.first.get_mut(shard_of(key))
    }

    fn first_row(&self, key: u32) -> Option<i64> {
        self.shard(key)
            .and_then(|m| m.get(&key))
            .map(|&r| i64::from(r))
    }

    fn add(&mut self, key: u32, rowid: i64) {
        let free = self.first_row(key).is_none();
        match (free, u32::try_from(rowid), self.shard_mut(key)) {
            (true, Ok(narrow), Some(shard)) => {
                shard.insert(key, narrow);
            }
            _ => self.more.entry(key).or_default().push(rowid),
        }
    }

    fn remove(&mut self, key: u32, rowid: i64) {
        if self.first_row(key) == Some(rowid) {
            if let Some(shard) = self.shard_mut(key) {
                shard.remove(&key);
            }
        } else if let Some(rest) = self.more.get_mut(&key) {
            rest.retain(|&r| r != rowid);
            if rest.is_empty() {
                self.more.remove(&key);
            }
        }
    }

    fn candidates(&self, key: u32) -> Vec<i64> {
        let mut out: Vec<i64> = self.first_row(key).into_iter().collect();
        if !self.more.is_empty()
            && let Some(rest) = self.more.get(&key)
        {
            out.extend_from_slice(rest);
        }
        out
    }
}

/// The in-memory fingerprint index of one central store.
#[derive(Default)]
pub struct FingerprintIndex {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for FingerprintIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("FingerprintIndex")
            .field(
                "prefixes",
                &inner.first.iter().map(PrefixMap::len).sum::<usize>(),
            )
            .finish()
    }
}

impl FingerprintIndex {
    /// Builds the index from every live row.
    pub fn load(conn: &Connection) -> Result<Self, StoreError> {
        let index = Self::default();
        let mut stmt = conn
            .prepare("SELECT rowid, fingerprint FROM secrets WHERE fingerprint IS NOT NULL")
            .map_err(StoreError::backend("load fingerprint index"))?;
        let mut rows = stmt
            .query([])
            .map_err(StoreError::backend("load fingerprint index"))?;
        let mut inner = index.lock();
        while let Some(row) = rows
            .next()
            .map_err(StoreError::backend("load fingerprint index"))?
        {
            let rowid: i64 = row
                .get(0)
                .map_err(StoreError::backend("load fingerprint index"))?;
            let fp: Vec<u8> = row
                .get(1)
                .map_err(StoreError::backend("load fingerprint index"))?;
            let fp: [u8; 32] = fp
                .try_into()
                .map_err(|_| StoreError::Malformed("fingerprint is not 32 bytes"))?;
            inner.add(prefix(&fp), rowid);
        }
        drop(inner);
        Ok(index)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-changed
        // in a way that matters: every candidate is confirmed against the row.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rows that may carry this fingerprint; [`FingerprintIndex::confirm`]
    /// tells which (if any) really does. Empty for nearly every new value,
    /// which then costs no read at all.
    pub fn candidates(&self, fingerprint: &[u8; 32]) -> Vec<i64> {
        self.lock().candidates(prefix(fingerprint))
    }

    /// The token of a live secret in (tenant, class) with this fingerprint,
    /// as `conn` sees the table. An original is preferred to an allowed
    /// duplicate, then the oldest.
    pub fn find(
        &self,
        conn: &Connection,
        tenant: &str,
        class: &str,
        fingerprint: &[u8; 32],
    ) -> Result<Option<String>, StoreError> {
        let candidates = self.candidates(fingerprint);
        Self::confirm(conn, tenant, class, fingerprint, candidates)
    }

    /// Of `candidates`, the token of the live row that really carries the
    /// fingerprint in (tenant, class), as in [`FingerprintIndex::find`].
    pub fn confirm(
        conn: &Connection,
        tenant: &str,
        class: &str,
        fingerprint: &[u8; 32],
        candidates: Vec<i64>,
    ) -> Result<Option<String>, StoreError> {
        if candidates.is_empty() {
            return Ok(None);
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT token, duplicate_allowed FROM secrets WHERE rowid = ?1 \
                 AND fingerprint = ?2 AND tenant = ?3 AND class = ?4 AND state = 'active'",
            )
            .map_err(StoreError::backend("find fingerprint"))?;
        let mut best: Option<(bool, i64, String)> = None;
        for rowid in candidates {
            let hit: Option<(String, bool)> = stmt
                .query_row(params![rowid, fingerprint.as_slice(), tenant, class], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(StoreError::backend("find fingerprint"))?;
            if let Some((token, duplicate)) = hit {
                let better = best
                    .as_ref()
                    .is_none_or(|(d, id, _)| (duplicate, rowid) < (*d, *id));
                if better {
                    best = Some((duplicate, rowid, token));
                }
            }
        }
        Ok(best.map(|(_, _, token)| token))
    }

    /// Records a row just inserted by the writer.
    pub fn added(&self, fingerprint: &[u8; 32], rowid: i64) {
        let key = prefix(fingerprint);
        let mut inner = self.lock();
        inner.add(key, rowid);
        inner.journal.push(Change::Added(key, rowid));
    }

    /// Records that the writer dropped a row's fingerprint.
    pub fn removed(&self, fingerprint: &[u8; 32], rowid: i64) {
        let key = prefix(fingerprint);
        let mut inner = self.lock();
        inner.remove(key, rowid);
        inner.journal.push(Change::Removed(key, rowid));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let inner = self.lock();
        inner.first.iter().map(PrefixMap::len).sum::<usize>()
            + inner.more.values().map(Vec::len).sum::<usize>()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shadow for FingerprintIndex {
    fn mark(&self) -> usize {
        self.lock().journal.len()
    }

    fn undo_to(&self, mark: usize) {
        let mut inner = self.lock();
        while inner.journal.len() > mark {
            match inner.journal.pop() {
                Some(Change::Added(key, rowid)) => inner.remove(key, rowid),
                Some(Change::Removed(key, rowid)) => inner.add(key, rowid),
                None => break,
            }
        }
    }

    fn commit(&self) {
        self.lock().journal.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(first: u8, last: u8) -> [u8; 32] {
        let mut f = [0u8; 32];
        f[0] = first;
        f[31] = last;
        f
    }

    #[test]
    fn undo_restores_what_a_rolled_back_transaction_changed() {
        let index = FingerprintIndex::default();
        index.added(&fp(1, 0), 1);
        index.commit();
        let mark = index.mark();
        index.added(&fp(2, 0), 2);
        index.removed(&fp(1, 0), 1);
        assert_eq!(index.len(), 1);
        index.undo_to(mark);
        assert_eq!(index.lock().candidates(prefix(&fp(1, 0))), vec![1]);
        assert!(index.lock().candidates(prefix(&fp(2, 0))).is_empty());
    }

    #[test]
    fn rows_sharing_a_prefix_are_all_candidates_until_removed() {
        let index = FingerprintIndex::default();
        // Same first four bytes, different fingerprints: a prefix collision.
        index.added(&fp(7, 1), 10);
        index.added(&fp(7, 2), 11);
        index.added(&fp(7, 2), 12);
        assert_eq!(index.lock().candidates(prefix(&fp(7, 9))), vec![10, 11, 12]);
        index.removed(&fp(7, 1), 10);
        let mut left = index.lock().candidates(prefix(&fp(7, 1)));
        left.sort_unstable();
        assert_eq!(left, vec![11, 12]);
        index.removed(&fp(7, 2), 12);
        index.removed(&fp(7, 2), 11);
        assert!(index.is_empty());
    }

    #[test]
    fn prefixes_spread_over_buckets_within_a_shard() {
        use std::hash::BuildHasher;
        // Keys of one shard share their top byte; their hashes must still
        // differ in the low bits the map uses for bucket positions.
        let build = BuildHasherDefault::<PrefixHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..4096u32)
            .map(|i| build.hash_one(0x2A00_0000 | i.wrapping_mul(2_654_435_761) >> 8) & 1023)
            .collect();
        assert!(
            buckets.len() > 900,
            "{} of 1024 buckets used",
            buckets.len()
        );
    }

    #[test]
    fn rowids_past_32_bits_are_kept_whole() {
        let index = FingerprintIndex::default();
        let wide = i64::from(u32::MAX) + 5;
        index.added(&fp(9, 0), wide);
        assert_eq!(index.lock().candidates(prefix(&fp(9, 0))), vec![wide]);
        index.removed(&fp(9, 0), wide);
        assert!(index.is_empty());
    }
}
