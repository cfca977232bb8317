//! Sending a turn's reply: every part is stored before it is sent, so a retried or re-run turn
//! never sends the same part twice.
//!
//! A part moves `pending` → `sending` (committed before the HTTP call) → `sent` with its wamid,
//! or `failed` with Meta's error. A part found in `sending` when a turn resumes after a crash
//! may or may not have reached Meta; it is not sent again (at most once beats twice), and the
//! status webhooks for it, if any, still arrive.

use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QueryTrait,
};
use secrecy::SecretString;
use serde_json::json;

use super::Step;
use super::tool_loop::Part;
use crate::channels::whatsapp::graph::{GraphClient, GraphError};
use crate::error::ApiError;
use crate::events::{Event, Level};
use crate::ids::{new_id, prefix};
use crate::state::AppState;
use crate::store::entities::{message, turn, whatsapp_integration as wi};
use crate::store::{write_gate, write_one};
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

/// A part Meta accepted, as the writer records it.
#[derive(Debug)]
pub struct Sent {
    pub integration_id: String,
    pub message_id: String,
    pub wamid: String,
}

/// The rows of a turn's reply parts, numbered from `first` (after the parts its tool rounds
/// stored). The first carries the tokens of the model calls that wrote them; with `sending`
/// it is stored as `sending`, because it goes out right after the commit.
pub(super) fn part_rows(
    t: &turn::Model,
    first: i32,
    parts: &[Part],
    usage: Option<(u32, u32)>,
    sending: bool,
) -> Vec<message::Model> {
    let now = now_ms();
    let tokens = |n: u32| Some(i32::try_from(n).unwrap_or(i32::MAX));
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let (input_tokens, output_tokens) = match (i, usage) {
                (0, Some((a, b))) => (tokens(a), tokens(b)),
                _ => (None, None),
            };
            message::Model {
                id: new_id(prefix::MESSAGE),
                tenant_id: t.tenant_id.clone(),
                conversation_id: t.conversation_id.clone().unwrap_or_default(),
                kind: "bot".to_owned(),
                text: part.text.clone(),
                meta: part.meta.clone(),
                wamid: None,
                inbound_id: None,
                turn_id: Some(t.id.clone()),
                part: Some(first + i as i32),
                delivery_status: Some(
                    if i == 0 && sending {
                        "sending"
                    } else {
                        "pending"
                    }
                    .to_owned(),
                ),
                error_code: None,
                error_title: None,
                input_tokens,
                output_tokens,
                created_at: now,
                updated_at: now,
            }
        })
        .collect()
}

/// Stores reply parts before any is sent. `(turn_id, part)` is unique: a resumed turn stores
/// its parts once.
pub(super) async fn insert_parts<C: ConnectionTrait>(
    conn: &C,
    rows: &[message::Model],
) -> Result<(), DbErr> {
    crate::store::insert_rows(
        conn,
        [
            "INSERT INTO message (id, tenant_id, conversation_id, text, meta, delivery_status, \
             turn_id, part, input_tokens, output_tokens, created_at, updated_at, kind) VALUES ",
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            " ON CONFLICT (turn_id, part) DO NOTHING",
        ],
        rows,
        |m| -> [sea_orm::Value; 13] {
            [
                m.id.clone().into(),
                m.tenant_id.clone().into(),
                m.conversation_id.clone().into(),
                m.text.clone().into(),
                m.meta.clone().into(),
                m.delivery_status.clone().into(),
                m.turn_id.clone().into(),
                m.part.into(),
                m.input_tokens.into(),
                m.output_tokens.into(),
                m.created_at.into(),
                m.updated_at.into(),
                m.kind.clone().into(),
            ]
        },
    )
    .await?;
    Ok(())
}

/// Marks parts `sending`: committed before their send call, so a crash after it never sends
/// them again.
pub(super) async fn mark_sending<C: ConnectionTrait>(conn: &C, ids: &[&str]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    crate::store::execute(
        conn,
        &format!(
            "UPDATE message SET delivery_status = 'sending', updated_at = ? WHERE {}",
            crate::store::in_json(backend, "id")
        ),
        [now_ms().into(), crate::store::json_param(&ids)],
    )
    .await?;
    Ok(())
}

