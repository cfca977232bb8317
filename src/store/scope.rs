//! Tenant scoping, in one place.
//!
//! Every table that holds tenant data has a `tenant_id` column, and its entity implements
//! [`TenantOwned`]. Handlers never query those tables directly: they get a [`TenantScope`] from
//! the caller's credentials and go through it, so a row of another tenant is simply not there.
//! That is why another tenant's id answers 404, never 403: we do not say the row exists.

use sea_orm::sea_query::{IntoCondition, Order as SqlOrder};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Select, UpdateMany,
};

use crate::error::{ApiError, ApiResult};

/// An entity whose rows belong to a tenant.
pub trait TenantOwned: EntityTrait {
    /// What the API calls one row, for messages such as "token not found".
    const NAME: &'static str;
    fn tenant_column() -> Self::Column;
    /// The primary key, a time-ordered id (see [`crate::ids`]); lists page on it.
    fn id_column() -> Self::Column;
}

/// Implements [`TenantOwned`] for an entity with `tenant_id` and `id` columns.
#[macro_export]
macro_rules! tenant_owned {
    ($name:literal) => {
        impl $crate::store::TenantOwned for Entity {
            const NAME: &'static str = $name;
            fn tenant_column() -> Column {
                Column::TenantId
            }
            fn id_column() -> Column {
                Column::Id
            }
        }
    };
}

/// Sort order of a list, by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// One page of a list: items after `cursor` (the id of the last item of the previous page).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub cursor: Option<String>,
    pub take: u64,
    pub order: Order,
}

/// The database, seen by one tenant.
#[derive(Clone, Debug)]
pub struct TenantScope {
    db: DatabaseConnection,
    tenant_id: String,
}

impl TenantScope {
    pub(super) fn new(db: DatabaseConnection, tenant_id: String) -> Self {
        Self { db, tenant_id }
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The connection, for inserts. New rows must set `tenant_id` to [`Self::tenant_id`].
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The condition every query on tenant data carries.
    pub fn owns<E: TenantOwned>(&self) -> Condition {
        E::tenant_column()
            .eq(self.tenant_id.as_str())
            .into_condition()
    }

    /// All of this tenant's rows of `E`, to refine further.
    pub fn select<E: TenantOwned>(&self) -> Select<E> {
        E::find().filter(self.owns::<E>())
    }

    /// One row by id, or 404.
    pub async fn find<E: TenantOwned>(&self, id: &str) -> ApiResult<<E as EntityTrait>::Model> {
        self.select::<E>()
            .filter(E::id_column().eq(id))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found(E::NAME))
    }

    /// One page of rows matching `filter`, ordered by id.
    pub async fn list<E: TenantOwned>(
        &self,
        page: &Page,
        filter: Condition,
    ) -> ApiResult<Vec<<E as EntityTrait>::Model>> {
        let mut q = self.select::<E>().filter(filter);
        if let Some(cursor) = &page.cursor {
            q = q.filter(match page.order {
                Order::Asc => E::id_column().gt(cursor.as_str()),
                Order::Desc => E::id_column().lt(cursor.as_str()),
            });
        }
        let order = match page.order {
            Order::Asc => SqlOrder::Asc,
            Order::Desc => SqlOrder::Desc,
        };
        Ok(q.order_by(E::id_column(), order)
            .limit(page.take)
            .all(&self.db)
            .await?)
    }

    /// Deletes one row by id, or 404.
    pub async fn delete<E: TenantOwned>(&self, id: &str) -> ApiResult<()> {
        self.delete_on::<E, _>(&self.db, id).await
    }

    /// [`Self::delete`] on a given connection, such as a transaction.
    pub async fn delete_on<E: TenantOwned, C: ConnectionTrait>(
        &self,
        conn: &C,
        id: &str,
    ) -> ApiResult<()> {
        let res = E::delete_many()
            .filter(self.owns::<E>())
            .filter(E::id_column().eq(id))
            .exec(conn)
            .await?;
        if res.rows_affected == 0 {
            return Err(ApiError::not_found(E::NAME));
        }
        Ok(())
    }

    /// An update of this tenant's rows of `E`, to refine with filters and values.
    pub fn update_many<E: TenantOwned>(&self) -> UpdateMany<E> {
        E::update_many().filter(self.owns::<E>())
    }
}
