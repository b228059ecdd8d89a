//! The `strongroom` program: command-line interface and server start-up.
//! (A library as well as a binary so the integration tests can start a real
//! server in-process.)
#![forbid(unsafe_code)]
#![allow(missing_docs)]
// The binary edge: `anyhow` errors end here and are printed for a person.

pub mod app;
pub mod bootstrap;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod datadir;
pub mod devtls;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod logging;
pub mod session;
pub mod storage;
pub mod suppliers;
