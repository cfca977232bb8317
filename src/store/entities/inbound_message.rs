//! An inbound WhatsApp message, stored as received before Meta gets its 200.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "inbound_message")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub integration_id: String,
    pub wamid: String,
    pub wa_id: String,
    pub kind: String,
    /// JSON: the message as received, the sender's contact entry and the value's metadata.
    pub payload: String,
    /// `queued`, `processed`, `failed` or `ignored`.
    pub state: String,
    pub sent_at: i64,
    pub received_at: i64,
    pub updated_at: i64,
    /// The turn that answered (or is answering) this message.
    pub turn_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("inbound message");
