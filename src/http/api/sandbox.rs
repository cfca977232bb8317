//! Parley's WhatsApp sandbox (no ChatBotKit equivalent): the dashboard's phone, and the Graph
//! API endpoint the sandbox integration sends its replies to. See [`crate::sandbox`].

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use sea_orm::{ColumnTrait, Condition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::list::{ListQuery, ListResponse};
use crate::auth::{Auth, Role};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Json;
use crate::sandbox::{self, GraphFault, SandboxInput};
use crate::state::AppState;
use crate::store::entities::{bot, sandbox_message as sm};

/// The Graph endpoint: authenticated by the integration's access token, not a Parley token.
pub(super) fn configure_public(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(graph_phone_number).service(graph_messages);
}

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(fetch)
        .service(create)
        .service(send)
        .service(list_messages);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    /// The sandbox's WhatsApp integration (`sandbox: true`).
    whatsapp_integration_id: String,
    bot_id: Option<String>,
    /// The phone's user, as the bot sees them.
    wa_id: String,
    /// The bot's number, as the phone shows it.
    display_phone_number: String,
    created_at: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxCreateRequest {
    /// The bot to chat with. Given again, it relinks the existing sandbox.
    bot_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxMessage {
    id: String,
    /// `in`: the phone sent it (a webhook's message object); `out`: the bot sent it (the Cloud
    /// API request body).
    direction: String,
    wamid: String,
    /// The WhatsApp message type: `text`, `interactive`, `location`, `image`, `reaction`...
    #[serde(rename = "type")]
    kind: String,
    #[schema(value_type = Object)]
    body: Value,
    /// `in`: `sent`, `read`, `typing` (read, and the bot shows it is typing) or `failed`;
    /// `out`: `received`.
    status: String,
    created_at: i64,
}

impl From<sm::Model> for SandboxMessage {
    fn from(m: sm::Model) -> Self {
        Self {
            kind: m.body["type"].as_str().unwrap_or("unknown").to_owned(),
            id: m.id,
            direction: m.direction,
            wamid: m.wamid,
            body: m.body,
            status: m.status,
            created_at: m.created_at,
        }
    }
}

fn shown(row: &crate::store::entities::whatsapp_integration::Model) -> Sandbox {
    Sandbox {
        whatsapp_integration_id: row.id.clone(),
        bot_id: row.bot_id.clone(),
        wa_id: sandbox::USER_WA_ID.to_owned(),
        display_phone_number: format!("+{}", sandbox::BUSINESS_DISPLAY_NUMBER),
        created_at: row.created_at,
    }
}

/// The tenant's sandbox; 404 until it is created.
#[utoipa::path(
    operation_id = "fetchSandbox",
    tag = "Sandbox",
    responses((status = 200, body = Sandbox), (status = 404, body = ErrorBody))
)]
#[get("/sandbox/fetch")]
async fn fetch(auth: Auth) -> ApiResult<HttpResponse> {
    let row = sandbox::find(auth.scope())
        .await?
        .ok_or_else(|| ApiError::not_found("sandbox"))?;
    Ok(HttpResponse::Ok().json(shown(&row)))
}

/// Creates the tenant's sandbox (a WhatsApp integration Parley plays Meta for), or links the
/// existing one to another bot. Idempotent: there is one sandbox per tenant.
#[utoipa::path(
    operation_id = "createSandbox",
    tag = "Sandbox",
    request_body = SandboxCreateRequest,
    responses((status = 200, body = Sandbox), (status = 404, description = "Unknown botId", body = ErrorBody))
)]
#[post("/sandbox/create")]
async fn create(
    auth: Auth,
    state: web::Data<AppState>,
    Json(body): Json<SandboxCreateRequest>,
) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    if let Some(b) = &body.bot_id {
        auth.scope().find::<bot::Entity>(b).await?;
    }
    let row = sandbox::ensure(&state, auth.scope(), body.bot_id).await?;
    Ok(HttpResponse::Ok().json(shown(&row)))
}

