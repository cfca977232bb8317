//! Meta's calls to an integration's callback URL,
//! `/api/v1/integration/whatsapp/{whatsappIntegrationId}/callback`.
//!
//! - GET is the subscription handshake: echo `hub.challenge` when `hub.verify_token` matches.
//! - POST carries messages and statuses. The signature is checked on the raw bytes before
//!   anything is parsed; the webhook is then stored (deduplicated) and queued, and only after
//!   that commit does Meta get its 200. Meta retries anything else, so a 503 when storage is
//!   down loses nothing.

use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::channels::whatsapp::signature;
use crate::channels::whatsapp::webhook::{self, ChangeValue, MessageContent, MessagesValue};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::events::{Event, Level};
use crate::http::json::read_body;
use crate::ingest::cache::CallbackTarget;
use crate::ingest::{Batch, InboundRecord, IngestError, StatusRecord};
use crate::state::AppState;

/// Largest webhook body accepted. Meta batches up to 1000 updates; real bodies are far smaller.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(verify).service(receive);
}

async fn target(state: &AppState, id: &str) -> ApiResult<std::sync::Arc<CallbackTarget>> {
    state
        .callbacks()
        .get(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("whatsapp integration"))
}

/// Writes an event unless the limiter says this kind of entry was written recently.
async fn limited_event(
    state: &AppState,
    t: &CallbackTarget,
    key: &str,
    event: Event,
) -> ApiResult<()> {
    let limit_key = format!("{}:{key}", t.row.id);
    if let Some(suppressed) = state.webhook_events().admit(&limit_key) {
        let event = if suppressed > 0 {
            event.data(json!({"suppressedSinceLast": suppressed}))
        } else {
            event
        };
        event.record(state.store().db(), &t.row.tenant_id).await?;
    }
    Ok(())
}

/// Meta's subscription handshake: answers `hub.challenge` when `hub.mode` is `subscribe` and
/// `hub.verify_token` is the integration's verify token; 403 otherwise.
#[utoipa::path(
    operation_id = "verifyWhatsAppCallback",
    tag = "WhatsApp webhook",
    security(()),
    params(
        ("whatsappIntegrationId" = String, Path),
        ("hub.mode" = Option<String>, Query),
        ("hub.verify_token" = Option<String>, Query),
        ("hub.challenge" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "The challenge, as text/plain", body = String),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
#[get("/api/v1/integration/whatsapp/{whatsappIntegrationId}/callback")]
async fn verify(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let t = target(&state, &path).await?;
    let mut mode = None;
    let mut token = None;
    let mut challenge = None;
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.as_ref() {
            "hub.mode" => mode = Some(v.into_owned()),
            "hub.verify_token" => token = Some(v.into_owned()),
            "hub.challenge" => challenge = Some(v.into_owned()),
            _ => {}
        }
    }
    let token_ok = token
        .as_deref()
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(t.row.verify_token.as_bytes())));
    // The challenge is echoed back: keep it to what Meta sends (digits, in practice).
    let challenge = challenge
        .filter(|c| !c.is_empty() && c.len() <= 256 && c.bytes().all(|b| b.is_ascii_graphic()));
    match (mode.as_deref() == Some("subscribe"), token_ok, challenge) {
        (true, true, Some(challenge)) => {
            Event::new(
                "whatsapp.webhook.verified",
                Level::Info,
                "Meta verified the callback URL",
            )
            .integration(&t.row.id)
            .record(state.store().db(), &t.row.tenant_id)
            .await?;
            Ok(HttpResponse::Ok()
                .content_type(ContentType::plaintext())
                .body(challenge))
        }
        (is_subscribe, token_ok, challenge) => {
            let why = if !is_subscribe {
                "hub.mode is not subscribe"
            } else if !token_ok {
                "hub.verify_token does not match"
            } else if challenge.is_none() {
                "hub.challenge is missing or invalid"
            } else {
                "invalid verification request"
            };
            limited_event(
                &state,
                &t,
                "verify",
                Event::new(
                    "whatsapp.webhook.verification_failed",
                    Level::Warning,
                    format!("callback verification refused: {why}"),
                )
                .integration(&t.row.id),
            )
            .await?;
            Err(ApiError::not_authorized(format!(
                "verification failed: {why}"
            )))
        }
    }
}

