//! The management API's resources: model providers, bots, WhatsApp integrations, and the read
//! models later stages fill (contacts, conversations, messages, event log).
//!
//! Conversations, messages, contacts and event-log rows refer to integrations and bots by id
//! without foreign keys on purpose: deleting an integration or a bot must keep its history.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Provider {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    Kind,
    BaseUrl,
    ApiKey,
    DefaultModel,
    VisionModel,
    TranscriptionModel,
    Meta,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Bot {
    Table,
    Id,
    TenantId,
    Alias,
    Name,
    Description,
    Backstory,
    Model,
    ProviderId,
    DatasetId,
    SkillsetId,
    BlueprintId,
    Privacy,
    Moderation,
    Visibility,
    Meta,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WhatsappIntegration {
    Table,
    Id,
    TenantId,
    Alias,
    Name,
    Description,
    BotId,
    BlueprintId,
    PhoneNumberId,
    AccessToken,
    AppSecret,
    VerifyToken,
    ContactCollection,
    SessionDuration,
    Attachments,
    AllowFrom,
    AllowUnsigned,
    Status,
    StatusMessage,
    Meta,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Contact {
    Table,
    Id,
    TenantId,
    Fingerprint,
    Name,
    Description,
    Email,
    Phone,
    Nick,
    Preferences,
    VerifiedAt,
    Meta,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Conversation {
    Table,
    Id,
    TenantId,
    ContactId,
    BotId,
    IntegrationId,
    WaId,
    Name,
    Description,
    Meta,
    LastMessageAt,
    EndedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Message {
    Table,
    Id,
    TenantId,
    ConversationId,
    Kind,
    Text,
    Meta,
    Wamid,
    DeliveryStatus,
    ErrorCode,
    ErrorTitle,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum EventLog {
    Table,
    Id,
    TenantId,
    Kind,
    Level,
    Message,
    IntegrationId,
    BotId,
    ConversationId,
    ContactId,
    Data,
    CreatedAt,
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string_len(64)
        .not_null()
        .primary_key()
        .to_owned()
}

fn tenant_id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(64).not_null().to_owned()
}

fn ref_id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(64).null().to_owned()
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().null().to_owned()
}

fn millis(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().to_owned()
}

fn owned_by_tenant<T: IntoIden + 'static>(
    table: T,
    col: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, col)
        .to(Tenant::Table, Tenant::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

/// Lists page by id within a tenant, so every tenant table gets (tenant_id, id).
fn tenant_index<T: IntoIden + 'static>(
    name: &str,
    table: T,
    tenant: impl IntoIden,
) -> IndexCreateStatement {
    Index::create()
        .name(name)
        .table(table)
        .col(tenant)
        .col(Alias::new("id"))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Provider::Table)
                .col(id(Provider::Id))
                .col(tenant_id(Provider::TenantId))
                .col(ColumnDef::new(Provider::Name).string().not_null())
                .col(text(Provider::Description))
                // `openai` (any Chat Completions API) or `anthropic` (Messages API).
                .col(ColumnDef::new(Provider::Kind).string_len(16).not_null())
                .col(ColumnDef::new(Provider::BaseUrl).text().not_null())
                // Sealed with the master key (src/crypto.rs), never plaintext.
                .col(text(Provider::ApiKey))
                .col(text(Provider::DefaultModel))
                .col(text(Provider::VisionModel))
                .col(text(Provider::TranscriptionModel))
                .col(ColumnDef::new(Provider::Meta).json().not_null())
                .col(millis(Provider::CreatedAt))
                .col(millis(Provider::UpdatedAt))
                .foreign_key(&mut owned_by_tenant(Provider::Table, Provider::TenantId))
                .to_owned(),
        )
        .await?;
        m.create_index(tenant_index(
            "provider_tenant_id_idx",
            Provider::Table,
            Provider::TenantId,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Bot::Table)
                .col(id(Bot::Id))
                .col(tenant_id(Bot::TenantId))
                .col(text(Bot::Alias))
                .col(text(Bot::Name))
                .col(text(Bot::Description))
                .col(text(Bot::Backstory))
                .col(text(Bot::Model))
                // A provider row, or one of the server's default providers (`prv_system_*`),
                // which have no row; hence no foreign key.
                .col(ref_id(Bot::ProviderId))
                .col(ref_id(Bot::DatasetId))
                .col(ref_id(Bot::SkillsetId))
                .col(ref_id(Bot::BlueprintId))
                .col(ColumnDef::new(Bot::Privacy).boolean().not_null())
                .col(ColumnDef::new(Bot::Moderation).boolean().not_null())
                .col(ColumnDef::new(Bot::Visibility).string_len(16).not_null())
                .col(ColumnDef::new(Bot::Meta).json().not_null())
                .col(millis(Bot::CreatedAt))
                .col(millis(Bot::UpdatedAt))
                .foreign_key(&mut owned_by_tenant(Bot::Table, Bot::TenantId))
                .to_owned(),
        )
        .await?;
        m.create_index(tenant_index("bot_tenant_id_idx", Bot::Table, Bot::TenantId))
            .await?;
        m.create_index(
            Index::create()
                .name("bot_provider_id_idx")
                .table(Bot::Table)
                .col(Bot::ProviderId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(WhatsappIntegration::Table)
                .col(id(WhatsappIntegration::Id))
                .col(tenant_id(WhatsappIntegration::TenantId))
                .col(text(WhatsappIntegration::Alias))
                .col(text(WhatsappIntegration::Name))
                .col(text(WhatsappIntegration::Description))
                .col(ref_id(WhatsappIntegration::BotId))
                .col(ref_id(WhatsappIntegration::BlueprintId))
                .col(
                    ColumnDef::new(WhatsappIntegration::PhoneNumberId)
                        .string_len(64)
                        .null(),
                )
                // Both sealed with the master key.
                .col(text(WhatsappIntegration::AccessToken))
                .col(text(WhatsappIntegration::AppSecret))
                // Generated on create; immutable.
                .col(
                    ColumnDef::new(WhatsappIntegration::VerifyToken)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WhatsappIntegration::ContactCollection)
                        .boolean()
                        .not_null(),
                )
                // Milliseconds.
                .col(
                    ColumnDef::new(WhatsappIntegration::SessionDuration)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WhatsappIntegration::Attachments)
                        .boolean()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WhatsappIntegration::AllowFrom)
                        .text()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WhatsappIntegration::AllowUnsigned)
                        .boolean()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WhatsappIntegration::Status)
                        .string_len(32)
                        .not_null(),
                )
                .col(text(WhatsappIntegration::StatusMessage))
                .col(ColumnDef::new(WhatsappIntegration::Meta).json().not_null())
                .col(millis(WhatsappIntegration::CreatedAt))
                .col(millis(WhatsappIntegration::UpdatedAt))
                .foreign_key(&mut owned_by_tenant(
                    WhatsappIntegration::Table,
                    WhatsappIntegration::TenantId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(tenant_index(
            "whatsapp_integration_tenant_id_idx",
            WhatsappIntegration::Table,
            WhatsappIntegration::TenantId,
        ))
        .await?;
        m.create_index(
            Index::create()
                .name("whatsapp_integration_bot_id_idx")
                .table(WhatsappIntegration::Table)
                .col(WhatsappIntegration::BotId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Contact::Table)
                .col(id(Contact::Id))
                .col(tenant_id(Contact::TenantId))
                .col(
                    ColumnDef::new(Contact::Fingerprint)
                        .string_len(128)
                        .not_null(),
                )
                .col(text(Contact::Name))
                .col(text(Contact::Description))
                .col(text(Contact::Email))
                .col(text(Contact::Phone))
                .col(text(Contact::Nick))
                .col(text(Contact::Preferences))
                .col(ColumnDef::new(Contact::VerifiedAt).big_integer().null())
                .col(ColumnDef::new(Contact::Meta).json().not_null())
                .col(millis(Contact::CreatedAt))
                .col(millis(Contact::UpdatedAt))
                .foreign_key(&mut owned_by_tenant(Contact::Table, Contact::TenantId))
                .to_owned(),
        )
        .await?;
        m.create_index(tenant_index(
            "contact_tenant_id_idx",
            Contact::Table,
            Contact::TenantId,
        ))
        .await?;
        // One contact per person per tenant: the fingerprint is derived from the WhatsApp id.
        m.create_index(
            Index::create()
                .name("contact_tenant_id_fingerprint_key")
                .table(Contact::Table)
                .col(Contact::TenantId)
                .col(Contact::Fingerprint)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Conversation::Table)
                .col(id(Conversation::Id))
                .col(tenant_id(Conversation::TenantId))
                .col(ref_id(Conversation::ContactId))
                .col(ref_id(Conversation::BotId))
                .col(ref_id(Conversation::IntegrationId))
                // The WhatsApp user id (phone number digits) on the other end.
                .col(ColumnDef::new(Conversation::WaId).string_len(32).null())
                .col(text(Conversation::Name))
                .col(text(Conversation::Description))
                .col(ColumnDef::new(Conversation::Meta).json().not_null())
                .col(
                    ColumnDef::new(Conversation::LastMessageAt)
                        .big_integer()
                        .null(),
                )
                .col(ColumnDef::new(Conversation::EndedAt).big_integer().null())
                .col(millis(Conversation::CreatedAt))
                .col(millis(Conversation::UpdatedAt))
                .foreign_key(&mut owned_by_tenant(
                    Conversation::Table,
                    Conversation::TenantId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(tenant_index(
            "conversation_tenant_id_idx",
            Conversation::Table,
            Conversation::TenantId,
        ))
        .await?;
        m.create_index(
            Index::create()
                .name("conversation_contact_id_idx")
                .table(Conversation::Table)
                .col(Conversation::ContactId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("conversation_integration_id_wa_id_idx")
                .table(Conversation::Table)
                .col(Conversation::IntegrationId)
                .col(Conversation::WaId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Message::Table)
                .col(id(Message::Id))
                .col(tenant_id(Message::TenantId))
                .col(
                    ColumnDef::new(Message::ConversationId)
                        .string_len(64)
                        .not_null(),
                )
                // ChatBotKit's message type: user, bot, activity, ...
                .col(ColumnDef::new(Message::Kind).string_len(16).not_null())
                .col(ColumnDef::new(Message::Text).text().not_null())
                .col(ColumnDef::new(Message::Meta).json().not_null())
                // The WhatsApp message id, when the message went through WhatsApp.
                .col(ColumnDef::new(Message::Wamid).string_len(160).null())
                // Outbound only: pending, sent, delivered, read or failed.
                .col(
                    ColumnDef::new(Message::DeliveryStatus)
                        .string_len(16)
                        .null(),
                )
                .col(ColumnDef::new(Message::ErrorCode).integer().null())
                .col(text(Message::ErrorTitle))
                .col(millis(Message::CreatedAt))
                .col(millis(Message::UpdatedAt))
                .foreign_key(&mut owned_by_tenant(Message::Table, Message::TenantId))
                .foreign_key(
                    ForeignKey::create()
                        .from(Message::Table, Message::ConversationId)
                        .to(Conversation::Table, Conversation::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(tenant_index(
            "message_tenant_id_idx",
            Message::Table,
            Message::TenantId,
        ))
        .await?;
        m.create_index(
            Index::create()
                .name("message_conversation_id_idx")
                .table(Message::Table)
                .col(Message::ConversationId)
                .col(Message::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("message_wamid_idx")
                .table(Message::Table)
                .col(Message::Wamid)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(EventLog::Table)
                .col(id(EventLog::Id))
                .col(tenant_id(EventLog::TenantId))
                // e.g. whatsapp.message.received, whatsapp.setup.failed
                .col(ColumnDef::new(EventLog::Kind).string_len(64).not_null())
                // info, warning or error
                .col(ColumnDef::new(EventLog::Level).string_len(16).not_null())
                .col(ColumnDef::new(EventLog::Message).text().not_null())
                .col(ref_id(EventLog::IntegrationId))
                .col(ref_id(EventLog::BotId))
                .col(ref_id(EventLog::ConversationId))
                .col(ref_id(EventLog::ContactId))
                .col(ColumnDef::new(EventLog::Data).json().not_null())
                .col(millis(EventLog::CreatedAt))
                .foreign_key(&mut owned_by_tenant(EventLog::Table, EventLog::TenantId))
                .to_owned(),
        )
        .await?;
        m.create_index(tenant_index(
            "event_log_tenant_id_idx",
            EventLog::Table,
            EventLog::TenantId,
        ))
        .await?;
        m.create_index(
            Index::create()
                .name("event_log_integration_id_idx")
                .table(EventLog::Table)
                .col(EventLog::IntegrationId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EventLog::Table.into_iden(),
            Message::Table.into_iden(),
            Conversation::Table.into_iden(),
            Contact::Table.into_iden(),
            WhatsappIntegration::Table.into_iden(),
            Bot::Table.into_iden(),
            Provider::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
