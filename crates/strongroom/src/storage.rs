//! Which stores a server runs on: the embedded SQLite files, or PostgreSQL.

use anyhow::{Context, Result};
use strongroom_store::StoreSet;
use strongroom_store::sqlite::SqliteStores;
use strongroom_store_postgres::{Names, PgStores, PgUrls};

use crate::datadir::DataDir;

/// The storage backend.
#[derive(Debug, Clone, Default)]
pub enum Backend {
    /// SQLite files in the data directory (the default; nothing to install).
    #[default]
    Sqlite,
    /// PostgreSQL: one schema and login role per store.
    Postgres(PostgresSettings),
}

/// How to reach the PostgreSQL stores.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// One URL per store.
    pub urls: PgUrls,
    /// Prefix of schema and role names (as given to `db setup`).
    pub prefix: String,
    /// Connections per store and node.
    pub max_connections: u32,
}

/// The opened stores.
pub struct OpenStores {
    /// As the vault sees them.
    pub set: StoreSet,
    /// The SQLite files, when that is the backend (tests inspect them).
    pub sqlite: Option<SqliteStores>,
}

/// Opens the stores of `backend` (SQLite ones in `dir`).
pub async fn open(backend: &Backend, dir: &DataDir) -> Result<OpenStores> {
    match backend {
        Backend::Sqlite => {
            let stores = SqliteStores::open(&dir.root)
                .with_context(|| format!("could not open the stores in {}", dir.root.display()))?;
            Ok(OpenStores {
                set: stores.store_set(),
                sqlite: Some(stores),
            })
        }
        Backend::Postgres(pg) => {
            let names = Names::new(&pg.prefix)?;
            let stores = PgStores::connect(&pg.urls, &names, pg.max_connections)
                .await
                .context("could not connect to the PostgreSQL stores")?;
            Ok(OpenStores {
                set: stores.store_set(),
                sqlite: None,
            })
        }
    }
}
