//! A conversation: one session between a contact and a bot.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversation")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub contact_id: Option<String>,
    pub bot_id: Option<String>,
    pub integration_id: Option<String>,
    pub wa_id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub meta: Json,
    pub last_message_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// When the session ends unless the contact writes again.
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("conversation");
