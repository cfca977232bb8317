//! Sessions: which conversation a contact's next message belongs to.
//!
//! A session is a conversation that stays open until `sessionDuration` after the contact's last
//! message (`expires_at`), or until `/reset`. The database always holds the record. With Redis
//! configured, the current conversation of each contact is also kept under a key whose TTL is
//! the session duration, so replicas find it without a query and an idle session expires by
//! itself; the periodic sweep then marks the conversation ended in the database.

use std::collections::HashMap;

use deadpool_redis::redis::AsyncCommands;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter};
use serde_json::json;

use crate::ids::{new_id, prefix};
use crate::store::entities::conversation;
use crate::store::{execute, in_json, json_param, json_rows, query};
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

/// A contact of an integration: `(integration_id, wa_id)`.
type Contact = (String, String);

fn contact_of(c: &conversation::Model) -> Contact {
    (
        c.integration_id.clone().unwrap_or_default(),
        c.wa_id.clone().unwrap_or_default(),
    )
}

impl SessionKey<'_> {
    fn contact(&self) -> Contact {
        (self.integration_id.to_owned(), self.wa_id.to_owned())
    }
}

/// A contact's conversation for a turn, from [`Sessions::continue_or_start_many`].
#[derive(Debug)]
pub struct Session {
    pub conversation: conversation::Model,
    /// Started for this turn: it holds nothing yet but what the turn stores.
    pub started: bool,
}

impl Sessions {
    pub fn new(redis: Option<deadpool_redis::Pool>) -> Self {
        Self { redis }
    }

    /// For each contact, its open conversation extended by another session duration, or a new
    /// one when the last has expired or been reset. Many contacts at once, in a handful of
    /// statements: the engine's writer asks for every turn it commits together. The keys must
    /// name different contacts.
    pub async fn continue_or_start_many<C: ConnectionTrait>(
        &self,
        conn: &C,
        keys: &[SessionKey<'_>],
    ) -> Result<Vec<Session>, DbErr> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let backend = conn.get_database_backend();
        let mut open = self.open_conversations(conn, keys).await?;
        let mut extended: HashMap<i64, Vec<String>> = HashMap::new();
        let mut ended: Vec<String> = Vec::new();
        let mut out = Vec::with_capacity(keys.len());
        let mut created = Vec::new();
        for key in keys {
            let expires_at = now + key.session_ms;
            let conv = match open.remove(&key.contact()) {
                Some(mut c) if c.expires_at.is_none_or(|e| e > now) => {
                    extended.entry(expires_at).or_default().push(c.id.clone());
                    c.last_message_at = Some(now);
                    c.expires_at = Some(expires_at);
                    c.updated_at = now;
                    Session {
                        conversation: c,
                        started: false,
                    }
                }
                stale => {
                    if let Some(c) = stale {
                        ended.push(c.id);
                    }
                    let c = conversation::Model {
                        id: new_id(prefix::CONVERSATION),
                        tenant_id: key.tenant_id.to_owned(),
                        contact_id: key.contact_id.map(str::to_owned),
                        bot_id: key.bot_id.map(str::to_owned),
                        integration_id: Some(key.integration_id.to_owned()),
                        wa_id: Some(key.wa_id.to_owned()),
                        name: None,
                        description: None,
                        meta: json!({}),
                        last_message_at: Some(now),
                        ended_at: None,
                        expires_at: Some(expires_at),
                        created_at: now,
                        updated_at: now,
                    };
                    created.push(c.clone());
                    Session {
                        conversation: c,
                        started: true,
                    }
                }
            };
            out.push(conv);
        }
        for (expires_at, ids) in extended {
            execute(
                conn,
                &format!(
                    "UPDATE conversation SET last_message_at = ?, expires_at = ?, updated_at = ? \
                     WHERE {}",
                    in_json(backend, "id")
                ),
                [now.into(), expires_at.into(), now.into(), json_param(&ids)],
            )
            .await?;
        }
        if !ended.is_empty() {
            // An expired session ended when it expired; one ended early (its bot changed) now.
            execute(
                conn,
                &format!(
                    "UPDATE conversation SET ended_at = CASE WHEN expires_at IS NOT NULL \
                     AND expires_at < ? THEN expires_at ELSE ? END, updated_at = ? WHERE {}",
                    in_json(backend, "id")
                ),
                [now.into(), now.into(), now.into(), json_param(&ended)],
            )
            .await?;
        }
        if !created.is_empty() {
            crate::store::insert_all(
                conn,
                created
                    .into_iter()
                    .map(conversation::ActiveModel::from)
                    .collect(),
            )
            .await?;
        }
        self.redis_set_many(keys, &out).await;
        Ok(out)
    }

