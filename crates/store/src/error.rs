use thiserror::Error;

/// Errors from a store. Messages name the operation, never a stored value.
/// Cloneable: a statement run for many callers at once fails for each.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (I/O, disk full, corrupt file, lost connection).
    #[error("storage backend error during {op}: {detail}")]
    Backend {
        /// What the store was doing.
        op: &'static str,
        /// The backend's message (SQL text at most; values are always bound).
        detail: String,
    },
    /// A uniqueness rule was violated (an existing client id, key version …).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The store's schema is newer than this build understands.
    #[error("store schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// Version found in the file.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// Another process (or another open in this one) holds the store for
    /// writing. Its in-memory index would not see this one's writes.
    #[error("{path} is in use by another Strongroom process (one server per data directory)")]
    Locked {
        /// The database file.
        path: String,
    },
    /// The store has been shut down.
    #[error("store is closed")]
    Closed,
    /// A stored row could not be decoded.
    #[error("stored data is malformed: {0}")]
    Malformed(&'static str),
}

impl StoreError {
    pub(crate) fn backend(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |e| StoreError::Backend {
            op,
            detail: e.to_string(),
        }
    }
}
