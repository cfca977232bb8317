//! Parley: a self-hosted, multi-tenant platform that puts LLM bots on WhatsApp.
//!
//! How the crate is laid out, from the outside in:
//!
//! - [`cli`]: the `parley` command line (`serve`, `worker`, `migrate`, `openapi`, `tenant create`).
//!   `main.rs` only calls [`cli::run`].
//! - [`config`]: layered settings (embedded defaults, optional file, `PARLEY_*` env), validated once
//!   at start; [`keys`] loads or creates the master and JWT keys.
//! - [`startup`]: [`startup::Application`] binds the listener (port 0 in tests), runs the HTTP
//!   server and the queue workers, and shuts both down gracefully.
//! - [`http`]: routes, the JSON/query extractors, request ids and the OpenAPI document.
//!   [`http::api`] holds one file per management resource.
//! - [`error`]: the one error type, [`error::ApiError`], rendered as ChatBotKit's
//!   `{"message","code"}`.
//! - [`auth`]: passwords (argon2id), dashboard JWTs, API tokens, login throttling, and the
//!   [`auth::Auth`] extractor that resolves the caller's tenant from its credentials.
//! - [`store`]: database connection (SQLite or PostgreSQL), migrations, entities and
//!   [`store::TenantScope`], the single place where tenant data is filtered by tenant.
//! - [`jobs`]: the apalis queue (in the same database) and its workers.
//! - [`crypto`]: AES-256-GCM for tenant secrets at rest; [`ids`]: prefixed, time-ordered ids.
//! - [`sandbox`]: the built-in WhatsApp sandbox, where Parley plays Meta for the dashboard.
//! - [`telemetry`]: tracing subscriber setup.

pub mod auth;
pub mod channels;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod events;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod integrations;
pub mod jobs;
pub mod keys;
pub mod llm;
#[path = "../migrations/mod.rs"]
pub mod migrations;
pub mod rotate;
pub mod sandbox;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod time;
