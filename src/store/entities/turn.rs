//! One turn of a conversation: the inbound messages it answers, and how far it got.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "turn")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub integration_id: String,
    pub wa_id: String,
    pub conversation_id: Option<String>,
    /// `started` (messages claimed), `prompted` (user messages stored), `replied` (reply parts
    /// stored, being sent), `done`, or `failed`.
    pub state: String,
    pub error: Option<String>,
    /// The model's tool rounds so far, as JSON (see `engine::tools::Round`); `None` before the
    /// first. Stored with each round's messages, so a resumed turn goes on from there.
    pub tool_rounds: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("turn");
