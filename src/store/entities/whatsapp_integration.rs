//! A WhatsApp Business number connected to a bot.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "whatsapp_integration")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub alias: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub bot_id: Option<String>,
    pub blueprint_id: Option<String>,
    pub phone_number_id: Option<String>,
    /// Sealed.
    pub access_token: Option<String>,
    /// Sealed. Meta's app secret, which signs webhooks.
    pub app_secret: Option<String>,
    /// Generated on create, never changed.
    pub verify_token: String,
    pub contact_collection: bool,
    /// Milliseconds after the contact's last message that a session ends.
    pub session_duration: i64,
    pub attachments: bool,
    pub allow_from: String,
    /// Accept unsigned webhooks. For local testing only.
    pub allow_unsigned: bool,
    /// Extra session-reset commands, one per line.
    pub reset_commands: Option<String>,
    pub status: String,
    pub status_message: Option<String>,
    pub meta: Json,
    /// Parley's built-in sandbox: Parley plays Meta, replies go to its own Graph endpoint.
    pub sandbox: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("whatsapp integration");
