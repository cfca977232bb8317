//! Conversations and their messages, in ChatBotKit's shapes. Filled by the conversation engine.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use sea_orm::{ColumnTrait, Condition, QueryFilter};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::fields;
use super::list::{IdResponse, ListQuery, ListResponse};
use crate::auth::{Auth, Role};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::store::entities::{conversation, message};

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(fetch)
        .service(delete)
        .service(messages)
        .service(fetch_message);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    id: String,
    name: Option<String>,
    description: Option<String>,
    contact_id: Option<String>,
    bot_id: Option<String>,
    /// Parley: the WhatsApp integration the conversation came through.
    whatsapp_integration_id: Option<String>,
    #[schema(value_type = Object)]
    meta: Value,
    /// Parley: when the last message was exchanged.
    last_message_at: Option<i64>,
    /// Parley: when the session ended (expired, or `/reset`); `null` while it is open.
    ended_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl From<conversation::Model> for Conversation {
    fn from(m: conversation::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            description: m.description,
            contact_id: m.contact_id,
            bot_id: m.bot_id,
            whatsapp_integration_id: m.integration_id,
            meta: m.meta,
            last_message_at: m.last_message_at,
            ended_at: m.ended_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    id: String,
    /// `user` or `bot`, and ChatBotKit's other types.
    #[serde(rename = "type")]
    kind: String,
    text: String,
    /// Parley: a bot message one of the model's WhatsApp tools sent carries `tool` (its name)
    /// and, unless it is plain text, `whatsapp` (the Cloud API message, without `to`); its
    /// `text` is then a readable summary such as `Which size?\n[buttons: Small | Large]`.
    #[schema(value_type = Object)]
    meta: Value,
    /// Parley: outbound delivery state: `pending`, `sent`, `delivered`, `read` or `failed`.
    delivery_status: Option<String>,
    /// Parley: Meta's error code when delivery failed.
    error_code: Option<i32>,
    error_title: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<message::Model> for Message {
    fn from(m: message::Model) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            text: m.text,
            meta: m.meta,
            delivery_status: m.delivery_status,
            error_code: m.error_code,
            error_title: m.error_title,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// Lists conversations. Filter with `meta.KEY=VALUE`.
#[utoipa::path(
    operation_id = "listConversations",
    tag = "Conversation",
    params(ListQuery),
    responses((status = 200, body = ListResponse<Conversation>))
)]
#[get("/conversation/list")]
async fn list(
    auth: Auth,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let filters = fields::meta_filters(req.query_string())?;
    let scope = auth.scope();
    let cond = fields::meta_condition(scope.db().get_database_backend(), "meta", &filters);
    let rows = scope
        .list::<conversation::Entity>(&query.page()?, cond)
        .await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter().map(Conversation::from).collect::<Vec<_>>(),
        cursor,
    )))
}

/// Fetches a conversation.
#[utoipa::path(
    operation_id = "fetchConversation",
    tag = "Conversation",
    params(("conversationId" = String, Path)),
    responses((status = 200, body = Conversation), (status = 404, body = ErrorBody))
)]
#[get("/conversation/{conversationId}/fetch")]
async fn fetch(auth: Auth, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let row = auth.scope().find::<conversation::Entity>(&path).await?;
    Ok(HttpResponse::Ok().json(Conversation::from(row)))
}

/// Deletes a conversation and its messages.
#[utoipa::path(
    operation_id = "deleteConversation",
    tag = "Conversation",
    params(("conversationId" = String, Path)),
    responses((status = 200, body = IdResponse), (status = 404, body = ErrorBody))
)]
#[post("/conversation/{conversationId}/delete")]
async fn delete(auth: Auth, path: web::Path<String>) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    let id = path.into_inner();
    auth.scope().delete::<conversation::Entity>(&id).await?;
    Ok(HttpResponse::Ok().json(IdResponse { id }))
}

/// Lists a conversation's messages.
#[utoipa::path(
    operation_id = "listConversationMessages",
    tag = "Conversation",
    params(("conversationId" = String, Path), ListQuery),
    responses((status = 200, body = ListResponse<Message>), (status = 404, body = ErrorBody))
)]
#[get("/conversation/{conversationId}/message/list")]
async fn messages(
    auth: Auth,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let scope = auth.scope();
    let conv = scope.find::<conversation::Entity>(&path).await?;
    let cond = Condition::all().add(message::Column::ConversationId.eq(conv.id));
    let rows = scope.list::<message::Entity>(&query.page()?, cond).await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter().map(Message::from).collect::<Vec<_>>(),
        cursor,
    )))
}

/// Fetches one message of a conversation.
#[utoipa::path(
    operation_id = "fetchConversationMessage",
    tag = "Conversation",
    params(("conversationId" = String, Path), ("messageId" = String, Path)),
    responses((status = 200, body = Message), (status = 404, body = ErrorBody))
)]
#[get("/conversation/{conversationId}/message/{messageId}/fetch")]
async fn fetch_message(auth: Auth, path: web::Path<(String, String)>) -> ApiResult<HttpResponse> {
    let (conversation_id, message_id) = path.into_inner();
    let scope = auth.scope();
    let row = scope
        .select::<message::Entity>()
        .filter(message::Column::ConversationId.eq(conversation_id.as_str()))
        .filter(message::Column::Id.eq(message_id.as_str()))
        .one(scope.db())
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(HttpResponse::Ok().json(Message::from(row)))
}
