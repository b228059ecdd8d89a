//! Opaque sealed records on PostgreSQL (the secret vault and the archive).

use async_trait::async_trait;
use sqlx::Row;
use strongroom_store::{RecordStore, StoreError, StoreResult, WrappedKey};

use crate::coalesce::{Coalescer, read_by_token, together_or_alone};
use crate::engine::{MAX_GROUP_ROWS, PgDatabase, READERS, WRITERS, db_error};
use crate::sql;

/// A [`RecordStore`] in one schema, reached through its own role.
#[derive(Debug)]
pub struct PgRecordStore {
    db: PgDatabase,
    /// Concurrent puts, merged into one statement per group.
    puts: Coalescer<Vec<Record>, ()>,
    /// Concurrent reads of one envelope each (every reveal makes one),
    /// merged into one read of many tokens.
    gets: Coalescer<String, Option<Vec<u8>>>,
    records: String,
    keyring: String,
    meta: String,
}

impl PgRecordStore {
    /// The store in `schema`. Must run inside a Tokio runtime.
    pub fn new(db: PgDatabase, schema: &str) -> Self {
        let records = format!("{schema}.records");
        let puts = {
            let (db, records) = (db.clone(), records.clone());
            Coalescer::spawn(WRITERS, MAX_GROUP_ROWS, move |jobs| {
                put_group(db.clone(), records.clone(), jobs)
            })
        };
        let gets = {
            let (db, records) = (db.clone(), records.clone());
            Coalescer::spawn(READERS, MAX_GROUP_ROWS, move |tokens| {
                get_group(db.clone(), records.clone(), tokens)
            })
        };
        Self {
            db,
            puts,
            gets,
            records,
            keyring: format!("{schema}.keyring"),
            meta: format!("{schema}.meta"),
        }
    }
}

/// A sealed record: token and envelope.
type Record = (String, Vec<u8>);

/// Runs a group of put jobs as one statement (or, if that fails, job by job).
async fn put_group(db: PgDatabase, table: String, jobs: Vec<Vec<Record>>) -> Vec<StoreResult<()>> {
    together_or_alone(
        jobs,
        |jobs| {
            let (db, table) = (&db, &table);
            async move {
                let n = jobs.len();
                put_rows(db, table, jobs.into_iter().flatten().collect()).await?;
                Ok(vec![(); n])
            }
        },
        |job| {
            let (db, table) = (&db, &table);
            async move { put_rows(db, table, job).await }
        },
    )
    .await
}

/// Reads a group of envelopes, one token per caller, in one statement.
async fn get_group(
    db: PgDatabase,
    table: String,
    tokens: Vec<String>,
) -> Vec<StoreResult<Option<Vec<u8>>>> {
    let sql_text = format!("SELECT token, envelope FROM {table} WHERE token = ANY($1)");
    read_by_token(&db, &sql_text, &tokens, "read record", |r| {
        r.try_get(1).map_err(db_error("read record"))
    })
    .await
}

/// Inserts `records` in one statement. Idempotent: a record already stored
/// with the same envelope (by an earlier run of a group that failed after
/// its insert, then rerun job by job) counts as stored; a token stored with
/// another envelope is a conflict.
async fn put_rows(db: &PgDatabase, table: &str, records: Vec<Record>) -> StoreResult<()> {
    let (tokens, envelopes): (Vec<String>, Vec<Vec<u8>>) = records.into_iter().unzip();
    let mut conn = db.pool().acquire().await.map_err(db_error("connect"))?;
    let inserted = sqlx::query(sql(&format!(
        "INSERT INTO {table} (token, envelope) SELECT * FROM UNNEST($1::text[], $2::bytea[]) \
         ON CONFLICT (token) DO NOTHING"
    )))
    .bind(&tokens)
    .bind(&envelopes)
    .execute(&mut *conn)
    .await
    .map_err(db_error("insert records"))?;
    if inserted.rows_affected() == tokens.len() as u64 {
        return Ok(());
    }
    let stored: std::collections::HashMap<String, Vec<u8>> = sqlx::query(sql(&format!(
        "SELECT token, envelope FROM {table} WHERE token = ANY($1)"
    )))
    .bind(&tokens)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error("insert records"))?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect::<Result<_, sqlx::Error>>()
    .map_err(db_error("insert records"))?;
    for (token, envelope) in tokens.iter().zip(&envelopes) {
        if stored.get(token) != Some(envelope) {
            return Err(StoreError::Conflict("token already in use"));
        }
    }
    Ok(())
}

#[async_trait]
impl RecordStore for PgRecordStore {
    async fn put_many(&self, records: Vec<(String, Vec<u8>)>) -> StoreResult<()> {
        let rows = records.len();
        self.puts.submit(records, rows).await
    }

    async fn get(&self, token: &str) -> StoreResult<Option<Vec<u8>>> {
        self.gets.submit(token.to_owned(), 1).await
    }

    async fn delete(&self, token: &str) -> StoreResult<bool> {
        let sql_text = format!("DELETE FROM {} WHERE token = $1", self.records);
        let done = sqlx::query(sql(&sql_text))
            .bind(token)
            .execute(self.db.pool())
            .await
            .map_err(db_error("delete record"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn load_keyring(&self) -> StoreResult<Vec<WrappedKey>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT scope, version, wrapped, created_at FROM {} ORDER BY scope, version",
            self.keyring
        )))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("load keyring"))?;
        rows.iter()
            .map(|r| {
                let version: i32 = r.try_get(1).map_err(db_error("load keyring"))?;
                Ok(WrappedKey {
                    scope: r.try_get(0).map_err(db_error("load keyring"))?,
                    version: u32::try_from(version)
                        .map_err(|_| StoreError::Malformed("negative key version"))?,
                    wrapped: r.try_get(2).map_err(db_error("load keyring"))?,
                    created_at: r.try_get(3).map_err(db_error("load keyring"))?,
                })
            })
            .collect()
    }

    async fn add_key(&self, key: WrappedKey) -> StoreResult<()> {
        let sql_text = format!(
            "INSERT INTO {} (scope, version, wrapped, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            self.keyring
        );
        let version = i32::try_from(key.version)
            .map_err(|_| StoreError::Malformed("key version too large"))?;
        let done = sqlx::query(sql(&sql_text))
            .bind(key.scope)
            .bind(version)
            .bind(key.wrapped)
            .bind(key.created_at)
            .execute(self.db.pool())
            .await
            .map_err(db_error("add key"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("key version exists"));
        }
        Ok(())
    }

    async fn get_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query(sql(&format!(
            "SELECT value FROM {} WHERE name = $1",
            self.meta
        )))
        .bind(name)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("read meta"))?
        .map(|r| r.try_get(0).map_err(db_error("read meta")))
        .transpose()
    }

    async fn put_meta(&self, name: &str, value: Vec<u8>) -> StoreResult<()> {
        let sql_text = format!(
            "INSERT INTO {} (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            self.meta
        );
        sqlx::query(sql(&sql_text))
            .bind(name)
            .bind(value)
            .execute(self.db.pool())
            .await
            .map_err(db_error("write meta"))?;
        Ok(())
    }
}
