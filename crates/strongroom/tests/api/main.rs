//! End-to-end tests through the real HTTPS API (and, where the process
//! matters, the real binary). One test binary, so it links once.

// Tests may panic: a failed unwrap is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod harness;

mod audit_chain;
mod audit_search;
mod auth;
mod browser;
mod cards;
mod catalog;
mod cli;
mod conformance;
mod connections;
mod crash;
mod custom_roles;
mod forgery;
mod forward;
mod imports;
mod integrity;
mod lambda;
mod leaks;
mod matrix;
mod metrics;
mod multinode;
mod orders;
mod people;
mod published_api;
mod ratelimits;
mod relay;
mod risk;
mod roles;
mod seal;
mod secrets;
mod suppliers;
mod watch;
