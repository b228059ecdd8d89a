//! The embedded default: one SQLite file per store in a data directory.

mod audit;
mod central;
mod engine;
mod fingerprints;
mod orders;
mod records;
mod supply;
mod watch;

use std::path::Path;
use std::sync::Arc;

pub use audit::SqliteAuditStore;
pub use central::SqliteCentralStore;
pub use engine::{Database, LOCK_WAIT, MAX_BATCH, Shadow};
pub use records::SqliteRecordStore;

use crate::StoreError;

/// File names of the four stores inside a data directory.
pub mod files {
    /// Tokens, metadata, principals.
    pub const CENTRAL: &str = "central.db";
    /// Sealed secrets and the wrapped keyring.
    pub const VAULT: &str = "vault.db";
    /// Sealed archived secrets.
    pub const ARCHIVE: &str = "archive.db";
    /// The chained audit log.
    pub const AUDIT: &str = "audit.db";
}

/// The four embedded stores of one data directory.
#[derive(Clone)]
pub struct SqliteStores {
    /// Central store.
    pub central: Arc<SqliteCentralStore>,
    /// Secret vault.
    pub vault: Arc<SqliteRecordStore>,
    /// Archive vault.
    pub archive: Arc<SqliteRecordStore>,
    /// Audit log.
    pub audit: Arc<SqliteAuditStore>,
}

impl SqliteStores {
    /// Opens (creating and migrating as needed) the four stores in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            central: Arc::new(SqliteCentralStore::open(&dir.join(files::CENTRAL))?),
            vault: Arc::new(SqliteRecordStore::open(&dir.join(files::VAULT))?),
            archive: Arc::new(SqliteRecordStore::open(&dir.join(files::ARCHIVE))?),
            audit: Arc::new(SqliteAuditStore::open(&dir.join(files::AUDIT))?),
        })
    }
}

impl SqliteStores {
    /// The stores as the vault sees them.
    pub fn store_set(&self) -> crate::StoreSet {
        crate::StoreSet {
            central: self.central.clone(),
            vault: self.vault.clone(),
            archive: self.archive.clone(),
            audit: self.audit.clone(),
        }
    }
}

/// The SQLite driver, for tests and tools that inspect stored rows.
pub use rusqlite;
