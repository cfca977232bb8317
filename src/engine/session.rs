//! Sessions: which conversation a contact's next message belongs to.
//!
//! A session is a conversation that stays open until `sessionDuration` after the contact's last
//! message (`expires_at`), or until `/reset`. The database always holds the record. With Redis
//! configured, the current conversation of each contact is also kept under a key whose TTL is
//! the session duration, so replicas find it without a query and an idle session expires by
//! itself; the periodic sweep then marks the conversation ended in the database.

use deadpool_redis::redis::AsyncCommands;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};
use serde_json::json;

use crate::ids::{new_id, prefix};
use crate::store::entities::conversation;
use crate::time::now_ms;

fn redis_key(integration_id: &str, wa_id: &str) -> String {
    format!("parley:session:{integration_id}:{wa_id}")
}

/// Where session state lives.
#[derive(Clone, Debug)]
pub struct Sessions {
    redis: Option<deadpool_redis::Pool>,
}

/// What a turn needs to know to open or continue a session.
pub struct SessionKey<'a> {
    pub tenant_id: &'a str,
    pub integration_id: &'a str,
    pub wa_id: &'a str,
    pub bot_id: Option<&'a str>,
    pub contact_id: Option<&'a str>,
    pub session_ms: i64,
}

impl Sessions {
    pub fn new(redis: Option<deadpool_redis::Pool>) -> Self {
        Self { redis }
    }

    /// The open conversation for this contact, extended by another session duration, or a new
    /// one when the last has expired or been reset.
    pub async fn continue_or_start<C: ConnectionTrait>(
        &self,
        conn: &C,
        key: &SessionKey<'_>,
    ) -> Result<conversation::Model, DbErr> {
        let now = now_ms();
        let open = match self.redis_current(key).await {
            Some(id) => {
                conversation::Entity::find_by_id(id)
                    .filter(conversation::Column::EndedAt.is_null())
                    .one(conn)
                    .await?
            }
            None => {
                conversation::Entity::find()
                    .filter(conversation::Column::TenantId.eq(key.tenant_id))
                    .filter(conversation::Column::IntegrationId.eq(key.integration_id))
                    .filter(conversation::Column::WaId.eq(key.wa_id))
                    .filter(conversation::Column::EndedAt.is_null())
                    .order_by_desc(conversation::Column::Id)
                    .one(conn)
                    .await?
            }
        };
        let expires_at = now + key.session_ms;
        let conv = match open {
            Some(c) if c.expires_at.is_none_or(|e| e > now) => {
                let mut am: conversation::ActiveModel = c.into();
                am.last_message_at = Set(Some(now));
                am.expires_at = Set(Some(expires_at));
                am.updated_at = Set(now);
                am.update(conn).await?
            }
            stale => {
                if let Some(c) = stale {
                    let ended = c.expires_at.unwrap_or(now).min(now);
                    let mut am: conversation::ActiveModel = c.into();
                    am.ended_at = Set(Some(ended));
                    am.updated_at = Set(now);
                    am.update(conn).await?;
                }
                conversation::ActiveModel {
                    id: Set(new_id(prefix::CONVERSATION)),
                    tenant_id: Set(key.tenant_id.to_owned()),
                    contact_id: Set(key.contact_id.map(str::to_owned)),
                    bot_id: Set(key.bot_id.map(str::to_owned)),
                    integration_id: Set(Some(key.integration_id.to_owned())),
                    wa_id: Set(Some(key.wa_id.to_owned())),
                    name: Set(None),
                    description: Set(None),
                    meta: Set(json!({})),
                    last_message_at: Set(Some(now)),
                    ended_at: Set(None),
                    expires_at: Set(Some(expires_at)),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(conn)
                .await?
            }
        };
        self.redis_set(key, &conv.id).await;
        Ok(conv)
    }

    /// Ends the contact's open conversation now (`/reset`). Returns whether one was open.
    pub async fn end<C: ConnectionTrait>(
        &self,
        conn: &C,
        key: &SessionKey<'_>,
    ) -> Result<bool, DbErr> {
        let now = now_ms();
        let res = conversation::Entity::update_many()
            .col_expr(
                conversation::Column::EndedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .col_expr(
                conversation::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(conversation::Column::TenantId.eq(key.tenant_id))
            .filter(conversation::Column::IntegrationId.eq(key.integration_id))
            .filter(conversation::Column::WaId.eq(key.wa_id))
            .filter(conversation::Column::EndedAt.is_null())
            .exec(conn)
            .await?;
        if let Some(pool) = &self.redis
            && let Ok(mut c) = pool.get().await
        {
            let _: Result<(), _> = c.del(redis_key(key.integration_id, key.wa_id)).await;
        }
        Ok(res.rows_affected > 0)
    }

    async fn redis_current(&self, key: &SessionKey<'_>) -> Option<String> {
        let pool = self.redis.as_ref()?;
        let mut c = pool.get().await.ok()?;
        // Redis is a cache of the database here: if it is down, the database answers.
        c.get::<_, Option<String>>(redis_key(key.integration_id, key.wa_id))
            .await
            .ok()
            .flatten()
    }

    async fn redis_set(&self, key: &SessionKey<'_>, conversation_id: &str) {
        let Some(pool) = &self.redis else { return };
        let Ok(mut c) = pool.get().await else { return };
        let ttl = u64::try_from(key.session_ms).unwrap_or(1).max(1);
        let _: Result<(), _> = c
            .pset_ex(
                redis_key(key.integration_id, key.wa_id),
                conversation_id,
                ttl,
            )
            .await;
    }
}

/// Marks conversations whose session has run out as ended. Run periodically.
pub async fn close_expired<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    let now = now_ms();
    let backend = conn.get_database_backend();
    let res = conn
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            crate::store::sql(
                backend,
                "UPDATE conversation SET ended_at = expires_at, updated_at = ? \
                 WHERE ended_at IS NULL AND expires_at IS NOT NULL AND expires_at < ?",
            ),
            [now.into(), now.into()],
        ))
        .await?;
    Ok(res.rows_affected())
}
