//! Supplier connectors over HTTPS.
//!
//! Each connector turns one supplier's API into
//! [`strongroom_suppliers::SupplierConnector`]: [`runa`] (Runa's v2 order
//! API), [`tango`] (Tango Card's RaaS v2) and [`rest`] (a retailer's own
//! simple API, described in configuration). The call discipline (pace,
//! retries, circuit) and the buying-once rule live above them, in
//! `strongroom-suppliers`; here every answer is read for what it means,
//! including errors that arrive in an HTTP 200.
//!
//! Credentials come from a [`CredentialSource`] (the vault) at the moment
//! they are needed and are held in zeroizing memory; codes, PINs and claim
//! URLs likewise. None of them appears in an error, a log line or a
//! `Debug` output.
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

pub mod money;
pub mod rest;
pub mod runa;
pub mod tango;
pub mod transport;

pub use strongroom_suppliers::CredentialSource;
pub use transport::{SetupError, Transport, TransportSettings};
