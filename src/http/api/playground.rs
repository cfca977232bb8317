//! Parley's "try it" box: one completion from a bot's model, through the server, without a
//! conversation. Nothing is stored; the tenant's provider key never leaves the server.

use actix_web::{HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Auth, Role};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Json;
use crate::llm::provider::{ChatMessage, ChatRequest, RequestMetadata};
use crate::state::AppState;
use crate::store::entities::bot;

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(try_bot);
}

/// Most messages a try-it request may carry, and most characters in all of them.
const MAX_MESSAGES: usize = 50;
const MAX_CHARS: usize = 32_000;

#[derive(Deserialize, ToSchema)]
pub struct TryMessage {
    /// `user` or `bot`, as in ChatBotKit's messages.
    #[serde(rename = "type")]
    kind: String,
    text: String,
}

#[derive(Deserialize, ToSchema)]
pub struct TryRequest {
    /// The conversation so far, 1 to 50 messages; the last one must be the user's.
    // Defaulted so that a missing field is checked after the bot is found (404 first).
    #[serde(default)]
    messages: Vec<TryMessage>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TryUsage {
    input_tokens: u32,
    output_tokens: u32,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TryResponse {
    /// The model's answer, as it wrote it (before WhatsApp formatting).
    text: String,
    /// The model that answered, as the vendor names it.
    model: String,
    usage: TryUsage,
    duration_ms: u64,
}

/// Parley: sends the messages to the bot's model (with its backstory) and answers the reply.
/// A model failure answers 422 with the provider's reason.
#[utoipa::path(
    operation_id = "tryBot",
    tag = "Bot",
    params(("botId" = String, Path)),
    request_body = TryRequest,
    responses(
        (status = 200, body = TryResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "The model could not answer", body = ErrorBody),
    )
)]
#[post("/bot/{botId}/try")]
async fn try_bot(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    Json(body): Json<TryRequest>,
) -> ApiResult<HttpResponse> {
    auth.require(Role::Agent)?;
    let bot = auth.scope().find::<bot::Entity>(&path).await?;
    if body.messages.is_empty() || body.messages.len() > MAX_MESSAGES {
        return Err(ApiError::bad_request(format!(
            "messages must hold 1 to {MAX_MESSAGES} messages"
        )));
    }
    if body
        .messages
        .iter()
        .map(|m| m.text.chars().count())
        .sum::<usize>()
        > MAX_CHARS
    {
        return Err(ApiError::bad_request(format!(
            "messages may hold at most {MAX_CHARS} characters in all"
        )));
    }
    let mut messages = Vec::with_capacity(body.messages.len());
    for m in body.messages {
        if m.text.trim().is_empty() {
            return Err(ApiError::bad_request("a message's text must not be empty"));
        }
        messages.push(match m.kind.as_str() {
            "user" => ChatMessage::user(m.text),
            "bot" => ChatMessage::assistant(m.text),
            other => {
                return Err(ApiError::bad_request(format!(
                    "a message's type must be user or bot, got {:?}",
                    super::list::truncate(other)
                )));
            }
        });
    }
    if messages
        .last()
        .is_some_and(|m| m.role != crate::llm::provider::Role::User)
    {
        return Err(ApiError::bad_request("the last message must be the user's"));
    }
    let (llm, default_model) =
        crate::engine::resolve_provider(&state, auth.tenant_id(), bot.provider_id.as_deref())
            .await
            .map_err(ApiError::unprocessable)?;
    let model = crate::engine::bot_model(&bot, default_model).map_err(ApiError::unprocessable)?;
    let request = ChatRequest {
        model,
        system: bot.backstory.clone().filter(|b| !b.trim().is_empty()),
        messages,
        tools: Vec::new(),
        tool_choice: crate::llm::provider::ToolChoice::Auto,
        metadata: RequestMetadata {
            conversation_id: format!("try_{}", bot.id),
            user_hash: String::new(),
        },
        stream: true,
    };
    let started = std::time::Instant::now();
    let response = llm
        .chat(&request)
        .await
        .map_err(|e| ApiError::unprocessable(format!("the model could not answer: {e}")))?;
    Ok(HttpResponse::Ok().json(TryResponse {
        text: response.text,
        model: response.model,
        usage: TryUsage {
            input_tokens: response.usage.input_tokens,
            output_tokens: response.usage.output_tokens,
        },
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}
