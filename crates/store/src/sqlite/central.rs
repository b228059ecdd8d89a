//! The central store in SQLite: tokens, metadata and principals.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::engine::{Database, Migrations};
use crate::{
    CentralStore, InsertOutcome, PrincipalRecord, SecretRecord, SecretState, StoreError,
    StoreResult,
};

// The fingerprint is an HMAC under the tenant's own key over class and value,
// so it is unique across tenants and classes by itself, and the index needs no
// tenant or class columns (half the size, half the pages to write).
// `fp_dup` is 0 for a fingerprint that must be unique in (tenant, class), and
// a random number for a duplicate the caller explicitly allowed, so a single
// unique index both enforces uniqueness and serves fingerprint look-ups.
// A deleted record's fingerprint is set to NULL, which frees it.
// Rows are appended in rowid order and found through the unique token index:
// keyed by the random token itself, every insert would land on its own page
// and each commit would rewrite thousands of pages.
const MIGRATIONS: Migrations = &["CREATE TABLE secrets (
         token TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         class TEXT NOT NULL,
         key_version INTEGER NOT NULL,
         fingerprint BLOB,
         fp_dup INTEGER NOT NULL,
         metadata TEXT,
         created_at INTEGER NOT NULL,
         window_closes_at INTEGER NOT NULL,
         created_by TEXT NOT NULL,
         state TEXT NOT NULL
     );
     CREATE UNIQUE INDEX secrets_fingerprint ON secrets (fingerprint, fp_dup);
     CREATE TABLE principals (
         id TEXT PRIMARY KEY,
         client_id TEXT NOT NULL UNIQUE,
         name TEXT NOT NULL UNIQUE,
         roles TEXT NOT NULL,
         tenants TEXT NOT NULL,
         secret_hash TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         disabled INTEGER NOT NULL DEFAULT 0,
         created_by TEXT NOT NULL,
         pending_approval INTEGER NOT NULL
     )"];

// Column lists as macros, so every statement is a literal built at compile time.
macro_rules! secret_columns {
    () => {
        "token, tenant, class, key_version, fingerprint, fp_dup, metadata, created_at, window_closes_at, created_by, state"
    };
}

/// A [`CentralStore`] in one SQLite file.
#[derive(Debug)]
pub struct SqliteCentralStore {
    db: Arc<Database>,
}

impl SqliteCentralStore {
    /// Opens or creates the file.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Ok(Self {
            db: Database::open(path, MIGRATIONS)?,
        })
    }

    /// The underlying database (for tests that inspect stored rows).
    pub fn database(&self) -> &Database {
        &self.db
    }
}

fn secret_from_row(r: &Row<'_>) -> rusqlite::Result<(SecretRecord, String)> {
    let fingerprint: Option<Vec<u8>> = r.get(4)?;
    let fp_dup: i64 = r.get(5)?;
    let state: String = r.get(10)?;
    Ok((
        SecretRecord {
            token: r.get(0)?,
            tenant: r.get(1)?,
            class: r.get(2)?,
            key_version: r.get(3)?,
            fingerprint: fingerprint.and_then(|f| f.try_into().ok()),
            fingerprint_unique: fp_dup == 0,
            metadata: r.get(6)?,
            created_at: r.get(7)?,
            window_closes_at: r.get(8)?,
            created_by: r.get(9)?,
            state: SecretState::Active,
        },
        state,
    ))
}