/// Records the wamids of parts Meta accepted, then applies statuses Meta may have reported on
/// them before their send calls returned.
pub(super) async fn mark_sent<C: ConnectionTrait>(conn: &C, sent: &[&Sent]) -> Result<(), DbErr> {
    if sent.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    let pairs: Vec<[&str; 2]> = sent
        .iter()
        .map(|s| [s.message_id.as_str(), s.wamid.as_str()])
        .collect();
    crate::store::execute(
        conn,
        &format!(
            "UPDATE message SET wamid = j.value ->> 1, delivery_status = 'sent', updated_at = ? \
             FROM {} WHERE message.id = j.value ->> 0",
            crate::store::json_rows(backend)
        ),
        [now_ms().into(), crate::store::json_param(&pairs)],
    )
    .await?;
    let wamids: Vec<[&str; 2]> = sent
        .iter()
        .map(|s| [s.integration_id.as_str(), s.wamid.as_str()])
        .collect();
    crate::ingest::apply_stored_statuses(conn, &wamids).await
}

/// Sends a turn's parts just stored, the first of them as `sending`, in order. Each send's
/// record and the next part's `sending` mark are one write through the engine's writer; the
/// last send's record is returned in the step that finishes the turn, for the caller to commit
/// with the lane's release. Stops at the first part that fails for good: what follows it would
/// fail the same way or make no sense alone.
pub(super) async fn send_fresh(
    state: &AppState,
    dest: &Destination<'_>,
    turn_id: &str,
    parts: Vec<message::Model>,
) -> Result<Step, ApiError> {
    let mut parts = parts.into_iter().peekable();
    let mut step = Step {
        finish: Some(turn_id.to_owned()),
        ..Step::default()
    };
    while let Some(part) = parts.next() {
        match send_with_retries(dest, &part).await {
            Ok(wamid) => {
                let sent = Sent {
                    integration_id: dest.integration_id.to_owned(),
                    message_id: part.id.clone(),
                    wamid,
                };
                let Some(next) = parts.peek() else {
                    step.sent = Some(sent);
                    return Ok(step);
                };
                state
                    .engine_writer()
                    .step(Step {
                        sent: Some(sent),
                        sending: Some(next.id.clone()),
                        ..Step::default()
                    })
                    .await?;
            }
            Err(e) => {
                record_failure(state, dest, &part, &e).await?;
                return Ok(step);
            }
        }
    }
    Ok(step)
}

/// Sends the pending parts of `turn_id` in order, one write at a time. Stops at the first part
/// that fails for good. `stored` are the parts just stored by this worker, when it has them;
/// otherwise (a resumed turn) they are read.
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
    {
        let _gate = write_gate(db.get_database_backend()).await;
        mark_sending(db, &[part.id.as_str()]).await?;
    }
    match send_with_retries(dest, part).await {
        Ok(wamid) => {
            let sent = Sent {
                integration_id: dest.integration_id.to_owned(),
                message_id: part.id.clone(),
                wamid: wamid.clone(),
            };
            let txn = crate::store::begin_write(db).await?;
            mark_sent(&txn, &[&sent]).await?;
            txn.commit().await?;
            Ok(Ok(wamid))
        }
        Err(e) => {
            record_failure(state, dest, part, &e).await?;
            Ok(Err(e))
        }
    }
}

/// Records a part Meta refused for good (or that ran out of retries): on the message and in
/// the event log; a 190 also flags the integration.
async fn record_failure(
    state: &AppState,
    dest: &Destination<'_>,
    part: &message::Model,
    e: &GraphError,
) -> Result<(), ApiError> {
    let db = state.store().db();
    let (code, title) = match e {
        GraphError::Meta { error, .. } => (
            i32::try_from(error.code).ok(),
            error.title.clone().unwrap_or_else(|| error.explanation()),
        ),
        other => (None, other.to_string()),
    };
    write_one(
        db,
        message::Entity::update_many()
            .filter(message::Column::Id.eq(part.id.as_str()))
            .col_expr(message::Column::UpdatedAt, Expr::value(now_ms()))
            .col_expr(message::Column::DeliveryStatus, Expr::value("failed"))
            .col_expr(message::Column::ErrorCode, Expr::value(code))
            .col_expr(message::Column::ErrorTitle, Expr::value(title.clone()))
            .build(db.get_database_backend()),
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
        flag_token(state, dest, e).await?;
    }
    Ok(())
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
