//! Failed-login bookkeeping, shared by all replicas through the database. Keyed by a hash of the
//! email, so unknown and known emails are treated alike and no address is stored in clear.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_throttle")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Failures since `window_start_at`.
    pub failures: i32,
    pub window_start_at: i64,
    /// No login for this key is attempted before this time.
    pub locked_until: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
