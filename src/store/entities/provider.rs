//! A model provider: where a tenant's bots send their prompts.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provider")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    /// `openai` or `anthropic`.
    pub kind: String,
    pub base_url: String,
    /// Sealed (see [`crate::crypto::Vault`]).
    pub api_key: Option<String>,
    pub default_model: Option<String>,
    pub vision_model: Option<String>,
    pub transcription_model: Option<String>,
    pub meta: Json,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("provider");
