//! A connection pool per store.
//!
//! # Commits
//! Every write of the central and record stores is a single statement (a
//! batch of secrets is one `INSERT … SELECT FROM UNNEST(…)`), run in
//! autocommit on a pooled connection, so it is one round trip and durable
//! when it returns (`synchronous_commit` on). Statements are what cost CPU on
//! a small machine, so the hot inserts (secrets, sealed records) go through a
//! [`Coalescer`](crate::coalesce::Coalescer): concurrent callers' rows are
//! merged into one such statement, and a group that fails is retried job by
//! job so one bad job fails alone. An earlier design ran every job of a queue
//! in one transaction with a savepoint each, which tripled the round trips,
//! and let two nodes' transactions deadlock on each other's uncommitted
//! duplicates. The audit log, written by every request and chained, has a
//! group-committing writer of its own (see `audit`).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use strongroom_store::StoreError;

/// Most appends chained in one audit transaction.
pub const MAX_BATCH: usize = 1024;

/// Most rows merged into one insert (a larger single job still runs alone).
pub const MAX_GROUP_ROWS: usize = 2048;

/// Insert statements of one store in flight at once on a node: one commits
/// while the next group gathers.
pub const WRITERS: usize = 2;

/// Merged look-ups of one store in flight at once on a node.
pub const READERS: usize = 2;

/// How long a pooled connection may sit idle before it is checked (one
/// round trip) on its next checkout.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(1);

/// One store's connection pool.
#[derive(Debug, Clone)]
pub struct PgDatabase {
    pool: PgPool,
}

/// Maps a driver error to a store error; SQL state `23505` (unique
/// violation) becomes a conflict.
pub fn db_error(op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy {
    move |e| match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            StoreError::Conflict(op)
        }
        _ => StoreError::Backend {
            op,
            detail: e.to_string(),
        },
    }
}

impl PgDatabase {
    /// Connects a pool (lazily: a server can start while the database is
    /// briefly away).
    pub fn connect(options: PgConnectOptions, max_connections: u32) -> Self {
        // Statements stay prepared (one round trip each) and, after a few
        // runs, keep the server's generic plan (`plan_cache_mode = auto`,
        // pinned so a server-wide setting cannot change it): planning every
        // statement afresh cost the server more than running it. A generic
        // plan is often made while a table is still empty, so every hot
        // statement is written to need no statistics: look-ups probe an
        // index once per value (a LATERAL subquery behind OFFSET 0, never a
        // join the planner may turn into a hash of the whole table), reads
        // go by primary key. Plans are remade when autovacuum analyses a
        // table. And every statement here is small: JIT compilation would
        // only add milliseconds to the ones with large arrays bound.
        //
        // Durability is pinned here rather than left to the server's or the
        // role's defaults. No statement or lock wait may hang for ever, and
        // a node that stalls inside a transaction (the audit chain's locked
        // path holds the chain's lock there) is cut off by the server, so it
        // cannot stop every other node's audit writes, and with them all
        // work.
        let options = options.options([
            ("plan_cache_mode", "auto"),
            ("jit", "off"),
            ("synchronous_commit", "on"),
            ("statement_timeout", "30s"),
            ("lock_timeout", "10s"),
            ("idle_in_transaction_session_timeout", "10s"),
        ]);
        // A connection taken from the pool is checked with a round trip
        // only if it sat idle for a while (the server may have restarted or
        // closed it meanwhile). By default every checkout was checked, which
        // doubled the round trips of every statement on the hot paths. A
        // connection that broke while in use fails that statement; the
        // pool then drops it and opens another.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_CHECK {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Self { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
