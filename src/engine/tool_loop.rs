//! The model's tool loop inside a turn's `prompted` → `replied` step.
//!
//! The model gets the WhatsApp tools ([`super::tools`]) and may call them for up to
//! `PARLEY_TOOL_ROUNDS` rounds. Each round's output (the text it wrote and one message per tool
//! call, in the order it produced them) becomes reply parts of the turn, sent at once so that a
//! progress note or a list reaches the user while the turn goes on. After the last round the
//! model is asked once more with `tool_choice: none` and its text is the turn's final answer,
//! stored by the caller like any reply.
//!
//! Crash safety. A round is committed in one transaction: its parts (as `pending`, keyed by
//! `(turn_id, part)` with numbers following the turn's last part), the contact fields it saved,
//! and the round itself appended to `turn.tool_rounds` (the calls, their arguments and what each
//! produced). Only then are the parts sent, through the outbox. A turn resumed after a crash
//! therefore:
//! - before a round's commit: asks the model for that round again; nothing of it was stored or
//!   sent, so nothing is sent twice;
//! - after it: replays the stored rounds into the prompt instead of asking for them again, sends
//!   the parts still `pending`, and goes on with the next round. A part caught in `sending` is
//!   not sent again (the outbox's rule). The model never sees a round it produced vanish, and a
//!   part's number is never reused for different content.
//!
//! I chose to store the rounds on the turn rather than re-derive them from the parts because
//! the parts alone lose what the model needs to continue (call ids, arguments, errors it was
//! told about), and a new state between `prompted` and `replied` would need the same data
//! anyway.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::outbox::{self, Destination, WHATSAPP_BODY};
use super::tools::{self, Action, Context, ToolError};
use crate::channels::whatsapp::graph::GraphClient;
use crate::conversation::format::{WHATSAPP_TEXT_LIMIT, split, to_whatsapp};
use crate::error::ApiResult;
use crate::events::{Event, Level};
use crate::llm::provider::{
    ChatMessage, ChatRequest, LlmError, LlmProvider, Segment, ToolCall, ToolChoice, Usage,
};
use crate::state::AppState;
use crate::store::entities::{inbound_message as inbound, message, turn};
use crate::time::now_ms;

/// One model answer that called tools, as stored in `turn.tool_rounds`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Round {
    /// The text the model wrote alongside its calls.
    #[serde(default)]
    pub text: String,
    pub calls: Vec<StoredCall>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
    pub outcome: Outcome,
}

/// What a call did; the model's tool result is derived from it when the prompt is built, so
/// that it can say whether the message was actually delivered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Became reply part `part` of the turn.
    Part { part: i32 },
    /// Refused; the model is told why.
    Error { message: String },
    /// Saved these contact fields.
    Saved { fields: Vec<String> },
}

/// A reply part to store: its text (shown in the conversation) and `meta` (with the Cloud API
/// body for non-text parts).
pub(super) struct Part {
    pub text: String,
    pub meta: Value,
}

impl Part {
    pub(super) fn text(text: String) -> Self {
        Self {
            text,
            meta: json!({}),
        }
    }
}

/// What the loop ends with: the final answer's text, and the tokens of every call.
pub(crate) struct Finish {
    pub text: String,
    pub usage: Usage,
    /// Whether earlier rounds stored parts; an empty final answer then needs no filler.
    pub said_something: bool,
    /// The number the final answer's first part gets.
    pub next_part: i32,
}

/// Where the turn's parts go, when the integration can send at all.
pub(super) struct Sender<'a> {
    pub phone_number_id: String,
    pub token: secrecy::SecretString,
    /// The integration's Graph API (the sandbox has its own).
    pub graph: std::borrow::Cow<'a, GraphClient>,
}

