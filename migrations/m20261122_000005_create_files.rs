//! Files (ChatBotKit's file resource): media that users send, stored on disk and described here,
//! plus the bot settings that decide what the model sees of media and reactions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum File {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    MimeType,
    Size,
    Sha256,
    Meta,
    ConversationId,
    MessageId,
    InboundId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Bot {
    Table,
    Vision,
    ShowReactions,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // The bytes live in the data folder under their sha256 (content-addressed, so the same
        // photo sent twice is stored once); a row is one tenant's handle on them.
        m.create_table(
            Table::create()
                .table(File::Table)
                .col(
                    ColumnDef::new(File::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(File::TenantId).string_len(64).not_null())
                .col(ColumnDef::new(File::Name).string_len(255).null())
                .col(ColumnDef::new(File::Description).text().null())
                .col(ColumnDef::new(File::MimeType).string_len(255).not_null())
                .col(ColumnDef::new(File::Size).big_integer().not_null())
                // Lower-case hex.
                .col(ColumnDef::new(File::Sha256).string_len(64).not_null())
                .col(ColumnDef::new(File::Meta).json().not_null())
                // Where the file came from: a user's message of a conversation. The inbound id
                // is known first (the file is stored before the message row exists); the
                // message and conversation are linked when the turn stores the message.
                .col(ColumnDef::new(File::ConversationId).string_len(64).null())
                .col(ColumnDef::new(File::MessageId).string_len(64).null())
                .col(ColumnDef::new(File::InboundId).string_len(64).null())
                .col(ColumnDef::new(File::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(File::UpdatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("file_tenant_id_idx", File::TenantId),
            ("file_conversation_id_idx", File::ConversationId),
            ("file_message_id_idx", File::MessageId),
            ("file_inbound_id_idx", File::InboundId),
            ("file_sha256_idx", File::Sha256),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(File::Table)
                    .col(col)
                    .to_owned(),
            )
            .await?;
        }
        // Whether the bot's own model takes images (otherwise the provider's visionModel, if
        // any, answers turns with images), and whether the model is shown the user's reactions.
        for col in [
            ColumnDef::new(Bot::Vision)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            ColumnDef::new(Bot::ShowReactions)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
        ] {
            m.alter_table(Table::alter().table(Bot::Table).add_column(col).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [Bot::ShowReactions, Bot::Vision] {
            m.alter_table(Table::alter().table(Bot::Table).drop_column(col).to_owned())
                .await?;
        }
        m.drop_table(Table::drop().table(File::Table).to_owned())
            .await
    }
}
