//! Watching the vault: detectors on the live audit stream, alerts, and
//! containment of a principal that looks stolen.
//!
//! # How it fits
//! The vault shows every audit record, once durable, to a [`LiveTap`]
//! (`strongroom_audit`). [`Watch`] is that tap: it hands records to one
//! background task over a bounded channel and returns at once, so a reveal
//! never waits for a detector. The task runs the [`detect::Detectors`],
//! and for each finding stores an alert, audits it, logs it, sends it to the
//! webhook, and — at or above the configured severity — freezes the
//! principal: every request it makes is refused (`403
//! auth.principal_frozen`) on every node until a security officer lifts the
//! freeze.
//!
//! # What it cannot see
//! Each node judges the records it writes itself. Behind a load balancer
//! spreading a principal over `n` nodes, each sees about `1/n` of its
//! traffic; baselines are per node too, so the `k`-sigma test still holds,
//! but a hard cap should be divided by `n`. Detector state is memory only: a
//! restarted node learns its baselines again (the hard cap applies
//! meanwhile).
//!
//! If the channel is full (the detectors fell behind), records are counted
//! as missed and a `watch_overloaded` alert says so: missing the stream
//! silently would be the worst outcome. A failed audit append raises
//! `audit_store_failure` (PCI DSS 10.7.2); the operation it recorded has
//! already been refused, as every operation is while the log cannot be
//! written.
//!
//! [`LiveTap`]: strongroom_audit::LiveTap
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

pub mod config;
pub mod detect;
pub mod forward;
mod freezes;
mod service;
pub mod tls;
pub mod webhook;

use serde::{Deserialize, Serialize};

pub use config::WatchConfig;
pub use freezes::{FreezeOutcome, Freezes};
pub use service::{Watch, WatchStats, alert_json};

/// The actor id of records the watch writes itself (alerts, freezes).
pub const WATCH_ACTOR: &str = "watch";

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Worth a look today.
    Medium,
    /// Worth a look now.
    High,
    /// Likely theft in progress.
    Critical,
}

impl Severity {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A principal, by id: the only kind that can be frozen.
    Principal(String),
    /// An unauthenticated client, by network address.
    Address(String),
    /// An account named in failed logins (whoever tried it).
    Account(String),
    /// A tenant as a whole.
    Tenant(String),
    /// A storefront's customer reference in a tenant.
    Customer {
        /// Tenant.
        tenant: String,
        /// The storefront's reference.
        reference: String,
    },
    /// A part of Strongroom: the audit store, the watch itself, a forwarder.
    Component(String),
}

impl Subject {
    /// The stored form: a principal's id as is, others with a prefix.
    pub fn key(&self) -> String {
        match self {
            Subject::Principal(id) => id.clone(),
            Subject::Address(a) => format!("addr:{a}"),
            Subject::Account(a) => format!("account:{a}"),
            Subject::Tenant(t) => format!("tenant:{t}"),
            Subject::Customer { tenant, reference } => format!("customer:{tenant}/{reference}"),
            Subject::Component(c) => format!("component:{c}"),
        }
    }

    /// For a sentence.
    pub fn describe(&self) -> String {
        match self {
            Subject::Principal(id) => format!("principal {id}"),
            Subject::Address(a) => format!("address {a}"),
            Subject::Account(a) => format!("account '{a}'"),
            Subject::Tenant(t) => format!("tenant {t}"),
            Subject::Customer { tenant, reference } => {
                format!("customer '{reference}' of {tenant}")
            }
            Subject::Component(c) => c.replace('_', " "),
        }
    }

    /// The principal, if the subject is one.
    pub fn principal(&self) -> Option<&str> {
        match self {
            Subject::Principal(id) => Some(id),
            _ => None,
        }
    }
}

/// Errors of the watch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The store could not be read or written.
    #[error("store: {0}")]
    Store(#[from] strongroom_store::StoreError),
    /// The configuration cannot work.
    #[error("watch configuration: {0}")]
    Config(String),
}
