//! The built-in WhatsApp sandbox: a flag on the integration that Parley itself plays Meta for,
//! and what the sandbox's phone shows (the webhooks it sent and the Cloud API bodies it got).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WhatsappIntegration {
    Table,
    Sandbox,
}

#[derive(DeriveIden)]
enum SandboxMessage {
    Table,
    Id,
    TenantId,
    IntegrationId,
    Direction,
    Wamid,
    Body,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Sandbox integrations send through Parley's own Graph endpoint instead of Meta's.
        m.alter_table(
            Table::alter()
                .table(WhatsappIntegration::Table)
                .add_column(
                    ColumnDef::new(WhatsappIntegration::Sandbox)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .to_owned(),
        )
        .await?;
        // The sandbox phone's chat: `in` rows are what the phone sent (the webhook's message
        // object), `out` rows what the bot sent (the Cloud API body the Graph endpoint got).
        m.create_table(
            Table::create()
                .table(SandboxMessage::Table)
                .col(
                    ColumnDef::new(SandboxMessage::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(SandboxMessage::TenantId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SandboxMessage::IntegrationId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SandboxMessage::Direction)
                        .string_len(8)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SandboxMessage::Wamid)
                        .string_len(128)
                        .not_null(),
                )
                .col(ColumnDef::new(SandboxMessage::Body).json().not_null())
                // in: `sent`, then `read` once the bot marked it read; out: `received`.
                .col(
                    ColumnDef::new(SandboxMessage::Status)
                        .string_len(16)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SandboxMessage::CreatedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SandboxMessage::UpdatedAt)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        // The phone reads its chat in id order; mark-read finds a message by wamid.
        m.create_index(
            Index::create()
                .name("ix_sandbox_message_chat")
                .table(SandboxMessage::Table)
                .col(SandboxMessage::TenantId)
                .col(SandboxMessage::IntegrationId)
                .col(SandboxMessage::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_sandbox_message_wamid")
                .table(SandboxMessage::Table)
                .col(SandboxMessage::Wamid)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SandboxMessage::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(WhatsappIntegration::Table)
                .drop_column(WhatsappIntegration::Sandbox)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
