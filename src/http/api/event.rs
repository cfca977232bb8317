//! The event log: what happened to integrations, bots and conversations.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use futures_util::StreamExt;
use sea_orm::{ColumnTrait, Condition, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::fields;
use super::list::{ListQuery, ListResponse, truncate};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::http::json::Json;
use crate::store::entities::event_log;

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list).service(subscribe);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventLog {
    id: String,
    /// e.g. `whatsapp.message.received`, `whatsapp.setup.failed`.
    #[serde(rename = "type")]
    kind: String,
    /// Parley: `info`, `warning` or `error`.
    level: String,
    /// Parley: what happened, for people.
    message: String,
    whatsapp_integration_id: Option<String>,
    bot_id: Option<String>,
    conversation_id: Option<String>,
    contact_id: Option<String>,
    /// Details of the event.
    #[schema(value_type = Object)]
    meta: Value,
    created_at: i64,
    updated_at: i64,
}

impl From<event_log::Model> for EventLog {
    fn from(m: event_log::Model) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            level: m.level,
            message: m.message,
            whatsapp_integration_id: m.integration_id,
            bot_id: m.bot_id,
            conversation_id: m.conversation_id,
            contact_id: m.contact_id,
            meta: m.data,
            created_at: m.created_at,
            updated_at: m.created_at,
        }
    }
}

#[derive(Deserialize, IntoParams, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Only events of this integration.
    whatsapp_integration_id: Option<String>,
    bot_id: Option<String>,
    conversation_id: Option<String>,
    contact_id: Option<String>,
    /// Only events of this type, e.g. `whatsapp.setup.failed`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// `info`, `warning` or `error`.
    level: Option<String>,
}

/// Lists event-log entries, newest first by default, filterable by integration, bot,
/// conversation, contact, type and level.
#[utoipa::path(
    operation_id = "listEventLogs",
    tag = "Event",
    params(ListQuery, EventFilter),
    responses((status = 200, body = ListResponse<EventLog>))
)]
#[get("/event/log/list")]
async fn list(
    auth: Auth,
    req: HttpRequest,
    query: web::Query<ListQuery>,
    filter: web::Query<EventFilter>,
) -> ApiResult<HttpResponse> {
    let scope = auth.scope();
    let meta = fields::meta_filters(req.query_string())?;
    let cond = fields::meta_condition(scope.db().get_database_backend(), "data", &meta);
    let cond = cond.add(filter.into_inner().condition()?);
    let rows = scope
        .list::<event_log::Entity>(&query.page()?, Condition::all().add(cond))
        .await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter().map(EventLog::from).collect::<Vec<_>>(),
        cursor,
    )))
}