/// Runs the loop for turn `t`, on `base` (the prompt without tools), and returns the final
/// answer. Model failures are the `Err` (the caller answers with the apology); database
/// failures abort the turn for a retry.
pub(super) async fn run(
    state: &AppState,
    t: &turn::Model,
    contact_collection: bool,
    newest_wamid: Option<&str>,
    llm: &dyn LlmProvider,
    mut base: ChatRequest,
    sender: Option<&Sender<'_>>,
) -> ApiResult<Result<Finish, String>> {
    let db = state.store().db();
    let conversation_id = t.conversation_id.clone().unwrap_or_default();
    let max_rounds = state.settings().tool_rounds as usize;
    let mut rounds: Vec<Round> = t
        .tool_rounds
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    let reply_to = match newest_wamid {
        Some(w) => Some(w.to_owned()),
        None => newest_wamid_of(db, &t.id).await?,
    };
    let ctx = Context {
        contact_collection,
        reply_to: reply_to.as_deref(),
    };
    if max_rounds > 0 {
        base.tools = tools::specs(&ctx);
    }
    // Parts of a stored round the last run did not get to send go before anything new.
    if !rounds.is_empty() {
        flush(state, t, sender, 0).await?;
    }
    let mut usage = Usage::default();
    loop {
        let mut req = base.clone();
        req.messages.extend(replay(db, &t.id, &rounds).await?);
        let last = rounds.len() >= max_rounds || base.tools.is_empty();
        if last && !req.tools.is_empty() {
            req.tool_choice = ToolChoice::None;
        }
        let response = match llm.chat(&req).await {
            Ok(r) => r,
            // Some OpenAI-compatible servers refuse tools for models without tool support
            // ("does not support tools"). A bot that answered before tools existed must keep
            // answering: ask once more without them.
            Err(LlmError::BadRequest(why)) if rounds.is_empty() && !base.tools.is_empty() => {
                tracing::warn!(error = %why, "the model refused a request with tools; asking without");
                base.tools.clear();
                continue;
            }
            Err(e) => return Ok(Err(e.to_string())),
        };
        usage.input_tokens = usage
            .input_tokens
            .saturating_add(response.usage.input_tokens);
        usage.output_tokens = usage
            .output_tokens
            .saturating_add(response.usage.output_tokens);
        // The last round ends the turn even if a server ignored `tool_choice: none`.
        if response.tool_calls.is_empty() || last {
            // Without rounds (the usual turn) no part exists yet; skip the query.
            let next_part = if rounds.is_empty() && t.tool_rounds.is_none() {
                0
            } else {
                next_part(db, &t.id).await?
            };
            return Ok(Ok(Finish {
                text: response.text,
                usage,
                next_part,
                said_something: rounds.iter().any(|r| {
                    !r.text.trim().is_empty()
                        || r.calls
                            .iter()
                            .any(|c| matches!(c.outcome, Outcome::Part { .. }))
                }),
            }));
        }
        let order = if response.order.is_empty() {
            // A provider that does not report the order: text first, as OpenAI does.
            let mut o = vec![Segment::Text(response.text.clone())];
            o.extend((0..response.tool_calls.len()).map(Segment::Call));
            o
        } else {
            response.order.clone()
        };
        let round = execute(state, t, &ctx, &response.tool_calls, &order, sender).await?;
        let first = store_round(state, t, &conversation_id, &mut rounds, round).await?;
        flush(state, t, sender, first).await?;
        // A message clears "typing…"; the model is still at work, so show it again.
        if let (Some(s), Some(wamid)) = (sender, ctx.reply_to)
            && let Err(e) = s
                .graph
                .mark_read(&s.phone_number_id, &s.token, wamid, true)
                .await
        {
            tracing::debug!(error = %e, "showing typing again failed");
        }
    }
}

/// Runs a round's calls (validation, media uploads) without storing anything yet.
async fn execute(
    state: &AppState,
    t: &turn::Model,
    ctx: &Context<'_>,
    calls: &[ToolCall],
    order: &[Segment],
    sender: Option<&Sender<'_>>,
) -> ApiResult<PendingRound> {
    let mut pending = PendingRound::default();
    for segment in order {
        match segment {
            Segment::Text(text) => {
                pending.text.push_str(text);
                for p in split(&to_whatsapp(text), WHATSAPP_TEXT_LIMIT) {
                    pending.items.push(Item::Part(Part::text(p)));
                }
            }
            Segment::Call(i) => {
                let Some(call) = calls.get(*i) else { continue };
                let result = match tools::prepare(call, ctx) {
                    Err(e) => Err(e),
                    Ok(Action::Message { body, summary }) => Ok(Item::Part(Part {
                        text: summary,
                        meta: json!({ WHATSAPP_BODY: body, "tool": call.name }),
                    })),
                    Ok(Action::Progress(text)) => Ok(Item::Part(Part {
                        text,
                        meta: json!({"tool": call.name}),
                    })),
                    Ok(Action::Media(req)) => match sender {
                        None => Err(ToolError(
                            "this WhatsApp number cannot send media right now".to_owned(),
                        )),
                        Some(s) => tools::resolve_media(
                            state,
                            &s.graph,
                            &t.tenant_id,
                            &s.phone_number_id,
                            &s.token,
                            &req,
                        )
                        .await
                        .map(|(body, summary)| {
                            Item::Part(Part {
                                text: summary,
                                meta: json!({ WHATSAPP_BODY: body, "tool": call.name }),
                            })
                        }),
                    },
                    Ok(Action::Contact(fields)) => Ok(Item::Contact(fields)),
                };
                tracing::debug!(tool = %call.name, ok = result.is_ok(), "tool call");
                pending.calls.push((call.clone(), pending.items.len()));
                match result {
                    Ok(item) => pending.items.push(item),
                    Err(e) => pending.items.push(Item::Error(e)),
                }
            }
        }
    }
    Ok(pending)
}

