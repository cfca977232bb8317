//! A person who logs in to the dashboard. Belongs to exactly one tenant.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// Lower-cased; unique across all tenants, because login is by email alone.
    pub email: String,
    pub name: String,
    /// argon2id PHC string; `None` for users created headless without a password.
    pub password_hash: Option<String>,
    /// `owner`, `admin`, `agent` or `viewer`.
    pub role: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!("user");
