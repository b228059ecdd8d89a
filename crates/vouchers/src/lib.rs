//! Strongroom's voucher business, built on the vault.
//!
//! This crate handles tokens, not codes: it keeps the catalogue (retailers,
//! products and their denominations), the stock, imports and orders, all by
//! token. Codes go into the vault and come out of
//! it only through the vault's own, audited, calls.
//!
//! Every decision is checked against the caller's permissions and tenants
//! and written to the audit log, allowed or denied, before it takes effect.
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

pub mod archive;
pub mod catalog;
pub mod error;
mod guard;
pub mod import;
pub mod money;
pub mod orders;
pub mod stock;
pub mod supply;

pub use catalog::{Catalog, NewProduct};
pub use error::VoucherError;
pub use import::{ImportJob, ImportOptions, ImportReport, RowProblem};
pub use orders::{Delivery, LinkPage, LinkRefusal, NewOrder, OrderConfig, Orders, Placed};
