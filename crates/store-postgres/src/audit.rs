//! The audit log on PostgreSQL: one chain shared by every node.
//!
//! Each node chains its waiting appends as one group and writes the group in
//! one statement; a transaction-scoped advisory lock and the primary key on
//! the sequence number keep the chain whole when several nodes append (see
//! [`Chain`]): no fork, no gap, no repeated sequence number, and one node's
//! group stays contiguous. The store's role can only SELECT and INSERT here;
//! no UPDATE or DELETE is granted.

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
    let mut chain = Chain {
        pool,
        table,
        lock_key,
        tail: None,
    };
    let mut batch: Vec<Append> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let outcome = chain.append_all(&batch).await;
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

/// The last record known to be committed: where the next group chains on.
struct Tail {
    seq: u64,
    mac: Vec<u8>,
}

/// One group of records, chained onto a tail and ready to insert.
struct Chained<'a> {
    seqs: Vec<i64>,
    bodies: Vec<&'a str>,
    macs: Vec<Vec<u8>>,
    /// Each append's sequence numbers.
    per_append: Vec<Vec<u64>>,
    tail: Tail,
}

/// This node's writer of the shared chain.
///
/// # Two paths, one chain
/// **Fast** (the usual case on one node): chain the group onto the tail this
/// node last committed and insert it in one autocommit statement that only
/// writes if it can take the chain's advisory lock at once *and* the log's
/// last sequence number is still that tail's. One round trip and one WAL
/// flush per group.
///
/// **Locked** (after another node appended, or when the tail is unknown):
/// `BEGIN`, wait for the advisory lock, read the tail, insert, `COMMIT`. A
/// fast insert from another node cannot slip in meanwhile (it needs the
/// lock), so this path always makes progress: no node starves.
///
/// Either way the primary key on `seq` is the last word: two inserts that
/// chained onto the same record cannot both commit, so the log never forks,
/// never skips a number and never repeats one.
struct Chain {
    pool: PgPool,
    table: String,
    lock_key: String,
    tail: Option<Tail>,
}

impl Chain {
    /// Chains and writes every waiting append; returns each append's
    /// sequence numbers.
    async fn append_all(&mut self, batch: &[Append]) -> StoreResult<Vec<Vec<u64>>> {
        if let Some(tail) = self.tail.take() {
            let group = chain_onto(tail, batch)?;
            match self.insert_fast(&group).await {
                Ok(true) => {
                    self.tail = Some(group.tail);
                    return Ok(group.per_append);
                }
                // Another node appended (or holds the lock): go the slow way.
                Ok(false) => {}
                Err(StoreError::Conflict(_)) => {}
                // Outcome unknown: the tail is re-read next time.
                Err(e) => return Err(e),
            }
        }
        let group = self.insert_locked(batch).await?;
        let per_append = group.per_append;
        self.tail = Some(group.tail);
        Ok(per_append)
    }

    async fn insert_fast(&self, group: &Chained<'_>) -> StoreResult<bool> {
        let expected = to_i64(group.tail.seq)? - i64::try_from(group.seqs.len()).unwrap_or(0);
        // Both conditions are uncorrelated sub-selects, so each is evaluated
        // once for the statement: all rows go in, or none.
        let done = sqlx::query(sql(&format!(
            "INSERT INTO {t} (seq, body, mac) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bytea[]) \
             WHERE (SELECT pg_try_advisory_xact_lock(hashtext($4))) \
             AND (SELECT coalesce(max(seq), 0) FROM {t}) = $5",
            t = self.table
        )))
        .bind(&group.seqs)
        .bind(&group.bodies)
        .bind(&group.macs)
        .bind(&self.lock_key)
        .bind(expected)
        .execute(&self.pool)
        .await
        .map_err(db_error("append audit record"))?;
        Ok(done.rows_affected() == group.seqs.len() as u64)
    }

    async fn insert_locked<'a>(&self, batch: &'a [Append]) -> StoreResult<Chained<'a>> {
        let mut conn = self.pool.acquire().await.map_err(db_error("connect"))?;
        conn.execute("BEGIN").await.map_err(db_error("begin"))?;
        let result = async {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(&self.lock_key)
                .execute(&mut *conn)
                .await
                .map_err(db_error("lock audit chain"))?;
            let tail = sqlx::query(sql(&format!(
                "SELECT seq, mac FROM {} ORDER BY seq DESC LIMIT 1",
                self.table
            )))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error("read audit tail"))?;
            let tail = match tail {
                Some(r) => {
                    let seq: i64 = r.try_get(0).map_err(db_error("read audit tail"))?;
                    Tail {
                        seq: u64::try_from(seq)
                            .map_err(|_| StoreError::Malformed("negative sequence number"))?,
                        mac: r.try_get(1).map_err(db_error("read audit tail"))?,
                    }
                }
                None => Tail {
                    seq: 0,
                    mac: Vec::new(),
                },
            };
            let group = chain_onto(tail, batch)?;
            sqlx::query(sql(&format!(
                "INSERT INTO {} (seq, body, mac) \
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bytea[])",
                self.table
            )))
            .bind(&group.seqs)
            .bind(&group.bodies)
            .bind(&group.macs)
            .execute(&mut *conn)
            .await
            .map_err(db_error("append audit record"))?;
            Ok::<_, StoreError>(group)
        }
        .await;
        match result {
            Ok(group) => match conn.execute("COMMIT").await {
                Ok(_) => Ok(group),
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
}

/// Chains every append's bodies, in order, onto `tail`.
fn chain_onto(tail: Tail, batch: &[Append]) -> StoreResult<Chained<'_>> {
    let Tail {
        mut seq,
        mac: mut prev,
    } = tail;
    let mut group = Chained {
        seqs: Vec::new(),
        bodies: Vec::new(),
        macs: Vec::new(),
        per_append: Vec::with_capacity(batch.len()),
        tail: Tail {
            seq: 0,
            mac: Vec::new(),
        },
    };
    for append in batch {
        let mut seqs = Vec::with_capacity(append.bodies.len());
        for body in &append.bodies {
            seq += 1;
            let mac = (append.chain)(&prev, seq, body);
            group.seqs.push(to_i64(seq)?);
            group.bodies.push(body);
            group.macs.push(mac.clone());
            prev = mac;
            seqs.push(seq);
        }
        group.per_append.push(seqs);
    }
    group.tail = Tail { seq, mac: prev };
    Ok(group)
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
        self.read_records("seq >= $1 ORDER BY seq", from, limit)
            .await
    }

    async fn read_back(&self, before: u64, limit: usize) -> StoreResult<Vec<StoredAuditRecord>> {
        self.read_records("seq < $1 ORDER BY seq DESC", before, limit)
            .await
    }
}

impl PgAuditStore {
    /// One of the two range reads: `range` bounds `seq` by `$1` and orders.
    async fn read_records(
        &self,
        range: &str,
        bound: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredAuditRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT seq, body, mac FROM {} WHERE {range} LIMIT $2",
            self.table
        )))
        // BIGINT is signed: a bound past i64::MAX means "no bound".
        .bind(i64::try_from(bound).unwrap_or(i64::MAX))
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
