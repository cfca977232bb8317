//! A bot: a model with a backstory, bound to a provider.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bot")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub alias: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub backstory: Option<String>,
    /// ChatBotKit's `name/param=value` form.
    pub model: Option<String>,
    pub provider_id: Option<String>,
    pub dataset_id: Option<String>,
    pub skillset_id: Option<String>,
    pub blueprint_id: Option<String>,
    pub privacy: bool,
    pub moderation: bool,
    pub visibility: String,
    pub meta: Json,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("bot");
