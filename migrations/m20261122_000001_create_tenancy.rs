//! Tenants, their users, API tokens, and the login throttle.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum User {
    Table,
    Id,
    TenantId,
    Email,
    Name,
    PasswordHash,
    Role,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ApiToken {
    Table,
    Id,
    TenantId,
    UserId,
    Name,
    Role,
    TokenHash,
    TokenPrefix,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    Key,
    Failures,
    WindowStartAt,
    LockedUntil,
}

/// Ids are prefixed UUIDv7 strings (see src/ids.rs): at most 64 characters.
fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string_len(64)
        .not_null()
        .primary_key()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Tenant::Table)
                .col(id(Tenant::Id))
                .col(ColumnDef::new(Tenant::Name).string().not_null())
                .col(ColumnDef::new(Tenant::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(Tenant::UpdatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(User::Table)
                .col(id(User::Id))
                .col(ColumnDef::new(User::TenantId).string_len(64).not_null())
                .col(ColumnDef::new(User::Email).string().not_null())
                .col(ColumnDef::new(User::Name).string().not_null())
                .col(ColumnDef::new(User::PasswordHash).string().null())
                .col(ColumnDef::new(User::Role).string_len(16).not_null())
                .col(ColumnDef::new(User::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(User::UpdatedAt).big_integer().not_null())
                .foreign_key(
                    ForeignKey::create()
                        .from(User::Table, User::TenantId)
                        .to(Tenant::Table, Tenant::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // Login looks users up by email alone, so an email belongs to one user in one tenant.
        m.create_index(
            Index::create()
                .name("user_email_key")
                .table(User::Table)
                .col(User::Email)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("user_tenant_id_idx")
                .table(User::Table)
                .col(User::TenantId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ApiToken::Table)
                .col(id(ApiToken::Id))
                .col(ColumnDef::new(ApiToken::TenantId).string_len(64).not_null())
                .col(ColumnDef::new(ApiToken::UserId).string_len(64).null())
                .col(ColumnDef::new(ApiToken::Name).string().not_null())
                .col(ColumnDef::new(ApiToken::Role).string_len(16).not_null())
                .col(
                    ColumnDef::new(ApiToken::TokenHash)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ApiToken::TokenPrefix)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(ApiToken::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(ApiToken::UpdatedAt).big_integer().not_null())
                .foreign_key(
                    ForeignKey::create()
                        .from(ApiToken::Table, ApiToken::TenantId)
                        .to(Tenant::Table, Tenant::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(ApiToken::Table, ApiToken::UserId)
                        .to(User::Table, User::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // Every request with an API token looks it up by hash.
        m.create_index(
            Index::create()
                .name("api_token_token_hash_key")
                .table(ApiToken::Table)
                .col(ApiToken::TokenHash)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("api_token_tenant_id_idx")
                .table(ApiToken::Table)
                .col(ApiToken::TenantId)
                .col(ApiToken::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("api_token_user_id_idx")
                .table(ApiToken::Table)
                .col(ApiToken::UserId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(LoginThrottle::Table)
                .col(
                    ColumnDef::new(LoginThrottle::Key)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(LoginThrottle::Failures).integer().not_null())
                .col(
                    ColumnDef::new(LoginThrottle::WindowStartAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(LoginThrottle::LockedUntil)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("login_throttle_window_start_at_idx")
                .table(LoginThrottle::Table)
                .col(LoginThrottle::WindowStartAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LoginThrottle::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(ApiToken::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(User::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Tenant::Table).to_owned())
            .await
    }
}
