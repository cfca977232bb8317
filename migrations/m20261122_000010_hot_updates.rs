//! Lets the engine's most frequent updates rewrite a row in place.
//!
//! Every turn moves its `turn` row through three states and takes and lets go of its contact's
//! lane. PostgreSQL can keep such an update on the row's own page, without a new entry in any
//! index ("HOT"), only when no indexed column changes and the page has room. Two indexes no
//! query uses stood in the way: `turn (integration_id, wa_id, state)` and
//! `contact_lane (locked_until)`; the engine finds both rows by id, and the sweep finds
//! abandoned work through the waiting messages. On PostgreSQL the two tables also leave 30 %
//! of each page free for the new versions. SQLite rewrites rows in place either way; it
//! only loses the two unused indexes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX turn_integration_id_wa_id_state_idx")
            .await?;
        db.execute_unprepared("DROP INDEX contact_lane_locked_until_idx")
            .await?;
        if db.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE turn SET (fillfactor = 70); \
                 ALTER TABLE contact_lane SET (fillfactor = 70)",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE turn RESET (fillfactor); ALTER TABLE contact_lane RESET (fillfactor)",
            )
            .await?;
        }
        db.execute_unprepared(
            "CREATE INDEX turn_integration_id_wa_id_state_idx ON turn (integration_id, wa_id, state)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX contact_lane_locked_until_idx ON contact_lane (locked_until)",
        )
        .await?;
        Ok(())
    }
}
