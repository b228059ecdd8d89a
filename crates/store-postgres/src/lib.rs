//! Strongroom's stores on PostgreSQL, the production backend.
//!
//! Behind the same ports as the embedded SQLite stores
//! (`strongroom_store::{CentralStore, RecordStore, AuditStore}`), each store
//! lives in its own schema and is reached through its own login role with the
//! least grants it needs (see [`schema`]). Several `strongroom serve`
//! processes may share one database: uniqueness is enforced by the database,
//! and the audit chain is extended under an advisory lock (see [`audit`]).
//!
//! TLS: connection URLs take libpq's options, including
//! `sslmode=verify-full` and `sslrootcert=FILE`; the driver uses rustls with
//! aws-lc-rs, like the rest of Strongroom.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod audit;
pub mod central;
pub mod coalesce;
pub mod engine;
mod orders;
pub mod records;
pub mod schema;
pub mod setup;
mod supply;
pub mod testing;
mod watch;

use std::str::FromStr;
use std::sync::Arc;

use sqlx::Row;
use sqlx::postgres::PgConnectOptions;
use strongroom_store::StoreSet;
use thiserror::Error;

pub use audit::PgAuditStore;
pub use central::PgCentralStore;
pub use engine::PgDatabase;
pub use records::PgRecordStore;
pub use schema::{DEFAULT_PREFIX, Names, Store};
pub use setup::{StoreLogin, migrate, setup, store_url};

/// Errors of setup, migration and connection. Messages never include a
/// password: URLs are not echoed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PgError {
    /// The database refused or failed. Holds the server's message, not the
    /// driver's error chain (which repeats it at every level).
    #[error("PostgreSQL: {0}")]
    Database(String),
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// A schema was migrated by a newer build.
    #[error("schema {schema} is at version {found}, newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// Its version.
        found: i32,
        /// This build's latest.
        supported: i32,
    },
    /// A schema is behind this build.
    #[error(
        "schema {schema} is at version {found}; this build needs {needed}: run `strongroom db migrate`"
    )]
    SchemaTooOld {
        /// The schema.
        schema: String,
        /// Its version.
        found: i32,
        /// This build's latest.
        needed: i32,
    },
    /// The operating system's random generator failed.
    #[error("could not generate a password")]
    Random,
}

impl From<sqlx::Error> for PgError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) => PgError::Database(d.message().to_owned()),
            _ => PgError::Database(e.to_string()),
        }
    }
}

/// Where each store connects: one URL per store (each with its own role).
/// The URLs may hold passwords, so `Debug` does not show them.
#[derive(Clone)]
pub struct PgUrls {
    /// Central store.
    pub central: String,
    /// Secret vault.
    pub vault: String,
    /// Archive vault.
    pub archive: String,
    /// Audit log.
    pub audit: String,
}

impl std::fmt::Debug for PgUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgUrls([redacted])")
    }
}

impl PgUrls {
    /// One base URL for every store, each logging in as its own role.
    pub fn from_base(base: &str, names: &Names) -> Result<Self, PgError> {
        let url = |s| store_url(base, &names.role(s), None);
        Ok(Self {
            central: url(Store::Central)?,
            vault: url(Store::Vault)?,
            archive: url(Store::Archive)?,
            audit: url(Store::Audit)?,
        })
    }

    fn url(&self, store: Store) -> &str {
        match store {
            Store::Central => &self.central,
            Store::Vault => &self.vault,
            Store::Archive => &self.archive,
            Store::Audit => &self.audit,
        }
    }
}

/// The four PostgreSQL stores of one vault.
#[derive(Clone)]
pub struct PgStores {
    /// Central store.
    pub central: Arc<PgCentralStore>,
    /// Secret vault.
    pub vault: Arc<PgRecordStore>,
    /// Archive vault.
    pub archive: Arc<PgRecordStore>,
    /// Audit log.
    pub audit: Arc<PgAuditStore>,
}

impl PgStores {
    /// Connects each store through its own URL and checks that every schema
    /// is at this build's version. Must run inside a Tokio runtime.
    pub async fn connect(
        urls: &PgUrls,
        names: &Names,
        max_connections: u32,
    ) -> Result<Self, PgError> {
        let mut dbs = Vec::new();
        for store in Store::ALL {
            let options = PgConnectOptions::from_str(urls.url(store))?;
            let db = PgDatabase::connect(options, max_connections);
            check_version(&db, names, store).await?;
            dbs.push(db);
        }
        let mut dbs = dbs.into_iter();
        let mut next = || {
            dbs.next()
                .ok_or_else(|| PgError::Config("store connection missing".into()))
        };
        Ok(Self {
            central: Arc::new(PgCentralStore::new(next()?, &names.schema(Store::Central))),
            vault: Arc::new(PgRecordStore::new(next()?, &names.schema(Store::Vault))),
            archive: Arc::new(PgRecordStore::new(next()?, &names.schema(Store::Archive))),
            audit: Arc::new(PgAuditStore::new(next()?, &names.schema(Store::Audit))),
        })
    }

    /// The stores as the vault sees them.
    pub fn store_set(&self) -> StoreSet {
        StoreSet {
            central: self.central.clone(),
            vault: self.vault.clone(),
            archive: self.archive.clone(),
            audit: self.audit.clone(),
        }
    }
}

/// Marks SQL text built here as safe to send. Only schema, table and role
/// names are ever spliced into statements, and those come from [`Names`],
/// which admits lower-case letters, digits and `_` only; every value (tokens,
/// tenants, bodies, passwords excepted: see `setup`) is a bound parameter.
pub(crate) fn sql(text: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text.to_owned())
}

async fn check_version(db: &PgDatabase, names: &Names, store: Store) -> Result<(), PgError> {
    let schema = names.schema(store);
    let found: i32 = sqlx::query(sql(&format!("SELECT version FROM {schema}.schema_version")))
        .fetch_one(db.pool())
        .await?
        .try_get(0)?;
    let latest = schema::latest_version(store);
    if found < latest {
        return Err(PgError::SchemaTooOld {
            schema,
            found,
            needed: latest,
        });
    }
    if found > latest {
        return Err(PgError::SchemaTooNew {
            schema,
            found,
            supported: latest,
        });
    }
    Ok(())
}