/// Receives Meta's webhook: verifies `X-Hub-Signature-256`, stores and queues every message
/// (once: redeliveries are acknowledged and counted as duplicates), applies statuses, and
/// answers 200 once all of it is committed.
#[utoipa::path(
    operation_id = "receiveWhatsAppCallback",
    tag = "WhatsApp webhook",
    security(()),
    params(("whatsappIntegrationId" = String, Path)),
    request_body(content = Object, description = "Meta's webhook body, signed with the app secret"),
    responses(
        (status = 200, description = "Stored"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
#[post("/api/v1/integration/whatsapp/{whatsappIntegrationId}/callback")]
async fn receive(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let t = target(&state, &path).await?;
    let body = read_body(&req, payload.into_inner(), MAX_WEBHOOK_BODY).await?;
    check_signature(&state, &t, &req, &body).await?;

    let parsed = match webhook::parse(&body) {
        Ok(p) => p,
        Err(e) => {
            limited_event(
                &state,
                &t,
                "malformed",
                Event::new(
                    "whatsapp.webhook.malformed",
                    Level::Error,
                    format!("a signed webhook was not valid JSON: {e}"),
                )
                .integration(&t.row.id),
            )
            .await?;
            return Err(ApiError::bad_request(
                "the body is not a valid webhook JSON document",
            ));
        }
    };
    let batch = to_batch(&t, parsed);
    match state.ingestor().submit(batch).await {
        Ok(outcome) => {
            if outcome.duplicates > 0 {
                tracing::info!(
                    duplicates = outcome.duplicates,
                    "redelivered messages acknowledged"
                );
            }
            Ok(HttpResponse::Ok().json(json!({
                "queued": outcome.queued,
                "ignored": outcome.ignored,
                "duplicates": outcome.duplicates,
                "statuses": outcome.statuses,
            })))
        }
        Err(IngestError::IntegrationGone) => {
            state.callbacks().forget(&t.row.id);
            Err(ApiError::not_found("whatsapp integration"))
        }
        Err(IngestError::Unavailable(why)) => Err(ApiError::Unavailable(anyhow::anyhow!(why))),
    }
}

async fn check_signature(
    state: &AppState,
    t: &CallbackTarget,
    req: &HttpRequest,
    body: &[u8],
) -> ApiResult<()> {
    if t.row.allow_unsigned {
        return Ok(());
    }
    let Some(secret) = &t.app_secret else {
        limited_event(
            state,
            t,
            "no-secret",
            Event::new(
                "whatsapp.webhook.signature_failed",
                Level::Error,
                "webhook refused: the integration needs its appSecret to check Meta's signature",
            )
            .integration(&t.row.id),
        )
        .await?;
        return Err(ApiError::not_authenticated(
            "this integration has no appSecret, so webhooks cannot be verified",
        ));
    };
    let header = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = signature::verify(secret.expose_secret(), body, header) {
        limited_event(
            state,
            t,
            "signature",
            Event::new(
                "whatsapp.webhook.signature_failed",
                Level::Warning,
                format!("webhook refused: X-Hub-Signature-256 {}", describe(&e)),
            )
            .integration(&t.row.id),
        )
        .await?;
        return Err(ApiError::not_authenticated(
            "invalid or missing X-Hub-Signature-256",
        ));
    }
    Ok(())
}

fn describe(e: &signature::SignatureError) -> &'static str {
    match e {
        signature::SignatureError::Missing => "is missing",
        signature::SignatureError::Malformed => "is malformed",
        signature::SignatureError::Mismatch => "does not match the body",
    }
}

/// Longest raw value kept in an event-log entry for a field we do not process.
const MAX_LOGGED_VALUE: usize = 8 * 1024;

fn to_batch(t: &CallbackTarget, parsed: webhook::Webhook) -> Batch {
    let mut batch = Batch {
        tenant_id: t.row.tenant_id.clone(),
        integration_id: t.row.id.clone(),
        bot_id: t.row.bot_id.clone(),
        ..Batch::default()
    };
    for entry in parsed.entry {
        for change in entry.changes {
            match change.value {
                ChangeValue::Messages(value) => add_messages(t, &mut batch, &entry.id, value),
                ChangeValue::Other(raw) => {
                    let text = raw.to_string();
                    let kept = if text.len() <= MAX_LOGGED_VALUE {
                        raw
                    } else {
                        json!({"truncated": true})
                    };
                    batch.events.push(
                        Event::new(
                            "whatsapp.webhook.field",
                            Level::Info,
                            format!("{} update received (not processed)", change.field),
                        )
                        .integration(&t.row.id)
                        .data(json!({"field": change.field, "entryId": entry.id, "value": kept})),
                    );
                }
            }
        }
    }
    batch
}

fn add_messages(t: &CallbackTarget, batch: &mut Batch, entry_id: &str, value: MessagesValue) {
    if let Some(mine) = &t.row.phone_number_id
        && value.metadata.phone_number_id != *mine
    {
        batch.events.push(
            Event::new(
                "whatsapp.webhook.wrong_number",
                Level::Warning,
                format!(
                    "a change for phone number id {} was not processed: this integration is {mine}",
                    value.metadata.phone_number_id
                ),
            )
            .integration(&t.row.id)
            .data(json!({
                "phoneNumberId": value.metadata.phone_number_id,
                "messages": value.messages.len(),
                "statuses": value.statuses.len(),
            })),
        );
        return;
    }
    for e in &value.errors {
        batch.events.push(
            Event::new(
                "whatsapp.webhook.error",
                Level::Error,
                format!("Meta reported error {}: {}", e.code, e.title.as_deref().unwrap_or("")),
            )
            .integration(&t.row.id)
            .data(json!({"code": e.code, "title": e.title, "message": e.message, "details": e.details})),
        );
    }
    if value.skipped > 0 {
        batch.events.push(
            Event::new(
                "whatsapp.webhook.unreadable",
                Level::Warning,
                format!("{} unreadable elements skipped", value.skipped),
            )
            .integration(&t.row.id)
            .data(json!({"entryId": entry_id})),
        );
    }
    let metadata = json!({
        "phoneNumberId": value.metadata.phone_number_id,
        "displayPhoneNumber": value.metadata.display_phone_number,
    });
    for m in value.messages {
        if matches!(m.content, MessageContent::Unknown) {
            batch.events.push(
                Event::new(
                    "whatsapp.message.unknown_type",
                    Level::Warning,
                    format!("message of unknown type {:?} stored as received", m.kind),
                )
                .integration(&t.row.id)
                .data(json!({"wamid": m.id, "type": m.kind})),
            );
        }
        let contact: Value = value
            .contacts
            .iter()
            .find(|c| c.wa_id == m.from)
            .map(|c| json!({"waId": c.wa_id, "name": c.profile.as_ref().and_then(|p| p.name.clone())}))
            .unwrap_or(Value::Null);
        let payload =
            json!({"message": m.raw, "contact": contact, "metadata": metadata}).to_string();
        batch.messages.push(InboundRecord {
            allowed: t.allow_from.allows(&m.from),
            wamid: m.id,
            wa_id: m.from,
            kind: m.kind,
            payload,
            sent_at: m.timestamp,
        });
    }
    for s in value.statuses {
        let first_error = s.errors.first();
        // Known states are short; anything else Meta invents is kept to the column's width.
        let status: String = s.status.as_str().chars().take(16).collect();
        batch.statuses.push(StatusRecord {
            error_code: first_error.and_then(|e| i32::try_from(e.code).ok()),
            error_title: first_error.and_then(|e| e.title.clone().or_else(|| e.message.clone())),
            payload: s.raw.to_string(),
            status_at: s.timestamp,
            wamid: s.id,
            status,
        });
    }
}