    /// The open conversation of each contact, by `(integration_id, wa_id)`: from Redis when it
    /// knows the contact, else the newest unended one in the database.
    async fn open_conversations<C: ConnectionTrait>(
        &self,
        conn: &C,
        keys: &[SessionKey<'_>],
    ) -> Result<HashMap<Contact, conversation::Model>, DbErr> {
        let backend = conn.get_database_backend();
        let known = self.redis_current_many(keys).await;
        let mut found = HashMap::new();
        let ids: Vec<&str> = known.iter().flatten().map(String::as_str).collect();
        if !ids.is_empty() {
            let rows = query(
                conn,
                &format!(
                    "SELECT * FROM conversation WHERE {} AND ended_at IS NULL",
                    in_json(backend, "id")
                ),
                [json_param(&ids)],
            )
            .await?;
            for row in rows {
                let c = conversation::Model::from_query_result(&row, "")?;
                found.insert(contact_of(&c), c);
            }
        }
        let unknown: Vec<[&str; 3]> = keys
            .iter()
            .filter(|k| !found.contains_key(&k.contact()))
            .map(|k| [k.tenant_id, k.integration_id, k.wa_id])
            .collect();
        if unknown.is_empty() {
            return Ok(found);
        }
        let rows = query(conn, &open_sql(backend), [json_param(&unknown)]).await?;
        for row in rows {
            let c = conversation::Model::from_query_result(&row, "")?;
            // Newest first: the first one seen per contact is its open conversation.
            found.entry(contact_of(&c)).or_insert(c);
        }
        Ok(found)
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

    /// The current conversation of each contact as Redis knows it (one round trip).
    async fn redis_current_many(&self, keys: &[SessionKey<'_>]) -> Vec<Option<String>> {
        let none = || vec![None; keys.len()];
        let Some(pool) = self.redis.as_ref() else {
            return none();
        };
        let Ok(mut c) = pool.get().await else {
            return none();
        };
        let names: Vec<String> = keys
            .iter()
            .map(|k| redis_key(k.integration_id, k.wa_id))
            .collect();
        // Redis is a cache of the database here: if it is down, the database answers.
        deadpool_redis::redis::cmd("MGET")
            .arg(&names)
            .query_async::<Vec<Option<String>>>(&mut c)
            .await
            .unwrap_or_else(|_| none())
    }

    /// Remembers each contact's conversation for one session duration (one round trip).
    async fn redis_set_many(&self, keys: &[SessionKey<'_>], sessions: &[Session]) {
        let Some(pool) = &self.redis else { return };
        let Ok(mut c) = pool.get().await else { return };
        let mut pipe = deadpool_redis::redis::pipe();
        for (key, session) in keys.iter().zip(sessions) {
            let ttl = u64::try_from(key.session_ms).unwrap_or(1).max(1);
            pipe.pset_ex(
                redis_key(key.integration_id, key.wa_id),
                &session.conversation.id,
                ttl,
            )
            .ignore();
        }
        let _: Result<(), _> = pipe.query_async(&mut c).await;
    }
}

/// The unended conversations of the contacts in a JSON list of `[tenant_id, integration_id,
/// wa_id]`, newest first. Public for the query-plan test: SQLite must find each contact through
/// `(integration_id, wa_id, id)`, not by walking the tenant's conversations.
pub fn open_sql(backend: sea_orm::DatabaseBackend) -> String {
    format!(
        "SELECT c.* FROM (SELECT j.value ->> 0 AS t, j.value ->> 1 AS i, j.value ->> 2 AS w \
         FROM {}) AS l JOIN conversation c ON c.tenant_id = l.t AND c.integration_id = l.i \
         AND c.wa_id = l.w WHERE c.ended_at IS NULL ORDER BY c.id DESC",
        json_rows(backend)
    )
}

/// Marks conversations whose session has run out as ended. Run periodically.
pub async fn close_expired<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    let now = now_ms();
    let res = execute(
        conn,
        "UPDATE conversation SET ended_at = expires_at, updated_at = ? \
         WHERE ended_at IS NULL AND expires_at IS NOT NULL AND expires_at < ?",
        [now.into(), now.into()],
    )
    .await?;
    Ok(res.rows_affected())
}
