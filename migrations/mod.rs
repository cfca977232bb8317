//! Parley's schema migrations, one file per migration, append-only: never edit one that has been
//! released; add a new one. Each has a `down` so a release can be rolled back.
//!
//! The same migrations run on SQLite and PostgreSQL, so they use sea-query's schema builder
//! rather than raw SQL. The job queue (apalis) keeps its own tables and migrations; they are
//! applied after these by [`crate::store::Store::migrate`].

use sea_orm_migration::prelude::*;

mod m20261122_000001_create_tenancy;
mod m20261122_000002_create_management;
mod m20261122_000003_create_ingest;
mod m20261122_000004_create_engine;
mod m20261122_000005_create_files;
mod m20261122_000006_add_turn_tool_rounds;
mod m20261122_000007_create_sandbox;
mod m20261122_000008_index_hot_paths;
mod m20261122_000009_index_waiting_messages;
mod m20261122_000010_hot_updates;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_tenancy::Migration),
            Box::new(m20261122_000002_create_management::Migration),
            Box::new(m20261122_000003_create_ingest::Migration),
            Box::new(m20261122_000004_create_engine::Migration),
            Box::new(m20261122_000005_create_files::Migration),
            Box::new(m20261122_000006_add_turn_tool_rounds::Migration),
            Box::new(m20261122_000007_create_sandbox::Migration),
            Box::new(m20261122_000008_index_hot_paths::Migration),
            Box::new(m20261122_000009_index_waiting_messages::Migration),
            Box::new(m20261122_000010_hot_updates::Migration),
        ]
    }
}
