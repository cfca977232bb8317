//! A message of a conversation, in ChatBotKit's types (`user`, `bot`, ...).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub conversation_id: String,
    /// ChatBotKit's `type`.
    pub kind: String,
    pub text: String,
    pub meta: Json,
    pub wamid: Option<String>,
    pub delivery_status: Option<String>,
    pub error_code: Option<i32>,
    pub error_title: Option<String>,
    /// The turn whose reply this is part of (bot messages).
    pub turn_id: Option<String>,
    /// Position in the turn's reply; with `turn_id`, the outbox's idempotency key.
    pub part: Option<i32>,
    /// The inbound message this user message came from.
    pub inbound_id: Option<String>,
    pub input_tokens: Option<i32>,
    pub output_tokens: Option<i32>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("message");