#[derive(Default)]
struct PendingRound {
    text: String,
    items: Vec<Item>,
    /// Each call with the index of its item.
    calls: Vec<(ToolCall, usize)>,
}

enum Item {
    Part(Part),
    Contact(tools::ContactFields),
    Error(ToolError),
}

/// Commits a round: its parts, its contact fields and the round itself, together. Returns the
/// number of the round's first part.
async fn store_round(
    state: &AppState,
    t: &turn::Model,
    conversation_id: &str,
    rounds: &mut Vec<Round>,
    pending: PendingRound,
) -> ApiResult<i32> {
    let db = state.store().db();
    let txn = crate::store::begin_write(db).await?;
    let mut next = next_part(&txn, &t.id).await?;
    let mut outcomes = Vec::with_capacity(pending.items.len());
    let mut parts = Vec::new();
    for item in pending.items {
        let outcome = match item {
            Item::Part(p) => {
                parts.push(p);
                next += 1;
                Outcome::Part { part: next - 1 }
            }
            Item::Error(e) => {
                refused(&txn, t, conversation_id, &e).await?;
                Outcome::Error { message: e.0 }
            }
            Item::Contact(fields) => {
                match tools::save_contact(&txn, &t.tenant_id, &t.wa_id, &fields).await? {
                    Ok(()) => Outcome::Saved {
                        fields: fields.saved(),
                    },
                    Err(e) => {
                        refused(&txn, t, conversation_id, &e).await?;
                        Outcome::Error { message: e.0 }
                    }
                }
            }
        };
        outcomes.push(outcome);
    }
    let first = next - parts.len() as i32;
    outbox::insert_parts(&txn, &outbox::part_rows(t, first, &parts, None, false)).await?;
    let calls = pending
        .calls
        .into_iter()
        .map(|(call, item)| StoredCall {
            id: call.id,
            name: call.name,
            arguments: call.arguments,
            outcome: outcomes.get(item).cloned().unwrap_or(Outcome::Error {
                message: "not run".to_owned(),
            }),
        })
        .collect();
    rounds.push(Round {
        text: pending.text,
        calls,
    });
    let json = serde_json::to_string(&rounds).map_err(anyhow::Error::from)?;
    turn::Entity::update_many()
        .col_expr(turn::Column::ToolRounds, Expr::value(json))
        .col_expr(turn::Column::UpdatedAt, Expr::value(now_ms()))
        .filter(turn::Column::Id.eq(t.id.as_str()))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(first)
}

/// Logs a refused call, so a tenant can see why their bot's buttons never appeared.
async fn refused<C: ConnectionTrait>(
    conn: &C,
    t: &turn::Model,
    conversation_id: &str,
    e: &ToolError,
) -> ApiResult<()> {
    Event::new(
        "bot.tool.refused",
        Level::Warning,
        format!("a tool call of the model was refused: {e}"),
    )
    .integration(&t.integration_id)
    .conversation(conversation_id)
    .record(conn, &t.tenant_id)
    .await?;
    Ok(())
}

