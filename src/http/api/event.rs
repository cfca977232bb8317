//! The event log: what happened to integrations, bots and conversations.

use actix_web::{HttpRequest, HttpResponse, get, web};
use sea_orm::{ColumnTrait, Condition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::fields;
use super::list::{ListQuery, ListResponse, truncate};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::store::entities::event_log;

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list);
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

#[derive(Deserialize, IntoParams)]
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
    let mut cond = fields::meta_condition(scope.db().get_database_backend(), "data", &meta);
    let filter = filter.into_inner();
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
    let rows = scope
        .list::<event_log::Entity>(&query.page()?, Condition::all().add(cond))
        .await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter().map(EventLog::from).collect::<Vec<_>>(),
        cursor,
    )))
}
