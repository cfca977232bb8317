//! A file: bytes on disk (see [`crate::files`]) and what the API shows of them.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "file")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub mime_type: String,
    pub size: i64,
    /// Lower-case hex; also where the bytes live.
    pub sha256: String,
    pub meta: Json,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    /// The inbound WhatsApp message the file came with.
    pub inbound_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("file");