fn find_fingerprint(
    conn: &Connection,
    tenant: &str,
    class: &str,
    fingerprint: &[u8],
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT token FROM secrets WHERE tenant = ?1 AND class = ?2 AND fingerprint = ?3 \
         ORDER BY fp_dup LIMIT 1",
    )?
    .query_row(params![tenant, class, fingerprint], |r| r.get(0))
    .optional()
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn join_list(items: &[String]) -> String {
    items.join(",")
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn principal_from_row(r: &Row<'_>) -> rusqlite::Result<PrincipalRecord> {
    let roles: String = r.get(3)?;
    let tenants: String = r.get(4)?;
    Ok(PrincipalRecord {
        id: r.get(0)?,
        client_id: r.get(1)?,
        name: r.get(2)?,
        roles: split_list(&roles),
        tenants: split_list(&tenants),
        secret_hash: r.get(5)?,
        created_at: r.get(6)?,
        disabled: r.get::<_, i64>(7)? != 0,
        created_by: r.get(8)?,
        pending_approval: r.get::<_, i64>(9)? != 0,
    })
}

macro_rules! principal_columns {
    () => {
        "id, client_id, name, roles, tenants, secret_hash, created_at, disabled, created_by, pending_approval"
    };
}

#[async_trait]
impl CentralStore for SqliteCentralStore {
    async fn find_fingerprints(
        &self,
        tenant: &str,
        class: &str,
        fingerprints: &[[u8; 32]],
    ) -> StoreResult<Vec<Option<String>>> {
        self.db.read(|conn| {
            fingerprints
                .iter()
                .map(|fp| find_fingerprint(conn, tenant, class, fp))
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("find fingerprints"))
        })
    }

    async fn insert_secrets(&self, records: Vec<SecretRecord>) -> StoreResult<Vec<InsertOutcome>> {
        self.db
            .write(move |conn| {
                let sql = concat!(
                    "INSERT INTO secrets (",
                    secret_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?6 THEN 0 ELSE abs(random()) END, ?7, ?8, ?9, ?10, ?11)"
                );
                let mut stmt = conn
                    .prepare_cached(sql)
                    .map_err(StoreError::backend("prepare secret insert"))?;
                let mut outcomes = Vec::with_capacity(records.len());
                for rec in &records {
                    let inserted = stmt.execute(params![
                        rec.token,
                        rec.tenant,
                        rec.class,
                        rec.key_version,
                        rec.fingerprint.as_ref().map(|f| f.as_slice()),
                        rec.fingerprint_unique,
                        rec.metadata,
                        rec.created_at,
                        rec.window_closes_at,
                        rec.created_by,
                        rec.state.as_str(),
                    ]);
                    match inserted {
                        Ok(_) => outcomes.push(InsertOutcome::Inserted),
                        Err(e) if is_constraint(&e) => {
                            let existing = match &rec.fingerprint {
                                Some(fp) => find_fingerprint(conn, &rec.tenant, &rec.class, fp)
                                    .map_err(StoreError::backend("find duplicate"))?,
                                None => None,
                            };
                            match existing {
                                Some(existing) => {
                                    outcomes.push(InsertOutcome::Duplicate { existing })
                                }
                                None => return Err(StoreError::Conflict("token already exists")),
                            }
                        }
                        Err(e) => return Err(StoreError::backend("insert secret")(e)),
                    }
                }
                Ok(outcomes)
            })
            .await
    }

    async fn get_secret(&self, token: &str) -> StoreResult<Option<SecretRecord>> {
        let row = self.db.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                secret_columns!(),
                " FROM secrets WHERE token = ?1"
            ))
            .and_then(|mut s| s.query_row([token], secret_from_row).optional())
            .map_err(StoreError::backend("read secret"))
        })?;
        match row {
            None => Ok(None),
            Some((mut rec, state)) => {
                rec.state = SecretState::parse(&state)?;
                Ok(Some(rec))
            }
        }
    }

    async fn set_window(&self, token: &str, closes_at: i64) -> StoreResult<bool> {
        let token = token.to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE secrets SET window_closes_at = ?2 WHERE token = ?1 AND state = 'active'",
                    params![token, closes_at],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("set reveal window"))
            })
            .await
    }

    async fn mark_deleted(&self, token: &str) -> StoreResult<bool> {
        let token = token.to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE secrets SET state = 'deleted', fingerprint = NULL, metadata = NULL \
                     WHERE token = ?1 AND state = 'active'",
                    [token],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("delete secret"))
            })
            .await
    }

    async fn insert_principal(&self, p: PrincipalRecord) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                conn.execute(
                    concat!(
                        "INSERT INTO principals (",
                        principal_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                    ),
                    params![
                        p.id,
                        p.client_id,
                        p.name,
                        join_list(&p.roles),
                        join_list(&p.tenants),
                        p.secret_hash,
                        p.created_at,
                        p.disabled,
                        p.created_by,
                        p.pending_approval
                    ],
                )
                .map(|_| ())
                .map_err(|e| {
                    if is_constraint(&e) {
                        StoreError::Conflict("a principal with that name exists")
                    } else {
                        StoreError::backend("insert principal")(e)
                    }
                })
            })
            .await
    }

    async fn principal_by_client_id(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<PrincipalRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                principal_columns!(),
                " FROM principals WHERE client_id = ?1"
            ))
            .and_then(|mut s| s.query_row([client_id], principal_from_row).optional())
            .map_err(StoreError::backend("read principal"))
        })
    }

    async fn principal_by_id(&self, id: &str) -> StoreResult<Option<PrincipalRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                principal_columns!(),
                " FROM principals WHERE id = ?1"
            ))
            .and_then(|mut s| s.query_row([id], principal_from_row).optional())
            .map_err(StoreError::backend("read principal"))
        })
    }

    async fn list_principals(&self) -> StoreResult<Vec<PrincipalRecord>> {
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare(concat!(
                    "SELECT ",
                    principal_columns!(),
                    " FROM principals ORDER BY created_at, name"
                ))
                .map_err(StoreError::backend("list principals"))?;
            let rows = stmt
                .query_map([], principal_from_row)
                .map_err(StoreError::backend("list principals"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("list principals"))
        })
    }

    async fn approve_principal(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE principals SET pending_approval = 0 \
                     WHERE id = ?1 AND pending_approval = 1 AND disabled = 0",
                    [id],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("approve principal"))
            })
            .await
    }

    async fn disable_principal(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.db
            .write(move |conn| {
                conn.execute("UPDATE principals SET disabled = 1 WHERE id = ?1", [id])
                    .map(|n| n > 0)
                    .map_err(StoreError::backend("disable principal"))
            })
            .await
    }
}
