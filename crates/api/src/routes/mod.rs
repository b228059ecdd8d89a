//! One module per path group; handlers are thin: extract, authenticate,
//! call the vault, map the result.

pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod keys;
pub mod login;
pub mod principals;
pub mod secrets;
pub mod sys;
