//! Sending a turn's reply: every part is stored before it is sent, so a retried or re-run turn
//! never sends the same part twice.
//!
//! A part moves `pending` → `sending` (committed before the HTTP call) → `sent` with its wamid,
//! or `failed` with Meta's error. A part found in `sending` when a turn resumes after a crash
//! may or may not have reached Meta; it is not sent again (at most once beats twice), and the
//! status webhooks for it, if any, still arrive.

use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QueryTrait};
use secrecy::SecretString;
use serde_json::json;

use crate::channels::whatsapp::graph::{GraphClient, GraphError};
use crate::error::ApiError;
use crate::events::{Event, Level};
use crate::state::AppState;
use crate::store::entities::{message, whatsapp_integration as wi};
use crate::store::write_one;
use crate::time::now_ms;

/// Attempts per part for errors worth retrying.
const MAX_ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Where a turn's parts go.
pub struct Destination<'a> {
    pub tenant_id: &'a str,
    pub integration_id: &'a str,
    pub phone_number_id: &'a str,
    pub token: &'a SecretString,
    pub wa_id: &'a str,
    /// The integration's Graph API ([`AppState::graph_for`]).
    pub graph: &'a GraphClient,
}

/// The Cloud API body for a text part.
pub fn text_body(to: &str, text: &str) -> serde_json::Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": false, "body": text},
    })
}

/// The Cloud API body a stored part goes out as: a text part as text; a part a tool made
/// (buttons, a list, a location, media, a reaction) as the body the tool built, kept in the
/// part's `meta.whatsapp` so that the conversation's message list shows what was sent.
pub fn part_body(to: &str, part: &message::Model) -> serde_json::Value {
    match part.meta.get(WHATSAPP_BODY) {
        Some(body @ serde_json::Value::Object(_)) => {
            let mut body = body.clone();
            body["to"] = json!(to);
            body
        }
        _ => text_body(to, &part.text),
    }
}

/// The key of a part's `meta` that holds the Cloud API body of a non-text part.
pub const WHATSAPP_BODY: &str = "whatsapp";

/// Sends the pending parts of `turn_id` in order. Stops at the first part that fails for good:
/// what follows it would fail the same way or make no sense alone. `stored` are the parts just
/// stored by this worker, when it has them; otherwise (a resumed turn) they are read.
pub async fn send_turn(
    state: &AppState,
    dest: &Destination<'_>,
    turn_id: &str,
    stored: Option<Vec<message::Model>>,
) -> Result<(), ApiError> {
    let db = state.store().db();
    let parts = match stored {
        Some(parts) => parts,
        None => {
            message::Entity::find()
                .filter(message::Column::TenantId.eq(dest.tenant_id))
                .filter(message::Column::TurnId.eq(turn_id))
                .order_by_asc(message::Column::Part)
                .all(db)
                .await?
        }
    };
    for part in parts {
        match part.delivery_status.as_deref() {
            Some("pending") => {}
            Some("sending") => {
                Event::new(
                    "whatsapp.message.unconfirmed",
                    Level::Warning,
                    "a reply part was being sent when the worker stopped; not sent again",
                )
                .integration(dest.integration_id)
                .conversation(&part.conversation_id)
                .data(json!({"messageId": part.id}))
                .record(db, dest.tenant_id)
                .await?;
                continue;
            }
            _ => continue,
        }
        if send_part(state, dest, &part).await?.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Sends one stored `pending` part: marks it `sending` (committed first), sends it with
/// retries, then records the wamid, or the failure with Meta's error in the event log (a 190
/// also flags the integration). The outer error is the database's; the inner, Meta's.
pub async fn send_part(
    state: &AppState,
    dest: &Destination<'_>,
    part: &message::Model,
) -> Result<Result<String, GraphError>, ApiError> {
    let db = state.store().db();
    let update = || {
        message::Entity::update_many()
            .filter(message::Column::Id.eq(part.id.as_str()))
            .col_expr(message::Column::UpdatedAt, Expr::value(now_ms()))
    };
    let backend = db.get_database_backend();
    write_one(
        db,
        update()
            .col_expr(message::Column::DeliveryStatus, Expr::value("sending"))
            .build(backend),
    )
    .await?;
    match send_with_retries(dest, part).await {
        Ok(wamid) => {
            write_one(
                db,
                update()
                    .col_expr(message::Column::Wamid, Expr::value(wamid.clone()))
                    .col_expr(message::Column::DeliveryStatus, Expr::value("sent"))
                    .build(backend),
            )
            .await?;
            // Meta may have reported on the message before its send call returned.
            crate::ingest::apply_stored_statuses(db, dest.tenant_id, dest.integration_id, &wamid)
                .await?;
            Ok(Ok(wamid))
        }
        Err(e) => {
            let (code, title) = match &e {
                GraphError::Meta { error, .. } => (
                    i32::try_from(error.code).ok(),
                    error.title.clone().unwrap_or_else(|| error.explanation()),
                ),
                other => (None, other.to_string()),
            };
            write_one(
                db,
                update()
                    .col_expr(message::Column::DeliveryStatus, Expr::value("failed"))
                    .col_expr(message::Column::ErrorCode, Expr::value(code))
                    .col_expr(message::Column::ErrorTitle, Expr::value(title.clone()))
                    .build(backend),
            )
            .await?;
            Event::new(
                "whatsapp.message.failed",
                Level::Error,
                format!("sending a message failed: {e}"),
            )
            .integration(dest.integration_id)
            .conversation(&part.conversation_id)
            .data(json!({"messageId": part.id, "code": code, "title": title}))
            .record(db, dest.tenant_id)
            .await?;
            if e.meta_code() == Some(190) {
                flag_token(state, dest, &e).await?;
            }
            Ok(Err(e))
        }
    }
}

async fn send_with_retries(
    dest: &Destination<'_>,
    part: &message::Model,
) -> Result<String, GraphError> {
    let body = part_body(dest.wa_id, part);
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match dest
            .graph
            .send_message(dest.phone_number_id, dest.token, &body)
            .await
        {
            Ok(wamid) => return Ok(wamid),
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "sending a reply part failed; retrying");
                tokio::time::sleep(backoff + jitter(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Up to half of `d`, so retries of many workers spread out.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    d.mul_f64(f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0)
}

/// Meta rejected the token (190): the integration needs attention; fetch shows it.
async fn flag_token(
    state: &AppState,
    dest: &Destination<'_>,
    e: &GraphError,
) -> Result<(), ApiError> {
    wi::Entity::update_many()
        .col_expr(
            wi::Column::Status,
            Expr::value(crate::integrations::whatsapp::status::TOKEN_INVALID),
        )
        .col_expr(
            wi::Column::StatusMessage,
            Expr::value(format!("Meta rejected the access token while sending: {e}")),
        )
        .col_expr(wi::Column::UpdatedAt, Expr::value(now_ms()))
        .filter(wi::Column::Id.eq(dest.integration_id))
        .filter(wi::Column::TenantId.eq(dest.tenant_id))
        .exec(state.store().db())
        .await?;
    state.callbacks().forget(dest.integration_id);
    Ok(())
}
