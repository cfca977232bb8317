//! Parley's integration tests: one binary, one file per area. See `helpers.rs` for the harness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod bots;
mod chaos;
mod crash;
mod dashboard;
mod engine;
mod errors;
mod health;
mod helpers;
mod media;
mod paging;
mod process;
mod providers;
mod readmodels;
mod sandbox;
mod sdk;
mod secrets;
mod storage;
mod tenancy;
mod tokens;
mod tools;
mod unauthenticated;
mod webhooks;
mod whatsapp;
