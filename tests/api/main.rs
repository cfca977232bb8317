//! Parley's integration tests: one binary, one file per area. See `helpers.rs` for the harness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod errors;
mod health;
mod helpers;
mod process;
mod storage;
mod tenancy;
mod tokens;
mod unauthenticated;