/// Sends the turn's pending parts from number `from` on, in order, when the integration can
/// send. Earlier parts were flushed after their own round.
async fn flush(
    state: &AppState,
    t: &turn::Model,
    sender: Option<&Sender<'_>>,
    from: i32,
) -> ApiResult<()> {
    let Some(s) = sender else {
        return Ok(());
    };
    let parts = message::Entity::find()
        .filter(message::Column::TenantId.eq(t.tenant_id.as_str()))
        .filter(message::Column::TurnId.eq(t.id.as_str()))
        .filter(message::Column::Part.gte(from))
        .order_by_asc(message::Column::Part)
        .all(state.store().db())
        .await?;
    let dest = Destination {
        tenant_id: &t.tenant_id,
        integration_id: &t.integration_id,
        phone_number_id: &s.phone_number_id,
        token: &s.token,
        wa_id: &t.wa_id,
        graph: &s.graph,
    };
    outbox::send_turn(state, &dest, &t.id, Some(parts)).await
}

/// The stored rounds as the assistant's tool calls and their results, for the next prompt.
async fn replay<C: ConnectionTrait>(
    conn: &C,
    turn_id: &str,
    rounds: &[Round],
) -> ApiResult<Vec<ChatMessage>> {
    if rounds.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<(Option<i32>, Option<String>, Option<String>)> = message::Entity::find()
        .filter(message::Column::TurnId.eq(turn_id))
        .select_only()
        .column(message::Column::Part)
        .column(message::Column::DeliveryStatus)
        .column(message::Column::ErrorTitle)
        .into_tuple()
        .all(conn)
        .await?;
    let status = |part: i32| {
        parts
            .iter()
            .find(|(p, _, _)| *p == Some(part))
            .map(|(_, s, e)| (s.clone(), e.clone()))
    };
    let mut out = Vec::new();
    for round in rounds {
        let calls = round
            .calls
            .iter()
            .map(|c| ToolCall {
                id: c.id.clone(),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            })
            .collect();
        out.push(ChatMessage::assistant_tool_calls(round.text.clone(), calls));
        for c in &round.calls {
            let result = match &c.outcome {
                Outcome::Part { part } => match status(*part) {
                    Some((Some(s), _)) if matches!(s.as_str(), "sent" | "delivered" | "read") => {
                        "Sent to the user.".to_owned()
                    }
                    Some((Some(s), title)) if s == "failed" => format!(
                        "WhatsApp did not accept it: {}. Answer without it.",
                        title.unwrap_or_else(|| "unknown error".to_owned())
                    ),
                    _ => "Queued; the user gets it in order.".to_owned(),
                },
                Outcome::Error { message } => format!("Error: {message}"),
                Outcome::Saved { fields } => {
                    format!("Saved to the contact: {}.", fields.join(", "))
                }
            };
            out.push(ChatMessage::tool_result(c.id.clone(), result));
        }
    }
    Ok(out)
}

/// The number the turn's next part gets.
pub(super) async fn next_part<C: ConnectionTrait>(conn: &C, turn_id: &str) -> ApiResult<i32> {
    let last: Option<Option<i32>> = message::Entity::find()
        .filter(message::Column::TurnId.eq(turn_id))
        .select_only()
        .column(message::Column::Part)
        .order_by_desc(message::Column::Part)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(last.flatten().map_or(0, |p| p + 1))
}

/// The wamid of the user's newest message in the turn (what `react` reacts to).
async fn newest_wamid_of<C: ConnectionTrait>(conn: &C, turn_id: &str) -> ApiResult<Option<String>> {
    Ok(inbound::Entity::find()
        .filter(inbound::Column::TurnId.eq(turn_id))
        .select_only()
        .column(inbound::Column::Wamid)
        .order_by_desc(inbound::Column::Id)
        .into_tuple()
        .one(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_round_trip_through_their_stored_json() {
        let rounds = vec![Round {
            text: "One moment.".into(),
            calls: vec![
                StoredCall {
                    id: "call_1".into(),
                    name: "send_buttons".into(),
                    arguments: json!({"body": "x"}),
                    outcome: Outcome::Part { part: 1 },
                },
                StoredCall {
                    id: "call_2".into(),
                    name: "react".into(),
                    arguments: json!("{broken"),
                    outcome: Outcome::Error {
                        message: "bad".into(),
                    },
                },
                StoredCall {
                    id: "call_3".into(),
                    name: "collect_contact".into(),
                    arguments: json!({"name": "Zoë"}),
                    outcome: Outcome::Saved {
                        fields: vec!["name".into()],
                    },
                },
            ],
        }];
        let text = serde_json::to_string(&rounds).unwrap();
        assert!(text.contains(r#""kind":"part","part":1"#));
        let back: Vec<Round> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rounds);
    }
}
