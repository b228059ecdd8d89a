//! Persistence for Strongroom: the storage ports and their adapters.
//!
//! Like HashiCorp Vault's physical backends, these stores are *untrusted* and
//! have no rules about content. The record stores keep opaque sealed bytes; the
//! central store keeps tokens and metadata; the audit store keeps chained
//! records whose MACs it cannot compute itself. Integrity, policy and
//! encryption all live above this crate, in `strongroom-vault`.
//!
//! Four stores, four files (or schemas), four sets of credentials:
//! [`CentralStore`] (tokens, metadata, principals), [`RecordStore`] for the
//! secret vault and, separately, the archive vault, and [`AuditStore`].
#![forbid(unsafe_code)]
// Tests may panic: a failed unwrap is a failed test, which is the point.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod error;
mod orders;
mod ports;
pub mod sqlite;
mod supply;
mod watch;

pub use error::StoreError;
pub use orders::*;
pub use ports::*;
pub use supply::*;
pub use watch::*;
