//! The conversation engine: turns stored inbound messages into bot replies.
//!
//! One job per inbound message wakes the engine for that message's contact ("lane"). Whoever
//! takes the lane runs the contact's turns one at a time, in arrival order, until no message is
//! waiting; the jobs of messages that arrive meanwhile find the lane taken and leave their
//! message to the holder, who checks once more after letting go. Different contacts run in
//! parallel, up to the worker concurrency.
//!
//! A turn is a small state machine stored in the database, so a crash at any point resumes
//! where it stopped without answering twice:
//! `started` (messages claimed) → `prompted` (user messages and session stored) → `replied`
//! (reply parts stored) → `done`. The model is called between `prompted` and `replied`; if the
//! process dies there, the call is simply made again. When the model calls its WhatsApp tools,
//! each tool round is stored (and its messages sent) within `prompted`, and a resumed turn
//! continues after the last stored round ([`tool_loop`] explains why nothing is sent twice).
//!
//! What a message becomes for the model (media downloaded and stored, voice transcribed,
//! structured messages spelled out, reactions recorded instead of answered) is
//! [`input`]'s business; the steps here only call it.

pub mod bot_cache;
pub mod input;
pub mod lane;
pub mod outbox;
pub mod session;
pub mod tool_loop;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::conversation::format::{WHATSAPP_TEXT_LIMIT, split, to_whatsapp};
use crate::error::ApiResult;
use crate::events::{Event, Level};
use crate::ids::{new_id, prefix};
use crate::jobs::InboundJob;
use crate::llm::model::ModelSpec;
use crate::llm::provider::{
    ChatMessage, ChatRequest, ContentPart, LlmProvider, ProviderConfig, ProviderKind,
    RequestMetadata, Role,
};
use crate::state::AppState;
use crate::store::entities::{
    contact, inbound_message as inbound, message, provider, turn, whatsapp_integration as wi,
};
use crate::time::now_ms;

use self::outbox::Destination;
use self::session::SessionKey;

/// Commands that end the session at once, whatever the integration adds.
pub const DEFAULT_RESET_COMMANDS: [&str; 3] = ["/reset", "/restart", "/new"];

/// What a turn claims at most at once.
const MAX_COALESCED: u64 = 20;

/// Handles one inbound job: runs its contact's lane if it is free.
pub async fn handle(state: &AppState, job: &InboundJob) -> ApiResult<()> {
    let wa_id = match &job.wa_id {
        Some(wa_id) => wa_id.clone(),
        None => {
            let Some(row) = inbound::Entity::find_by_id(job.inbound_id.clone())
                .filter(inbound::Column::TenantId.eq(job.tenant_id.as_str()))
                .one(state.store().db())
                .await?
            else {
                // The message is gone (tenant deleted, say): nothing to do, nothing to retry.
                return Ok(());
            };
            row.wa_id
        }
    };
    run_lane(state, &job.tenant_id, &job.integration_id, &wa_id).await
}

/// Runs the contact's waiting turns while holding its lane.
pub async fn run_lane(
    state: &AppState,
    tenant_id: &str,
    integration_id: &str,
    wa_id: &str,
) -> ApiResult<()> {
    let db = state.store().db();
    // A holder per call, not per process: concurrent jobs of one process must exclude each
    // other too.
    let holder = format!(
        "{}:{}",
        state.worker_id(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let worker = holder.as_str();
    let lane_id = lane::lane_id(integration_id, wa_id);
    let lease = state.settings().lane_lease;
    if !lane::acquire(db, tenant_id, integration_id, wa_id, worker, lease).await? {
        // Someone else runs this contact; they check for waiting messages before letting go.
        return Ok(());
    }
    loop {
        let renewer = spawn_renewer(state.clone(), lane_id.clone(), worker.to_owned());
        let result = next_turn(state, tenant_id, integration_id, wa_id).await;
        renewer.abort();
        if let Err(e) = result {
            lane::release(db, &lane_id, worker).await?;
            return Err(e);
        }
        // A message whose job ran while we held the lane relies on us to see it: the lane is
        // only given up when nothing waits.
        if lane::release_if_idle(db, &lane_id, worker, integration_id, wa_id).await?
            || !lane::holds(db, &lane_id, worker).await?
        {
            return Ok(());
        }
    }
}

fn spawn_renewer(state: AppState, lane_id: String, worker: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let lease = state.settings().lane_lease;
        let mut tick = tokio::time::interval(lease / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            match lane::renew(state.store().db(), &lane_id, &worker, lease).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(lane = %lane_id, "lost the lane lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "renewing the lane lease failed"),
            }
        }
    })
}

