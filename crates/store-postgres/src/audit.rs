//! The audit log on PostgreSQL: one chain shared by every node.
//!
//! Appends from all nodes are serialised by a transaction-scoped advisory
//! lock taken before the tail is read, so two nodes never chain onto the
//! same record: no fork, no gap, no repeated sequence number (the primary key
//! would refuse one anyway). The lock is held until the append's group commit
//! ends, so one node's batch of records stays contiguous. The store's role can
//! only SELECT and INSERT here; no UPDATE or DELETE is granted.

use async_trait::async_trait;
use sqlx::{Executor, PgPool, Row};
use strongroom_store::{AuditStore, ChainFn, StoreError, StoreResult, StoredAuditRecord};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{MAX_BATCH, PgDatabase, db_error};
use crate::sql;

/// One caller's records, waiting for the next group commit.
struct Append {
    bodies: Vec<String>,
    chain: ChainFn,
    reply: oneshot::Sender<StoreResult<Vec<u64>>>,
}

/// An [`AuditStore`] in one schema, reached through its own role.
///
/// Appends have a writer of their own: every append waiting is chained and
/// written by one INSERT in one transaction (one lock, one read of the tail,
/// one statement, one commit), since every request appends a record.
#[derive(Debug)]
pub struct PgAuditStore {
    db: PgDatabase,
    table: String,
    appends: mpsc::UnboundedSender<Append>,
}

impl PgAuditStore {
    /// The store in `schema`. Must run inside a Tokio runtime.
    pub fn new(db: PgDatabase, schema: &str) -> Self {
        let table = format!("{schema}.audit_log");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(append_loop(
            db.pool().clone(),
            table.clone(),
            format!("strongroom-audit-chain:{schema}"),
            rx,
        ));
        Self {
            db,
            table,
            appends: tx,
        }
    }
}

async fn append_loop(
    pool: PgPool,
    table: String,
    lock_key: String,
    mut rx: mpsc::UnboundedReceiver<Append>,
) {
    let mut batch: Vec<Append> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let outcome = append_all(&pool, &table, &lock_key, &batch).await;
        tracing::trace!(appends = batch.len(), ok = outcome.is_ok(), "group commit");
        match outcome {
            Ok(seqs) => {
                for (append, seqs) in batch.drain(..).zip(seqs) {
                    let _ = append.reply.send(Ok(seqs));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "audit append failed");
                for append in batch.drain(..) {
                    let _ = append.reply.send(Err(StoreError::Backend {
                        op: "append audit record",
                        detail: e.to_string(),
                    }));
                }
            }
        }
    }
}

/// Chains and writes every waiting append in one transaction; returns each
/// append's sequence numbers.
async fn append_all(
    pool: &PgPool,
    table: &str,
    lock_key: &str,
    batch: &[Append],
) -> StoreResult<Vec<Vec<u64>>> {
    let mut conn = pool.acquire().await.map_err(db_error("connect"))?;
    conn.execute("BEGIN").await.map_err(db_error("begin"))?;
    let result = async {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(lock_key)
            .execute(&mut *conn)
            .await
            .map_err(db_error("lock audit chain"))?;
        let tail = sqlx::query(sql(&format!(
            "SELECT seq, mac FROM {table} ORDER BY seq DESC LIMIT 1"
        )))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error("read audit tail"))?;
        let (mut seq, mut prev): (u64, Vec<u8>) = match tail {
            Some(r) => {
                let seq: i64 = r.try_get(0).map_err(db_error("read audit tail"))?;
                let seq = u64::try_from(seq)
                    .map_err(|_| StoreError::Malformed("negative sequence number"))?;
                (seq, r.try_get(1).map_err(db_error("read audit tail"))?)
            }
            None => (0, Vec::new()),
        };
        let mut all_seqs = Vec::with_capacity(batch.len());
        let (mut seq_col, mut bodies, mut macs) = (Vec::new(), Vec::new(), Vec::new());
        for append in batch {
            let mut seqs = Vec::with_capacity(append.bodies.len());
            for body in &append.bodies {
                seq += 1;
                let mac = (append.chain)(&prev, seq, body);
                seq_col.push(to_i64(seq)?);
                bodies.push(body.as_str());
                macs.push(mac.clone());
                prev = mac;
                seqs.push(seq);
            }
            all_seqs.push(seqs);
        }
        sqlx::query(sql(&format!(
            "INSERT INTO {table} (seq, body, mac) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bytea[])"
        )))
        .bind(seq_col)
        .bind(bodies)
        .bind(macs)
        .execute(&mut *conn)
        .await
        .map_err(db_error("append audit record"))?;
        Ok::<_, StoreError>(all_seqs)
    }
    .await;
    match result {
        Ok(seqs) => match conn.execute("COMMIT").await {
            Ok(_) => Ok(seqs),
            Err(e) => {
                conn.detach();
                Err(db_error("commit")(e))
            }
        },
        Err(e) => {
            let _ = conn.execute("ROLLBACK").await;
            Err(e)
        }
    }
}

fn to_i64(n: u64) -> StoreResult<i64> {
    i64::try_from(n).map_err(|_| StoreError::Malformed("sequence number out of range"))
}

#[async_trait]
impl AuditStore for PgAuditStore {
    async fn append(&self, bodies: Vec<String>, chain: ChainFn) -> StoreResult<Vec<u64>> {
        let (reply, answer) = oneshot::channel();
        self.appends
            .send(Append {
                bodies,
                chain,
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_from(&self, from: u64, limit: usize) -> StoreResult<Vec<StoredAuditRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT seq, body, mac FROM {} WHERE seq >= $1 ORDER BY seq LIMIT $2",
            self.table
        )))
        .bind(to_i64(from)?)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("read audit log"))?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get(0).map_err(db_error("read audit log"))?;
                Ok(StoredAuditRecord {
                    seq: u64::try_from(seq)
                        .map_err(|_| StoreError::Malformed("negative sequence number"))?,
                    body: r.try_get(1).map_err(db_error("read audit log"))?,
                    mac: r.try_get(2).map_err(db_error("read audit log"))?,
                })
            })
            .collect()
    }
}
