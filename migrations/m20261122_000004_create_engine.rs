//! The conversation engine: per-contact lanes (one turn at a time per contact), turns, and the
//! outbox fields on messages.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ContactLane {
    Table,
    Id,
    TenantId,
    IntegrationId,
    WaId,
    LockedBy,
    LockedUntil,
}

#[derive(DeriveIden)]
enum Turn {
    Table,
    Id,
    TenantId,
    IntegrationId,
    WaId,
    ConversationId,
    State,
    Error,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum InboundMessage {
    Table,
    TurnId,
}

#[derive(DeriveIden)]
enum Message {
    Table,
    TurnId,
    Part,
    InboundId,
    InputTokens,
    OutputTokens,
}

#[derive(DeriveIden)]
enum WhatsappIntegration {
    Table,
    ResetCommands,
}

#[derive(DeriveIden)]
enum Conversation {
    Table,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One row per contact of an integration; a worker holds the lease while it runs the
        // contact's turns, so a contact's messages are handled one turn at a time, in order,
        // across any number of workers and replicas.
        m.create_table(
            Table::create()
                .table(ContactLane::Table)
                // integration id + ':' + wa_id
                .col(
                    ColumnDef::new(ContactLane::Id)
                        .string_len(128)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(ContactLane::TenantId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ContactLane::IntegrationId)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(ContactLane::WaId).string_len(32).not_null())
                .col(ColumnDef::new(ContactLane::LockedBy).string_len(64).null())
                .col(
                    ColumnDef::new(ContactLane::LockedUntil)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("contact_lane_locked_until_idx")
                .table(ContactLane::Table)
                .col(ContactLane::LockedUntil)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Turn::Table)
                .col(
                    ColumnDef::new(Turn::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Turn::TenantId).string_len(64).not_null())
                .col(
                    ColumnDef::new(Turn::IntegrationId)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(Turn::WaId).string_len(32).not_null())
                .col(ColumnDef::new(Turn::ConversationId).string_len(64).null())
                // started → prompted → replied → done, or failed.
                .col(ColumnDef::new(Turn::State).string_len(16).not_null())
                .col(ColumnDef::new(Turn::Error).text().null())
                .col(ColumnDef::new(Turn::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(Turn::UpdatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("turn_integration_id_wa_id_state_idx")
                .table(Turn::Table)
                .col(Turn::IntegrationId)
                .col(Turn::WaId)
                .col(Turn::State)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("turn_tenant_id_idx")
                .table(Turn::Table)
                .col(Turn::TenantId)
                .to_owned(),
        )
        .await?;

        m.alter_table(
            Table::alter()
                .table(InboundMessage::Table)
                .add_column(ColumnDef::new(InboundMessage::TurnId).string_len(64).null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("inbound_message_turn_id_idx")
                .table(InboundMessage::Table)
                .col(InboundMessage::TurnId)
                .to_owned(),
        )
        .await?;

        // SQLite adds one column per ALTER TABLE.
        for col in [
            ColumnDef::new(Message::TurnId)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(Message::Part).integer().null().to_owned(),
            ColumnDef::new(Message::InboundId)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(Message::InputTokens)
                .integer()
                .null()
                .to_owned(),
            ColumnDef::new(Message::OutputTokens)
                .integer()
                .null()
                .to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Message::Table)
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        // The outbox's idempotency key: one row per part of a turn's reply, and one user
        // message per inbound message, however often a turn is retried.
        m.create_index(
            Index::create()
                .name("message_turn_id_part_key")
                .table(Message::Table)
                .col(Message::TurnId)
                .col(Message::Part)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("message_inbound_id_key")
                .table(Message::Table)
                .col(Message::InboundId)
                .unique()
                .to_owned(),
        )
        .await?;

        // Extra commands (besides /reset, /restart and /new) that end a session, one per line.
        m.alter_table(
            Table::alter()
                .table(WhatsappIntegration::Table)
                .add_column(
                    ColumnDef::new(WhatsappIntegration::ResetCommands)
                        .text()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Conversation::Table)
                .add_column(ColumnDef::new(Conversation::ExpiresAt).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("conversation_expires_at_idx")
                .table(Conversation::Table)
                .col(Conversation::ExpiresAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("conversation_expires_at_idx")
                .table(Conversation::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Conversation::Table)
                .drop_column(Conversation::ExpiresAt)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(WhatsappIntegration::Table)
                .drop_column(WhatsappIntegration::ResetCommands)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("message_inbound_id_key")
                .table(Message::Table)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("message_turn_id_part_key")
                .table(Message::Table)
                .to_owned(),
        )
        .await?;
        for col in [
            Message::OutputTokens,
            Message::InputTokens,
            Message::InboundId,
            Message::Part,
            Message::TurnId,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Message::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        m.drop_index(
            Index::drop()
                .name("inbound_message_turn_id_idx")
                .table(InboundMessage::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(InboundMessage::Table)
                .drop_column(InboundMessage::TurnId)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(Turn::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(ContactLane::Table).to_owned())
            .await
    }
}