/// What a turn claimed, kept in memory so the steps after the claim need not read it again.
/// A turn resumed after a crash has none and reads what it needs.
struct Claimed {
    inbound_ids: Vec<String>,
    newest_wamid: String,
    integration: Option<wi::Model>,
}

/// Runs the contact's next turn: first a turn a dead worker left unfinished, else a new turn
/// for the waiting messages. Returns whether there was one.
async fn next_turn(
    state: &AppState,
    tenant_id: &str,
    integration_id: &str,
    wa_id: &str,
) -> ApiResult<bool> {
    match claim(state, tenant_id, integration_id, wa_id).await? {
        Next::Nothing => return Ok(false),
        Next::Resume(t) => run_turn(state, t, None).await?,
        Next::New(t, claimed) => run_turn(state, t, Some(*claimed)).await?,
    }
    Ok(true)
}

/// What [`claim`] found.
enum Next {
    Nothing,
    /// A turn an earlier holder claimed and did not finish (its messages still wait).
    Resume(turn::Model),
    /// Boxed: the claim carries the integration, several hundred bytes.
    New(turn::Model, Box<Claimed>),
}

/// The contact's waiting messages, oldest first, in one read: the claimed ones of an
/// unfinished turn among them too (they stay `queued` until their turn ends).
async fn waiting(
    state: &AppState,
    integration_id: &str,
    wa_id: &str,
) -> ApiResult<Vec<inbound::Model>> {
    Ok(inbound::Entity::find()
        .filter(inbound::Column::IntegrationId.eq(integration_id))
        .filter(inbound::Column::WaId.eq(wa_id))
        // A literal, so the partial index of waiting messages serves it (migration 000009).
        .filter(Expr::cust("state = 'queued'"))
        .order_by_asc(inbound::Column::Id)
        .limit(MAX_COALESCED)
        .all(state.store().db())
        .await?)
}