impl EventFilter {
    /// The filter as a condition on `event_log`; 400 for a level that does not exist.
    fn condition(self) -> ApiResult<Condition> {
        let filter = self;
        let mut cond = Condition::all();
        for (column, value) in [
            (
                event_log::Column::IntegrationId,
                filter.whatsapp_integration_id,
            ),
            (event_log::Column::BotId, filter.bot_id),
            (event_log::Column::ConversationId, filter.conversation_id),
            (event_log::Column::ContactId, filter.contact_id),
            (event_log::Column::Kind, filter.kind),
        ] {
            if let Some(v) = value {
                cond = cond.add(column.eq(v));
            }
        }
        if let Some(level) = filter.level {
            if !matches!(level.as_str(), "info" | "warning" | "error") {
                return Err(ApiError::bad_request(format!(
                    "level must be info, warning or error, got {:?}",
                    truncate(&level)
                )));
            }
            cond = cond.add(event_log::Column::Level.eq(level));
        }
        Ok(cond)
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeRequest {
    /// Recent events to replay before the live ones, 0 to 10,000. Default 0.
    history_length: Option<u32>,
    /// Parley: the same filters as `/event/log/list`.
    #[serde(flatten)]
    filter: EventFilter,
}

/// One line of the stream.
#[derive(Serialize, ToSchema)]
pub struct SubscribeItem {
    /// Always `item`.
    #[serde(rename = "type")]
    kind: &'static str,
    data: EventLog,
}

/// How often the stream looks for new events, and how long it may stay silent: an empty
/// line then keeps proxies from closing it and tells us when the client has gone.
const POLL: std::time::Duration = std::time::Duration::from_millis(750);
const HEARTBEAT_POLLS: u32 = 20;
/// Ids are time-ordered per process; events of other replicas may land a little behind the
/// newest id seen, so every poll looks back this far and skips what it already sent.
const LOOK_BACK_MS: i64 = 5_000;

/// Streams the tenant's events as JSON lines (`{"type":"item","data":{...}}`), first up to
/// `historyLength` recent ones, then each new one as it is logged, until the client closes
/// the connection. Empty lines are keep-alives.
#[utoipa::path(
    operation_id = "subscribeEventLogs",
    tag = "Event",
    request_body = SubscribeRequest,
    responses(
        (status = 200, description = "JSON lines, one SubscribeItem each", content_type = "application/jsonl", body = SubscribeItem),
        (status = 400, body = crate::error::ErrorBody),
    )
)]
#[post("/event/log/subscribe")]
async fn subscribe(auth: Auth, Json(body): Json<SubscribeRequest>) -> ApiResult<HttpResponse> {
    let history = body.history_length.unwrap_or(0);
    if history > 10_000 {
        return Err(ApiError::bad_request(
            "historyLength must be between 0 and 10000",
        ));
    }
    let cond = body.filter.condition()?;
    let scope = auth.scope().clone();
    let mut backlog: Vec<event_log::Model> = if history > 0 {
        scope
            .select::<event_log::Entity>()
            .filter(cond.clone())
            .order_by_desc(event_log::Column::Id)
            .limit(u64::from(history))
            .all(scope.db())
            .await?
    } else {
        Vec::new()
    };
    backlog.reverse();
    let since = backlog
        .last()
        .map_or_else(crate::time::now_ms, |e| e.created_at);
    let seen: std::collections::HashSet<String> = backlog.iter().map(|e| e.id.clone()).collect();
    let first = lines(backlog);
    struct Poller {
        scope: crate::store::TenantScope,
        cond: Condition,
        since: i64,
        seen: std::collections::HashMap<String, i64>,
        quiet: u32,
    }
    let poller = Poller {
        scope,
        cond,
        since,
        seen: seen.into_iter().map(|id| (id, since)).collect(),
        quiet: 0,
    };
    let live = futures_util::stream::unfold(poller, |mut p| async move {
        loop {
            tokio::time::sleep(POLL).await;
            let found = p
                .scope
                .select::<event_log::Entity>()
                .filter(p.cond.clone())
                .filter(event_log::Column::CreatedAt.gte(p.since - LOOK_BACK_MS))
                .order_by_asc(event_log::Column::Id)
                .limit(500)
                .all(p.scope.db())
                .await;
            let rows = match found {
                Ok(rows) => rows,
                // The database is away: end the stream; the client reconnects.
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: reading events failed");
                    return None;
                }
            };
            let new: Vec<event_log::Model> = rows
                .into_iter()
                .filter(|e| !p.seen.contains_key(&e.id))
                .collect();
            if let Some(newest) = new.iter().map(|e| e.created_at).max() {
                p.since = p.since.max(newest);
            }
            for e in &new {
                p.seen.insert(e.id.clone(), e.created_at);
            }
            let horizon = p.since - LOOK_BACK_MS;
            p.seen.retain(|_, at| *at >= horizon);
            if !new.is_empty() {
                p.quiet = 0;
                return Some((Ok::<_, actix_web::Error>(lines(new)), p));
            }
            p.quiet += 1;
            if p.quiet >= HEARTBEAT_POLLS {
                p.quiet = 0;
                return Some((Ok(web::Bytes::from_static(b"\n")), p));
            }
        }
    });
    let stream =
        futures_util::stream::once(async move { Ok::<_, actix_web::Error>(first) }).chain(live);
    Ok(HttpResponse::Ok()
        .content_type("application/jsonl")
        .insert_header(("cache-control", "no-cache"))
        // Tell reverse proxies such as nginx not to buffer the stream.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

/// Events as JSON lines.
fn lines(events: Vec<event_log::Model>) -> web::Bytes {
    let mut out = Vec::new();
    for e in events {
        let item = SubscribeItem {
            kind: "item",
            data: EventLog::from(e),
        };
        if serde_json::to_writer(&mut out, &item).is_ok() {
            out.push(b'\n');
        }
    }
    web::Bytes::from(out)
}
