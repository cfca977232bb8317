//! Indexes for the engine's hot lookups, found by reading its query plans under load.
//!
//! Finding a contact's open conversation filters on the integration and the contact and takes
//! the newest: with only `(integration_id, wa_id)` to go on, SQLite preferred walking the
//! tenant's index in id order and scanned every conversation of the tenant for a new contact.
//! `(integration_id, wa_id, id)` answers the filter and the order at once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Conversation {
    Table,
    Id,
    IntegrationId,
    WaId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("conversation_integration_id_wa_id_id_idx")
                .table(Conversation::Table)
                .col(Conversation::IntegrationId)
                .col(Conversation::WaId)
                .col(Conversation::Id)
                .to_owned(),
        )
        .await?;
        // The new index starts with the same columns, so the old one only costs writes.
        m.drop_index(
            Index::drop()
                .name("conversation_integration_id_wa_id_idx")
                .table(Conversation::Table)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("conversation_integration_id_wa_id_idx")
                .table(Conversation::Table)
                .col(Conversation::IntegrationId)
                .col(Conversation::WaId)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("conversation_integration_id_wa_id_id_idx")
                .table(Conversation::Table)
                .to_owned(),
        )
        .await
    }
}
