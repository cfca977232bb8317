//! Webhook ingestion: every inbound WhatsApp message as received (the durable record that is
//! acknowledged to Meta), and every delivery status of our outbound messages.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum InboundMessage {
    Table,
    Id,
    TenantId,
    IntegrationId,
    Wamid,
    WaId,
    Kind,
    Payload,
    State,
    SentAt,
    ReceivedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MessageStatus {
    Table,
    Id,
    TenantId,
    IntegrationId,
    Wamid,
    Status,
    ErrorCode,
    ErrorTitle,
    Payload,
    StatusAt,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(InboundMessage::Table)
                .col(
                    ColumnDef::new(InboundMessage::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(InboundMessage::TenantId)
                        .string_len(64)
                        .not_null(),
                )
                // No foreign key: deleting an integration keeps what it received.
                .col(
                    ColumnDef::new(InboundMessage::IntegrationId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(InboundMessage::Wamid)
                        .string_len(160)
                        .not_null(),
                )
                // The sender's WhatsApp id.
                .col(
                    ColumnDef::new(InboundMessage::WaId)
                        .string_len(32)
                        .not_null(),
                )
                // Meta's message `type`.
                .col(
                    ColumnDef::new(InboundMessage::Kind)
                        .string_len(32)
                        .not_null(),
                )
                // {"message": <as received>, "contact": <profile>, "metadata": <value metadata>}
                .col(ColumnDef::new(InboundMessage::Payload).text().not_null())
                // queued → processed | failed; or ignored (sender not in allowFrom).
                .col(
                    ColumnDef::new(InboundMessage::State)
                        .string_len(16)
                        .not_null(),
                )
                // Meta's timestamp of the message, seconds.
                .col(
                    ColumnDef::new(InboundMessage::SentAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(InboundMessage::ReceivedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(InboundMessage::UpdatedAt)
                        .big_integer()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(InboundMessage::Table, InboundMessage::TenantId)
                        .to(Tenant::Table, Tenant::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // Dedup: Meta redelivers for days; a wamid is stored once per integration.
        m.create_index(
            Index::create()
                .name("inbound_message_integration_id_wamid_key")
                .table(InboundMessage::Table)
                .col(InboundMessage::IntegrationId)
                .col(InboundMessage::Wamid)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("inbound_message_tenant_id_idx")
                .table(InboundMessage::Table)
                .col(InboundMessage::TenantId)
                .col(InboundMessage::Id)
                .to_owned(),
        )
        .await?;
        // The engine reads a contact's messages in arrival order.
        m.create_index(
            Index::create()
                .name("inbound_message_integration_id_wa_id_idx")
                .table(InboundMessage::Table)
                .col(InboundMessage::IntegrationId)
                .col(InboundMessage::WaId)
                .col(InboundMessage::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(MessageStatus::Table)
                .col(
                    ColumnDef::new(MessageStatus::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(MessageStatus::TenantId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(MessageStatus::IntegrationId)
                        .string_len(64)
                        .not_null(),
                )
                // The wamid of our outbound message. It may not be known yet: a status can
                // arrive before our send call returns; it is applied when the message is.
                .col(
                    ColumnDef::new(MessageStatus::Wamid)
                        .string_len(160)
                        .not_null(),
                )
                // sent, delivered, read, failed, or whatever else Meta sends.
                .col(
                    ColumnDef::new(MessageStatus::Status)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(MessageStatus::ErrorCode).integer().null())
                .col(ColumnDef::new(MessageStatus::ErrorTitle).text().null())
                .col(ColumnDef::new(MessageStatus::Payload).text().not_null())
                .col(
                    ColumnDef::new(MessageStatus::StatusAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(MessageStatus::ReceivedAt)
                        .big_integer()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(MessageStatus::Table, MessageStatus::TenantId)
                        .to(Tenant::Table, Tenant::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // A redelivered status is stored (and logged) once.
        m.create_index(
            Index::create()
                .name("message_status_integration_id_wamid_status_key")
                .table(MessageStatus::Table)
                .col(MessageStatus::IntegrationId)
                .col(MessageStatus::Wamid)
                .col(MessageStatus::Status)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("message_status_tenant_id_idx")
                .table(MessageStatus::Table)
                .col(MessageStatus::TenantId)
                .col(MessageStatus::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(MessageStatus::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(InboundMessage::Table).to_owned())
            .await
    }
}
