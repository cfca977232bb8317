//! What the sandbox's phone shows: messages it sent (as webhooks) and the bot's Cloud API
//! bodies its Graph endpoint received.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sandbox_message")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub integration_id: String,
    /// `in` (phone to bot) or `out` (bot to phone).
    pub direction: String,
    pub wamid: String,
    /// `in`: the webhook's message object; `out`: the Cloud API request body.
    pub body: Json,
    /// `in`: `sent`, then `read`; `out`: `received`.
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("sandbox message");