/// Sends what the phone's user did (text, a button or list tap, a location) to the bot:
/// Parley signs a Cloud API webhook and posts it to the sandbox integration's callback.
#[utoipa::path(
    operation_id = "sendSandboxMessage",
    tag = "Sandbox",
    request_body = SandboxInput,
    responses(
        (status = 200, body = SandboxMessage),
        (status = 400, body = ErrorBody),
        (status = 404, description = "No sandbox yet", body = ErrorBody),
        (status = 503, description = "The callback did not accept the webhook", body = ErrorBody),
    )
)]
#[post("/sandbox/message/send")]
async fn send(
    auth: Auth,
    state: web::Data<AppState>,
    Json(body): Json<SandboxInput>,
) -> ApiResult<HttpResponse> {
    auth.require(Role::Agent)?;
    let rec = sandbox::send(&state, auth.scope(), &body).await?;
    Ok(HttpResponse::Ok().json(SandboxMessage::from(rec)))
}

/// The sandbox phone's chat, both directions. Use `order=asc` and the last id as `cursor` to
/// poll for what is new.
#[utoipa::path(
    operation_id = "listSandboxMessages",
    tag = "Sandbox",
    params(ListQuery),
    responses((status = 200, body = ListResponse<SandboxMessage>), (status = 404, body = ErrorBody))
)]
#[get("/sandbox/message/list")]
async fn list_messages(auth: Auth, query: web::Query<ListQuery>) -> ApiResult<HttpResponse> {
    let scope = auth.scope();
    let row = sandbox::find(scope)
        .await?
        .ok_or_else(|| ApiError::not_found("sandbox"))?;
    let rows = scope
        .list::<sm::Entity>(
            &query.page()?,
            Condition::all().add(sm::Column::IntegrationId.eq(row.id)),
        )
        .await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter()
            .map(SandboxMessage::from)
            .collect::<Vec<_>>(),
        cursor,
    )))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn fault(f: GraphFault) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(f.status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(f.body)
}

/// The sandbox's Graph API: reads the sandbox's phone number, as Meta's
/// `GET /{version}/{phone-number-id}` does. Errors are in Meta's shape.
#[utoipa::path(
    operation_id = "sandboxGraphPhoneNumber",
    tag = "Sandbox",
    security(()),
    params(("version" = String, Path), ("phoneNumberId" = String, Path)),
    responses((status = 200, description = "Meta's phone number object", body = Object), (status = 401, description = "Meta's error 190", body = Object))
)]
#[get("/api/v1/sandbox/graph/{version}/{phoneNumberId}")]
async fn graph_phone_number(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> HttpResponse {
    match sandbox::authorize(&state, &path.1, bearer(&req)).await {
        Ok(row) => HttpResponse::Ok().json(sandbox::phone_number(&row)),
        Err(f) => fault(f),
    }
}

/// The sandbox's Graph API: takes a Cloud API message for the phone, or a mark-read, as
/// Meta's `POST /{version}/{phone-number-id}/messages` does.
#[utoipa::path(
    operation_id = "sandboxGraphMessages",
    tag = "Sandbox",
    security(()),
    params(("version" = String, Path), ("phoneNumberId" = String, Path)),
    request_body(content = Object, description = "A Cloud API message body"),
    responses((status = 200, description = "Meta's send or mark-read answer", body = Object), (status = 400, description = "Meta's error object", body = Object))
)]
#[post("/api/v1/sandbox/graph/{version}/{phoneNumberId}/messages")]
async fn graph_messages(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let row = match sandbox::authorize(&state, &path.1, bearer(&req)).await {
        Ok(row) => row,
        Err(f) => return fault(f),
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return fault(GraphFault {
            status: 400,
            body: serde_json::json!({"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100, "fbtrace_id": "ParleySandbox"}}),
        });
    };
    match sandbox::receive(&state, &row, body).await {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(f) => fault(f),
    }
}
