//! An API token for programs. Only a SHA-256 of the token is stored; the token itself is shown
//! once, at creation.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_token")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// Who created it; `None` when created by `parley tenant create`.
    pub user_id: Option<String>,
    pub name: String,
    pub role: String,
    /// Hex SHA-256 of the whole token. Tokens carry 256 random bits, so a fast hash is enough.
    pub token_hash: String,
    /// The first characters of the token, so people can tell their tokens apart.
    pub token_prefix: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("token");
