//! A partial index over the messages still waiting for a turn.
//!
//! The engine looks for a contact's waiting messages before and after every turn. With only
//! `(integration_id, wa_id, id)` to go on, that walked every message the contact ever sent; the
//! waiting ones are a handful at most, and this index holds only them. The queries name the
//! state as a literal (`state = 'queued'`), which is what lets both databases use it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX inbound_message_waiting_idx ON inbound_message \
                 (integration_id, wa_id, id) WHERE state = 'queued'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX inbound_message_waiting_idx")
            .await?;
        Ok(())
    }
}
