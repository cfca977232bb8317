//! Parley's integration tests: one binary, one file per area. See `helpers.rs` for the harness.

mod auth;
mod errors;
mod health;
mod helpers;
mod process;
mod storage;
mod tenancy;
mod tokens;
mod unauthenticated;
