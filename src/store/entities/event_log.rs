//! An entry of a tenant's event log.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// ChatBotKit's event `type`, e.g. `whatsapp.message.received`.
    pub kind: String,
    /// `info`, `warning` or `error`.
    pub level: String,
    pub message: String,
    pub integration_id: Option<String>,
    pub bot_id: Option<String>,
    pub conversation_id: Option<String>,
    pub contact_id: Option<String>,
    pub data: Json,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("event");
