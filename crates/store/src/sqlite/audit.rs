//! The audit log in SQLite: append-only rows chained by MAC.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::engine::{Database, Migrations};
use crate::{AuditStore, ChainFn, StoreError, StoreResult, StoredAuditRecord};

const MIGRATIONS: Migrations =
    &["CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, mac BLOB NOT NULL)"];

/// An [`AuditStore`] in one SQLite file.
#[derive(Debug)]
pub struct SqliteAuditStore {
    db: Arc<Database>,
}

impl SqliteAuditStore {
    /// Opens or creates the file.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Ok(Self {
            db: Database::open(path, MIGRATIONS)?,
        })
    }

    /// The underlying database (for tests that tamper with stored rows).
    pub fn database(&self) -> &Database {
        &self.db
    }
}

#[async_trait]
impl AuditStore for SqliteAuditStore {
    async fn append(&self, bodies: Vec<String>, chain: ChainFn) -> StoreResult<Vec<u64>> {
        self.db
            .write(move |conn| {
                // The tail is read inside the transaction, so the chain stays
                // right even after a failed batch was rolled back.
                let tail: Option<(u64, Vec<u8>)> = conn
                    .prepare_cached("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
                    .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                    .map_err(StoreError::backend("read audit tail"))?;
                let (mut seq, mut prev) = tail.unwrap_or((0, Vec::new()));
                let mut stmt = conn
                    .prepare_cached("INSERT INTO audit_log (seq, body, mac) VALUES (?1, ?2, ?3)")
                    .map_err(StoreError::backend("prepare audit insert"))?;
                let mut seqs = Vec::with_capacity(bodies.len());
                for body in &bodies {
                    seq += 1;
                    let mac = chain(&prev, seq, body);
                    stmt.execute(params![seq, body, mac])
                        .map_err(StoreError::backend("append audit record"))?;
                    prev = mac;
                    seqs.push(seq);
                }
                Ok(seqs)
            })
            .await
    }

    async fn read_from(&self, from: u64, limit: usize) -> StoreResult<Vec<StoredAuditRecord>> {
        self.db.read(move |conn| {
            read_records(
                conn,
                "SELECT seq, body, mac FROM audit_log WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
                from,
                limit,
            )
        })
    }

    async fn read_back(&self, before: u64, limit: usize) -> StoreResult<Vec<StoredAuditRecord>> {
        self.db.read(move |conn| {
            read_records(
                conn,
                "SELECT seq, body, mac FROM audit_log WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2",
                before,
                limit,
            )
        })
    }
}

/// Runs one of the two range reads: `sql` takes a sequence bound and a limit.
fn read_records(
    conn: &rusqlite::Connection,
    sql: &str,
    bound: u64,
    limit: usize,
) -> StoreResult<Vec<StoredAuditRecord>> {
    // SQLite integers are signed: a bound past i64::MAX means "no bound".
    let bound = i64::try_from(bound).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(StoreError::backend("read audit log"))?;
    let rows = stmt
        .query_map(params![bound, limit], |r| {
            Ok(StoredAuditRecord {
                seq: r.get(0)?,
                body: r.get(1)?,
                mac: r.get(2)?,
            })
        })
        .map_err(StoreError::backend("read audit log"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::backend("read audit log"))
}
