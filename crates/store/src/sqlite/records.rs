//! Opaque sealed records in SQLite (the secret vault and the archive vault).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::engine::{Database, Migrations};
use crate::{RecordStore, StoreError, StoreResult, WrappedKey};

const MIGRATIONS: Migrations = &[
    // Appended in rowid order, found through the token index (see central.rs).
    "CREATE TABLE records (id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, envelope BLOB NOT NULL);
     CREATE TABLE keyring (scope TEXT NOT NULL, version INTEGER NOT NULL, wrapped BLOB NOT NULL,
         created_at INTEGER NOT NULL, PRIMARY KEY (scope, version)) WITHOUT ROWID;
     CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
];

/// A [`RecordStore`] in one SQLite file.
#[derive(Debug)]
pub struct SqliteRecordStore {
    db: Arc<Database>,
}

impl SqliteRecordStore {
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
impl RecordStore for SqliteRecordStore {
    async fn put_many(&self, records: Vec<(String, Vec<u8>)>) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                let mut stmt = conn
                    .prepare_cached("INSERT INTO records (token, envelope) VALUES (?1, ?2)")
                    .map_err(StoreError::backend("prepare record insert"))?;
                for (token, envelope) in &records {
                    stmt.execute(params![token, envelope])
                        .map_err(|e| match e {
                            rusqlite::Error::SqliteFailure(f, _)
                                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                            {
                                StoreError::Conflict("a record with this token exists")
                            }
                            other => StoreError::backend("insert record")(other),
                        })?;
                }
                Ok(())
            })
            .await
    }

    async fn get(&self, token: &str) -> StoreResult<Option<Vec<u8>>> {
        self.db.read(|conn| {
            conn.prepare_cached("SELECT envelope FROM records WHERE token = ?1")
                .and_then(|mut s| s.query_row([token], |r| r.get(0)).optional())
                .map_err(StoreError::backend("read record"))
        })
    }

    async fn delete(&self, token: &str) -> StoreResult<bool> {
        let token = token.to_owned();
        self.db
            .write(move |conn| {
                conn.execute("DELETE FROM records WHERE token = ?1", [token])
                    .map(|n| n > 0)
                    .map_err(StoreError::backend("delete record"))
            })
            .await
    }

    async fn load_keyring(&self) -> StoreResult<Vec<WrappedKey>> {
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT scope, version, wrapped, created_at FROM keyring ORDER BY scope, version")
                .map_err(StoreError::backend("read keyring"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(WrappedKey {
                        scope: r.get(0)?,
                        version: r.get(1)?,
                        wrapped: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })
                .map_err(StoreError::backend("read keyring"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("read keyring"))
        })
    }

    async fn add_key(&self, key: WrappedKey) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                let n = conn
                    .execute(
                        "INSERT OR IGNORE INTO keyring (scope, version, wrapped, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![key.scope, key.version, key.wrapped, key.created_at],
                    )
                    .map_err(StoreError::backend("add key"))?;
                if n == 0 {
                    return Err(StoreError::Conflict("that key version exists"));
                }
                Ok(())
            })
            .await
    }

    async fn get_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        self.db.read(|conn| {
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(StoreError::backend("read meta"))
        })
    }

    async fn put_meta(&self, name: &str, value: Vec<u8>) -> StoreResult<()> {
        let name = name.to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    params![name, value],
                )
                .map(|_| ())
                .map_err(StoreError::backend("write meta"))
            })
            .await
    }
}
