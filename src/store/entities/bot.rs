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
    /// The bot's model takes images. Without it, turns with images go to the provider's
    /// `vision_model` when it has one, else the model is told an image arrived.
    pub vision: bool,
    /// The model is shown the user's reactions (as history; a reaction never starts a turn).
    pub show_reactions: bool,
    pub meta: Json,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("bot");
