//! Buying codes from suppliers' APIs, safely.
//!
//! Suppliers (Tango Card, Runa, retailers' own APIs) sell codes worth money,
//! so the parts here are about never buying twice and never hammering a
//! supplier that is failing:
//!
//! * [`error`]: what went wrong, classified: transient (retry), rejected
//!   (a business answer, even one hidden in an HTTP 200: never retried),
//!   ambiguous (the order may have been placed: look it up by its client
//!   reference before deciding), or the circuit open.
//! * [`reference`]: the client reference every order carries, derived from
//!   our own order or replenishment id, so a retry is the same order to the
//!   supplier.
//! * [`backoff`]: exponential back-off with full jitter, honouring a
//!   supplier's `Retry-After`.
//! * [`pace`]: per-supplier request pacing (e.g. one request a second) and a
//!   cap on calls in flight.
//! * [`breaker`]: a circuit breaker that stops calling a failing supplier
//!   and reports it, then lets one trial call through after a cool-down.
//! * [`resilient`]: the above around one supplier call.
//! * [`connector`]: what every supplier connector offers.
//! * [`buy`]: placing an order once, looking it up by reference after an
//!   ambiguous failure instead of buying again.
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

pub mod backoff;
pub mod breaker;
pub mod buy;
pub mod connector;
pub mod error;
pub mod pace;
pub mod reference;
pub mod resilient;

pub use buy::buy_once;
pub use connector::{
    Balance, CatalogueItem, CollectedCode, CredentialSource, Denominations, Money, OrderStatus,
    PlacedOrder, PurchaseRequest, SupplierConnector,
};
pub use error::SupplierError;
pub use reference::{Purpose, client_reference};
pub use resilient::{Limits, Resilient};
