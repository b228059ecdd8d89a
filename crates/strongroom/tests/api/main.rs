//! End-to-end tests through the real HTTPS API (and, where the process
//! matters, the real binary). One test binary, so it links once.

mod harness;

mod audit_chain;
mod auth;
mod cli;
mod integrity;
mod leaks;
mod roles;
mod seal;
mod secrets;