/// The unfinished turn that claimed `turn_id`'s messages. A finished or missing one (which
/// no code path leaves behind) has its messages settled so they cannot wait forever.
async fn unfinished(state: &AppState, turn_id: &str) -> ApiResult<Option<turn::Model>> {
    let db = state.store().db();
    let t = turn::Entity::find_by_id(turn_id.to_owned()).one(db).await?;
    if let Some(t) = t.filter(|t| matches!(t.state.as_str(), "started" | "prompted" | "replied")) {
        return Ok(Some(t));
    }
    crate::store::write_one(
        db,
        inbound::Entity::update_many()
            .col_expr(inbound::Column::State, Expr::value("failed"))
            .col_expr(inbound::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(inbound::Column::TurnId.eq(turn_id))
            .filter(inbound::Column::State.eq("queued"))
            .build(db.get_database_backend()),
    )
    .await?;
    Ok(None)
}

/// Claims the contact's waiting messages for a new turn, after letting a burst settle: messages
/// that arrive within the coalescing window of each other are answered together. The claim and
/// the prompt step (session, contact, user messages) share one transaction.
async fn claim(
    state: &AppState,
    tenant_id: &str,
    integration_id: &str,
    wa_id: &str,
) -> ApiResult<Next> {
    let db = state.store().db();
    let window = state.settings().coalesce_window;
    let waited_since = tokio::time::Instant::now();
    let waiting = loop {
        let waiting = waiting(state, integration_id, wa_id).await?;
        // Only an earlier holder can have left a turn unfinished: this holder finishes each
        // turn before it claims the next.
        if let Some(turn_id) = waiting.iter().find_map(|m| m.turn_id.clone()) {
            match unfinished(state, &turn_id).await? {
                Some(t) => return Ok(Next::Resume(t)),
                None => continue,
            }
        }
        let found = waiting.len();
        // Reactions are recorded, never answered on their own.
        let waiting = input::take_reactions(state, tenant_id, integration_id, waiting).await?;
        if waiting.is_empty() && found > 0 {
            continue;
        }
        let Some(newest) = waiting.last() else {
            return Ok(Next::Nothing);
        };
        let quiet_for =
            Duration::from_millis(u64::try_from(now_ms() - newest.received_at).unwrap_or(0));
        // Wait out the window, but not forever: a contact typing non-stop still gets answers.
        if quiet_for >= window
            || waited_since.elapsed() >= window * 3
            || waiting.len() as u64 >= MAX_COALESCED
        {
            break waiting;
        }
        tokio::time::sleep(window - quiet_for).await;
    };
    let integration = cached_integration(state, integration_id).await?;
    // Downloads, transcription and document text are slow: before the write transaction.
    let prepared = match &integration {
        Some(i) => input::prepare_turn(state, i, &waiting).await?,
        None => Vec::new(),
    };
    let now = now_ms();
    let txn = crate::store::begin_write(db).await?;
    let t = turn::ActiveModel {
        id: Set(new_id(prefix::TURN)),
        tenant_id: Set(tenant_id.to_owned()),
        integration_id: Set(integration_id.to_owned()),
        wa_id: Set(wa_id.to_owned()),
        conversation_id: Set(None),
        state: Set("started".to_owned()),
        error: Set(None),
        tool_rounds: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let ids: Vec<String> = waiting.iter().map(|m| m.id.clone()).collect();
    let claimed = inbound::Entity::update_many()
        .col_expr(inbound::Column::TurnId, Expr::value(t.id.clone()))
        .col_expr(inbound::Column::UpdatedAt, Expr::value(now))
        .filter(inbound::Column::Id.is_in(ids.clone()))
        .filter(inbound::Column::TurnId.is_null())
        .exec(&txn)
        .await?;
    if claimed.rows_affected != ids.len() as u64 {
        // Someone else claimed some of them (we lost the lane meanwhile): no turn for us.
        txn.rollback().await?;
        return Ok(Next::Nothing);
    }
    let newest_wamid = waiting.last().map(|m| m.wamid.clone()).unwrap_or_default();
    // Without the integration, run_turn finishes the turn unanswered.
    let t = match &integration {
        Some(integration) => prompt_in(&txn, state, integration, t, waiting, prepared).await?,
        None => t,
    };
    txn.commit().await?;
    Ok(Next::New(
        t,
        Box::new(Claimed {
            inbound_ids: ids,
            newest_wamid,
            integration,
        }),
    ))
}

async fn run_turn(state: &AppState, t: turn::Model, claimed: Option<Claimed>) -> ApiResult<()> {
    let db = state.store().db();
    let integration = match claimed.as_ref().map(|c| c.integration.clone()) {
        Some(known) => known,
        None => cached_integration(state, &t.integration_id).await?,
    };
    let Some(integration) = integration else {
        // The integration was deleted: keep the messages, answer nothing.
        let txn = crate::store::begin_write(db).await?;
        finish_in(&txn, &t, "done", Some("integration deleted")).await?;
        txn.commit().await?;
        return Ok(());
    };
    let t = match t.state.as_str() {
        "started" => prompt(state, &integration, t).await?,
        _ => t,
    };
    let (t, parts) = match t.state.as_str() {
        "prompted" => {
            let (t, parts) = reply(state, &integration, t, claimed.as_ref()).await?;
            (t, Some(parts))
        }
        _ => (t, None),
    };
    if t.state == "replied" {
        let token = crate::integrations::whatsapp::access_token(state, &integration)?;
        match (&integration.phone_number_id, token) {
            (Some(phone), Some(token)) => {
                let dest = Destination {
                    tenant_id: &t.tenant_id,
                    integration_id: &t.integration_id,
                    phone_number_id: phone,
                    token: &token,
                    wa_id: &t.wa_id,
                    graph: &state.graph_for(&integration),
                };
                outbox::send_turn(state, &dest, &t.id, parts).await?;
            }
            _ => {
                Event::new(
                    "whatsapp.reply.skipped",
                    Level::Error,
                    "the integration has no phoneNumberId or accessToken; the reply was not sent",
                )
                .integration(&t.integration_id)
                .record(db, &t.tenant_id)
                .await?;
            }
        }
        let txn = crate::store::begin_write(db).await?;
        finish_in(&txn, &t, "done", None).await?;
        txn.commit().await?;
    }
    Ok(())
}

/// The integration, from the cache the webhook endpoint keeps ([`crate::ingest::cache`]).
async fn cached_integration(state: &AppState, id: &str) -> ApiResult<Option<wi::Model>> {
    Ok(state
        .callbacks()
        .get(state, id)
        .await?
        .map(|target| target.row.clone()))
}

/// Ends a turn (`done` or `failed`) and marks its messages processed (or failed).
async fn finish_in<C: ConnectionTrait>(
    conn: &C,
    t: &turn::Model,
    to: &str,
    error: Option<&str>,
) -> ApiResult<()> {
    let now = now_ms();
    turn::Entity::update_many()
        .col_expr(turn::Column::State, Expr::value(to))
        .col_expr(turn::Column::Error, Expr::value(error.map(str::to_owned)))
        .col_expr(turn::Column::UpdatedAt, Expr::value(now))
        .filter(turn::Column::Id.eq(t.id.as_str()))
        .exec(conn)
        .await?;
    inbound::Entity::update_many()
        .col_expr(
            inbound::Column::State,
            Expr::value(if to == "failed" {
                "failed"
            } else {
                "processed"
            }),
        )
        .col_expr(inbound::Column::UpdatedAt, Expr::value(now))
        .filter(inbound::Column::TurnId.eq(t.id.as_str()))
        .exec(conn)
        .await?;
    Ok(())
}

fn is_reset(integration: &wi::Model, text: &str) -> bool {
    let text = text.trim().to_lowercase();
    DEFAULT_RESET_COMMANDS.contains(&text.as_str())
        || crate::integrations::whatsapp::reset_commands(integration)
            .iter()
            .any(|c| c.to_lowercase() == text)
}

/// `started` → `prompted` for a turn resumed after a crash between its claim and its prompt
/// (turns claimed by this version are prompted in the claiming transaction).
async fn prompt(
    state: &AppState,
    integration: &wi::Model,
    t: turn::Model,
) -> ApiResult<turn::Model> {
    let db = state.store().db();
    let claimed = inbound::Entity::find()
        .filter(inbound::Column::TurnId.eq(t.id.as_str()))
        .order_by_asc(inbound::Column::Id)
        .all(db)
        .await?;
    let prepared = input::prepare_turn(state, integration, &claimed).await?;
    let txn = crate::store::begin_write(db).await?;
    let t = prompt_in(&txn, state, integration, t, claimed, prepared).await?;
    txn.commit().await?;
    Ok(t)
}

/// `started` → `prompted`: the session, the contact and the user messages, inside the caller's
/// transaction. A reset command instead ends the session and stores the confirmation as the
/// reply (`replied`).
async fn prompt_in(
    txn: &crate::store::WriteTxn,
    state: &AppState,
    integration: &wi::Model,
    t: turn::Model,
    claimed: Vec<inbound::Model>,
    prepared: Vec<input::Prepared>,
) -> ApiResult<turn::Model> {
    // A stored message we cannot read (bad data) must not block the contact: it is parked as
    // failed and the turn goes on with the rest.
    let (claimed, unreadable): (Vec<_>, Vec<_>) = claimed
        .into_iter()
        .partition(|m| serde_json::from_str::<Value>(&m.payload).is_ok());
    if !unreadable.is_empty() {
        let now = now_ms();
        let ids: Vec<String> = unreadable.iter().map(|m| m.id.clone()).collect();
        inbound::Entity::update_many()
            .col_expr(inbound::Column::State, Expr::value("failed"))
            .col_expr(inbound::Column::TurnId, Expr::value(Option::<String>::None))
            .col_expr(inbound::Column::UpdatedAt, Expr::value(now))
            .filter(inbound::Column::Id.is_in(ids.clone()))
            .exec(txn)
            .await?;
        Event::new(
            "whatsapp.message.unreadable",
            Level::Error,
            "a stored message could not be read; it was parked as failed",
        )
        .integration(&t.integration_id)
        .data(json!({"inboundIds": ids}))
        .record(txn, &t.tenant_id)
        .await?;
    }
    if claimed.is_empty() {
        finish_in(txn, &t, "failed", Some("no readable message")).await?;
        return advance(txn, t, "failed", None).await;
    }
    // What prepare_turn made of each message still claimed (the unreadable ones are out).
    let prepared: Vec<input::Prepared> = prepared
        .into_iter()
        .filter(|p| claimed.iter().any(|m| m.id == p.inbound_id))
        .collect();
    let texts: Vec<String> = prepared.iter().map(|p| p.text.clone()).collect();
    let profile_name = claimed
        .last()
        .and_then(|m| serde_json::from_str::<Value>(&m.payload).ok())
        .and_then(|v| v["contact"]["name"].as_str().map(str::to_owned));
    let now = now_ms();
    let contact_id = if integration.contact_collection {
        Some(upsert_contact(txn, &t, profile_name.as_deref(), now).await?)
    } else {
        None
    };
    let key = SessionKey {
        tenant_id: &t.tenant_id,
        integration_id: &t.integration_id,
        wa_id: &t.wa_id,
        bot_id: integration.bot_id.as_deref(),
        contact_id: contact_id.as_deref(),
        session_ms: integration.session_duration,
    };
    let reset = texts.last().is_some_and(|last| is_reset(integration, last));
    let conversation = state.sessions().continue_or_start(txn, &key).await?;
    store_user_messages(txn, &t, &conversation.id, &claimed, &prepared, now).await?;
    input::link_files(txn, &t.tenant_id, &conversation.id, &prepared).await?;
    let canned = input::canned_reply(&prepared, integration.attachments);
    let next_state = if reset {
        state.sessions().end(txn, &key).await?;
        store_parts(txn, &t, &conversation.id, 0, &[reset_confirmation()], None).await?;
        "replied"
    } else if let Some(text) = canned {
        store_parts(txn, &t, &conversation.id, 0, &[text], None).await?;
        "replied"
    } else {
        "prompted"
    };
    advance(txn, t, next_state, Some(conversation.id)).await
}

/// The turn's user messages, in one statement. The inbound id is unique among user messages,
/// so a resumed turn stores each once.
async fn store_user_messages<C: ConnectionTrait>(
    conn: &C,
    t: &turn::Model,
    conversation_id: &str,
    claimed: &[inbound::Model],
    prepared: &[input::Prepared],
    now: i64,
) -> ApiResult<()> {
    let backend = conn.get_database_backend();
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(claimed.len() * 9);
    for (m, p) in claimed.iter().zip(prepared) {
        values.extend([
            new_id(prefix::MESSAGE).into(),
            t.tenant_id.clone().into(),
            conversation_id.into(),
            p.text.clone().into(),
            p.meta.clone().into(),
            m.wamid.clone().into(),
            m.id.clone().into(),
            now.into(),
            now.into(),
        ]);
    }
    conn.execute_raw(crate::store::multi_row(
        backend,
        "INSERT INTO message (id, tenant_id, conversation_id, kind, text, meta, wamid, \
         inbound_id, created_at, updated_at) VALUES ",
        "(?, ?, ?, 'user', ?, ?, ?, ?, ?, ?)",
        claimed.len(),
        " ON CONFLICT (inbound_id) DO NOTHING",
        values,
    ))
    .await?;
    Ok(())
}

fn reset_confirmation() -> String {
    "Okay, starting a new conversation.".to_owned()
}

async fn upsert_contact<C: ConnectionTrait>(
    conn: &C,
    t: &turn::Model,
    name: Option<&str>,
    now: i64,
) -> ApiResult<String> {
    let fingerprint = format!("whatsapp:{}", t.wa_id);
    let existing = contact::Entity::find()
        .filter(contact::Column::TenantId.eq(t.tenant_id.as_str()))
        .filter(contact::Column::Fingerprint.eq(fingerprint.as_str()))
        .one(conn)
        .await?;
    if let Some(c) = existing {
        let collected =
            c.meta.get(tools::NAME_SOURCE).and_then(Value::as_str) == Some(tools::NAME_COLLECTED);
        if name.is_some() && c.name.as_deref() != name && !collected {
            let id = c.id.clone();
            let mut am: contact::ActiveModel = c.into();
            am.name = Set(name.map(str::to_owned));
            am.updated_at = Set(now);
            am.update(conn).await?;
            return Ok(id);
        }
        return Ok(c.id);
    }
    let c = contact::ActiveModel {
        id: Set(new_id(prefix::CONTACT)),
        tenant_id: Set(t.tenant_id.clone()),
        fingerprint: Set(fingerprint),
        name: Set(name.map(str::to_owned)),
        description: Set(None),
        email: Set(None),
        phone: Set(Some(format!("+{}", t.wa_id))),
        nick: Set(None),
        preferences: Set(None),
        verified_at: Set(None),
        meta: Set(json!({"channel": "whatsapp"})),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok(c.id)
}

async fn advance<C: ConnectionTrait>(
    conn: &C,
    t: turn::Model,
    to: &str,
    conversation_id: Option<String>,
) -> ApiResult<turn::Model> {
    let mut am: turn::ActiveModel = t.into();
    am.state = Set(to.to_owned());
    if let Some(c) = conversation_id {
        am.conversation_id = Set(Some(c));
    }
    am.updated_at = Set(now_ms());
    Ok(am.update(conn).await?)
}

/// Stores the reply parts of a turn, numbered from `first` (after the parts its tool rounds
/// sent), before any is sent (the outbox), and returns them.
async fn store_parts<C: ConnectionTrait>(
    conn: &C,
    t: &turn::Model,
    conversation_id: &str,
    first: i32,
    parts: &[String],
    usage: Option<(u32, u32)>,
) -> ApiResult<Vec<message::Model>> {
    let now = now_ms();
    let backend = conn.get_database_backend();
    let mut stored = Vec::with_capacity(parts.len());
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(parts.len() * 11);
    for (i, text) in parts.iter().enumerate() {
        let (input, output) = match (i, usage) {
            (0, Some((a, b))) => (Some(a as i32), Some(b as i32)),
            _ => (None, None),
        };
        let m = message::Model {
            id: new_id(prefix::MESSAGE),
            tenant_id: t.tenant_id.clone(),
            conversation_id: conversation_id.to_owned(),
            kind: "bot".to_owned(),
            text: text.clone(),
            meta: json!({}),
            wamid: None,
            inbound_id: None,
            turn_id: Some(t.id.clone()),
            part: Some(first + i as i32),
            delivery_status: Some("pending".to_owned()),
            error_code: None,
            error_title: None,
            input_tokens: input,
            output_tokens: output,
            created_at: now,
            updated_at: now,
        };
        values.extend([
            m.id.clone().into(),
            m.tenant_id.clone().into(),
            m.conversation_id.clone().into(),
            m.text.clone().into(),
            m.meta.clone().into(),
            m.turn_id.clone().into(),
            m.part.into(),
            input.into(),
            output.into(),
            now.into(),
            now.into(),
        ]);
        stored.push(m);
    }
    // (turn_id, part) is unique: a resumed turn stores its parts once.
    conn.execute_raw(crate::store::multi_row(
        backend,
        "INSERT INTO message (id, tenant_id, conversation_id, kind, text, meta, \
         delivery_status, turn_id, part, input_tokens, output_tokens, created_at, updated_at) \
         VALUES ",
        "(?, ?, ?, 'bot', ?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
        parts.len(),
        " ON CONFLICT (turn_id, part) DO NOTHING",
        values,
    ))
    .await?;
    Ok(stored)
}

/// `prompted` → `replied`: asks the model and stores its answer as reply parts, which it
/// returns. If the model fails after its retries, the parts are one short apology and the
/// failure is logged.
async fn reply(
    state: &AppState,
    integration: &wi::Model,
    t: turn::Model,
    claimed: Option<&Claimed>,
) -> ApiResult<(turn::Model, Vec<message::Model>)> {
    let db = state.store().db();
    let conversation_id = t.conversation_id.clone().unwrap_or_default();
    let current = match claimed {
        Some(c) => c.inbound_ids.clone(),
        None => {
            inbound::Entity::find()
                .filter(inbound::Column::TurnId.eq(t.id.as_str()))
                .select_only()
                .column(inbound::Column::Id)
                .into_tuple()
                .all(db)
                .await?
        }
    };
    let newest_wamid = claimed.map(|c| c.newest_wamid.as_str());
    // "Typing…" and the model call run side by side: the indicator must not delay the answer.
    let (_, answer) = tokio::join!(show_typing(state, integration, &t, newest_wamid), async {
        match integration.bot_id.as_deref() {
            None => Ok(Err("no bot is linked to the integration".to_owned())),
            Some(bot_id) => ask_model(state, integration, &t, bot_id, &current, newest_wamid).await,
        }
    });
    let answer = answer?;
    let txn = crate::store::begin_write(db).await?;
    let parts = match answer {
        Ok(end) => {
            let parts = split(&to_whatsapp(&end.text), WHATSAPP_TEXT_LIMIT);
            // An empty answer after tool messages needs no filler; with nothing else it does.
            let parts = if parts.is_empty() && !end.said_something {
                vec!["…".to_owned()]
            } else {
                parts
            };
            let usage = (end.usage.input_tokens, end.usage.output_tokens);
            store_parts(
                &txn,
                &t,
                &conversation_id,
                end.next_part,
                &parts,
                Some(usage),
            )
            .await?
        }
        Err(why) => {
            Event::new(
                "bot.reply.failed",
                Level::Error,
                format!("the model could not answer: {why}"),
            )
            .integration(&t.integration_id)
            .bot(integration.bot_id.as_deref())
            .conversation(&conversation_id)
            .record(&txn, &t.tenant_id)
            .await?;
            // After tool rounds (stored in this run or an earlier one), the apology follows what
            // they sent.
            let first = tool_loop::next_part(&txn, &t.id).await?;
            store_parts(
                &txn,
                &t,
                &conversation_id,
                first,
                &[state.settings().apology_text.clone()],
                None,
            )
            .await?
        }
    };
    let t = advance(&txn, t, "replied", None).await?;
    txn.commit().await?;
    Ok((t, parts))
}

/// Marks the newest message of the turn read and shows "typing…". Best effort.
async fn show_typing(
    state: &AppState,
    integration: &wi::Model,
    t: &turn::Model,
    newest_wamid: Option<&str>,
) {
    let Ok(Some(token)) = crate::integrations::whatsapp::access_token(state, integration) else {
        return;
    };
    let Some(phone) = &integration.phone_number_id else {
        return;
    };
    let wamid = match newest_wamid {
        Some(w) => w.to_owned(),
        None => {
            let newest = inbound::Entity::find()
                .filter(inbound::Column::TurnId.eq(t.id.as_str()))
                .order_by_desc(inbound::Column::Id)
                .one(state.store().db())
                .await;
            match newest {
                Ok(Some(m)) => m.wamid,
                _ => return,
            }
        }
    };
    if let Err(e) = state
        .graph_for(integration)
        .mark_read(phone, &token, &wamid, true)
        .await
    {
        tracing::debug!(error = %e, "marking read failed");
    }
}

/// A user id the model vendor can use for abuse tracking without learning the phone number.
fn user_hash(tenant_id: &str, wa_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(tenant_id.as_bytes());
    h.update(b":");
    h.update(wa_id.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Asks the bot's model, through the tool loop. The inner error is why the model could not
/// answer (the turn gets the apology); the outer one a storage failure (the turn is retried).
async fn ask_model(
    state: &AppState,
    integration: &wi::Model,
    t: &turn::Model,
    bot_id: &str,
    current: &[String],
    newest_wamid: Option<&str>,
) -> ApiResult<Result<tool_loop::Finish, String>> {
    let request = match model_request(state, t, bot_id, current).await {
        Ok(r) => r,
        Err(why) => return Ok(Err(why)),
    };
    let (llm, request) = request;
    let token = crate::integrations::whatsapp::access_token(state, integration)?;
    let sender = match (&integration.phone_number_id, token) {
        (Some(phone), Some(token)) => Some(tool_loop::Sender {
            phone_number_id: phone.clone(),
            token,
            graph: state.graph_for(integration),
        }),
        _ => None,
    };
    tool_loop::run(
        state,
        t,
        integration.contact_collection,
        newest_wamid,
        llm.as_ref(),
        request,
        sender.as_ref(),
    )
    .await
}

/// The bot's provider and the prompt: backstory, history and the turn's messages.
async fn model_request(
    state: &AppState,
    t: &turn::Model,
    bot_id: &str,
    current: &[String],
) -> Result<(Arc<dyn LlmProvider>, ChatRequest), String> {
    let conversation_id = t.conversation_id.as_deref().unwrap_or_default();
    let cached = state.bot_cache().get(state, &t.tenant_id, bot_id).await?;
    let bot = &cached.bot;
    let (llm, default_model) = cached.llm.clone()?;
    let mut model = bot_model(bot, default_model)?;
    let vision = cached.vision.clone();
    let (messages, has_images) = history(
        state,
        t,
        conversation_id,
        current,
        &model,
        vision != input::Vision::None,
    )
    .await
    .map_err(|e| format!("reading the conversation failed: {e:?}"))?;
    // A turn with images goes to the provider's vision model when the bot's own cannot see.
    if let (true, input::Vision::Model(name)) = (has_images, &vision)
        && let Ok(v) = name.parse::<ModelSpec>()
    {
        model.name = v.name;
    }
    let request = ChatRequest {
        model,
        system: bot.backstory.clone().filter(|b| !b.trim().is_empty()),
        messages,
        tools: Vec::new(),
        tool_choice: crate::llm::provider::ToolChoice::Auto,
        metadata: RequestMetadata {
            conversation_id: conversation_id.to_owned(),
            user_hash: user_hash(&t.tenant_id, &t.wa_id),
        },
        stream: true,
    };
    Ok((llm, request))
}

/// The model a bot talks to: its own, or else its provider's default, as ChatBotKit writes it.
pub(crate) fn bot_model(
    bot: &crate::store::entities::bot::Model,
    provider_default: Option<String>,
) -> Result<ModelSpec, String> {
    bot.model
        .clone()
        .or(provider_default)
        .ok_or_else(|| "neither the bot nor its provider names a model".to_owned())?
        .parse()
        .map_err(|e: crate::llm::model::ModelError| e.to_string())
}

pub(crate) async fn resolve_provider(
    state: &AppState,
    tenant_id: &str,
    provider_id: Option<&str>,
) -> Result<(Arc<dyn LlmProvider>, Option<String>), String> {
    let s = state.settings();
    let config = |kind, base_url: String, api_key: Option<SecretString>| ProviderConfig {
        kind,
        base_url,
        api_key,
        connect_timeout: Duration::from_secs(5),
        total_timeout: s.llm_timeout,
        max_retries: s.llm_max_retries,
        initial_backoff: Duration::from_millis(500),
    };
    let (cfg, default_model) = match provider_id {
        None | Some("prv_system_openai") if s.openai_api_key.is_some() => (
            config(
                ProviderKind::Openai,
                s.openai_base_url.as_str().trim_end_matches('/').to_owned(),
                s.openai_api_key.clone(),
            ),
            None,
        ),
        Some("prv_system_anthropic") if s.anthropic_api_key.is_some() => (
            config(
                ProviderKind::Anthropic,
                s.anthropic_base_url
                    .as_str()
                    .trim_end_matches('/')
                    .to_owned(),
                s.anthropic_api_key.clone(),
            ),
            None,
        ),
        None => return Err("the bot has no provider and the server defines none".to_owned()),
        Some(id) => {
            let row = state
                .store()
                .scope(tenant_id)
                .find::<provider::Entity>(id)
                .await
                .map_err(|_| "the bot's provider no longer exists".to_owned())?;
            let key = match &row.api_key {
                None => None,
                Some(sealed) => Some(
                    state
                        .vault()
                        .open(
                            sealed,
                            &crate::http::api::fields::secret_context(
                                tenant_id, "provider", &row.id, "api_key",
                            ),
                        )
                        .map_err(|e| format!("cannot open the provider's key: {e}"))?,
                ),
            };
            let kind = if row.kind == "anthropic" {
                ProviderKind::Anthropic
            } else {
                ProviderKind::Openai
            };
            (
                config(kind, row.base_url.clone(), key),
                row.default_model.clone(),
            )
        }
    };
    Ok((
        crate::llm::provider::build(cfg, state.llm_http().clone()),
        default_model,
    ))
}

/// The conversation so far, oldest first, within the history budget, then the current turn's
/// messages (which are never dropped).
async fn history(
    state: &AppState,
    t: &turn::Model,
    conversation_id: &str,
    current: &[String],
    model: &ModelSpec,
    images: bool,
) -> ApiResult<(Vec<ChatMessage>, bool)> {
    let tenant_id = t.tenant_id.as_str();
    let db = state.store().db();
    let rows = message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant_id))
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(message::Column::Kind.is_in(["user", "bot"]))
        .order_by_desc(message::Column::Id)
        .limit(500)
        .all(db)
        .await?;
    let max_messages = model
        .interaction_max_messages
        .map_or(usize::MAX, |n| n as usize);
    let mut budget = state.settings().history_tokens as i64;
    let mut turn_now = Vec::new();
    let mut past = Vec::new();
    let mut has_images = false;
    for m in rows {
        // What this turn's tool rounds already sent is replayed by the tool loop, in place.
        if m.turn_id.as_deref() == Some(t.id.as_str()) {
            continue;
        }
        let is_current = m.inbound_id.as_ref().is_some_and(|i| current.contains(i));
        if is_current {
            // The current turn's messages with their images (stored text for the rest).
            has_images |= input::has_image(&m);
            turn_now.push(ChatMessage {
                role: Role::User,
                content: input::current_content(state, &m, images).await?,
                tool_calls: Vec::new(),
                tool_call_id: None,
            });
            continue;
        }
        let msg = ChatMessage {
            role: if m.kind == "user" {
                Role::User
            } else {
                Role::Assistant
            },
            content: vec![ContentPart::Text(m.text.clone())],
            tool_calls: Vec::new(),
            tool_call_id: None,
        };
        // About four characters a token: a budget, not an exact count.
        let cost = (m.text.chars().count() as i64 / 4).max(1);
        if budget - cost < 0 || past.len() >= max_messages {
            break;
        }
        budget -= cost;
        past.push(msg);
    }
    past.reverse();
    turn_now.reverse();
    past.extend(turn_now);
    Ok((past, has_images))
}

/// What the periodic sweep does for lanes: wakes contacts whose messages wait with nobody
/// holding their lane (their worker died), so they do not wait for job retries.
pub async fn sweep(state: &AppState) -> ApiResult<usize> {
    let db = state.store().db();
    // Waiting longer than a lease means nobody is on it: a holder renews or gives up by then.
    let stale_before = now_ms() - 2 * state.settings().lane_lease.as_millis() as i64;
    let waiting: Vec<(String, String, String, String)> = inbound::Entity::find()
        .filter(inbound::Column::State.eq("queued"))
        .filter(inbound::Column::UpdatedAt.lt(stale_before))
        .select_only()
        .column(inbound::Column::Id)
        .column(inbound::Column::TenantId)
        .column(inbound::Column::IntegrationId)
        .column(inbound::Column::WaId)
        .limit(200)
        .into_tuple()
        .all(db)
        .await?;
    let mut woken = 0;
    let mut seen = std::collections::HashSet::new();
    for (id, tenant_id, integration_id, wa_id) in waiting {
        if !seen.insert((integration_id.clone(), wa_id.clone())) {
            continue;
        }
        let job = InboundJob {
            tenant_id,
            integration_id,
            inbound_id: id.clone(),
            wa_id: Some(wa_id),
        };
        // One wake-up per message per minute at most, whatever the number of replicas.
        let key = format!("sweep:{id}:{}", now_ms() / 60_000);
        crate::jobs::enqueue_in(db, crate::jobs::INBOUND_QUEUE, &job, &key).await?;
        woken += 1;
    }
    Ok(woken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_hashes_hide_the_number_but_are_stable() {
        let a = user_hash("ten_1", "447700900123");
        assert_eq!(a, user_hash("ten_1", "447700900123"));
        assert_ne!(a, user_hash("ten_2", "447700900123"));
        assert!(!a.contains("447700900123"));
    }
}
