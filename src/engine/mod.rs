//! The conversation engine: turns stored inbound messages into bot replies.
//!
//! One job per inbound message wakes the engine for that message's contact ("lane"). Whoever
//! takes the lane runs the contact's turns one at a time, in arrival order, until no message is
//! waiting; the jobs of messages that arrive meanwhile find the lane taken and leave their
//! message to the holder, who checks once more after letting go. Different contacts run in
//! parallel, up to the worker concurrency.
//!
//! A turn is a small state machine stored in the database, so a crash at any point resumes
//! where it stopped without answering twice: `prompted` (messages claimed, user messages and
//! session stored, in one write) → `replied` (reply parts stored) → `done`. The model is called
//! between `prompted` and `replied`; if the process dies there, the call is simply made again. When the model calls its WhatsApp tools,
//! each tool round is stored (and its messages sent) within `prompted`, and a resumed turn
//! continues after the last stored round ([`tool_loop`] explains why nothing is sent twice).
//!
//! Turns write through the engine's [`writer`], which commits the writes of every turn in
//! flight together; the functions it applies (`prompt_many`, `store_replies`, `apply_steps`)
//! take many turns at once.
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
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect,
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
use crate::store::{
    self,
    entities::{
        contact, inbound_message as inbound, message, provider, turn, whatsapp_integration as wi,
    },
};
use crate::time::now_ms;

use self::lane::After;
use self::outbox::Destination;
use self::session::{SessionKey, Sessions};

/// Commands that end the session at once, whatever the integration adds.
pub const DEFAULT_RESET_COMMANDS: [&str; 3] = ["/reset", "/restart", "/new"];

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

/// The contact whose lane a worker holds, and the holder's name in the lane row.
struct Lane<'a> {
    tenant_id: &'a str,
    integration_id: &'a str,
    wa_id: &'a str,
    holder: String,
}

impl Lane<'_> {
    fn id(&self) -> String {
        lane::lane_id(self.integration_id, self.wa_id)
    }

    fn release(&self) -> lane::Release {
        lane::Release {
            integration_id: self.integration_id.to_owned(),
            wa_id: self.wa_id.to_owned(),
            holder: self.holder.clone(),
        }
    }

    async fn waiting(&self, state: &AppState) -> ApiResult<Vec<inbound::Model>> {
        Ok(lane::waiting(state.store().db(), self.integration_id, self.wa_id).await?)
    }
}

/// Runs the contact's waiting turns while holding its lane.
pub async fn run_lane(
    state: &AppState,
    tenant_id: &str,
    integration_id: &str,
    wa_id: &str,
) -> ApiResult<()> {
    let lane = Lane {
        tenant_id,
        integration_id,
        wa_id,
        // A holder per call, not per process: concurrent jobs of one process must exclude
        // each other too.
        holder: format!(
            "{}:{}",
            state.worker_id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ),
    };
    let take = lane::Take {
        tenant_id: tenant_id.to_owned(),
        integration_id: integration_id.to_owned(),
        wa_id: wa_id.to_owned(),
        holder: lane.holder.clone(),
        lease: state.settings().lane_lease,
    };
    let Some(mut waiting) = state.engine_writer().take(take).await? else {
        // Someone else runs this contact; they check for waiting messages before letting go.
        return Ok(());
    };
    loop {
        let renewer = spawn_renewer(state.clone(), lane.id(), lane.holder.clone());
        let result = next_turn(state, &lane, waiting).await;
        renewer.abort();
        match result {
            Err(e) => {
                lane::release(state.store().db(), &lane.id(), &lane.holder).await?;
                return Err(e);
            }
            // A message whose job ran while we held the lane relies on us to see it: the lane
            // is only given up when nothing waits.
            Ok(After::Waiting) => waiting = lane.waiting(state).await?,
            Ok(After::Released | After::Lost) => return Ok(()),
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
    integration: wi::Model,
    /// The conversation's messages when the claim started it; see [`Prompted`].
    history: Option<Vec<message::Model>>,
}

/// Runs the contact's next turn (first a turn a dead worker left unfinished, else a new turn
/// for the waiting messages), then offers the lane back, in the same write as the turn's last.
async fn next_turn(
    state: &AppState,
    lane: &Lane<'_>,
    waiting: Vec<inbound::Model>,
) -> ApiResult<After> {
    let mut last = match claim(state, lane, waiting).await? {
        Next::Nothing => Step::default(),
        Next::Resume(t) => run_turn(state, t, None).await?,
        Next::New(t, claimed) => run_turn(state, t, Some(*claimed)).await?,
    };
    last.release = Some(lane.release());
    Ok(state
        .engine_writer()
        .step(last)
        .await?
        .unwrap_or(After::Lost))
}

/// What [`claim`] found.
enum Next {
    Nothing,
    /// A turn an earlier holder claimed and did not finish (its messages still wait).
    Resume(turn::Model),
    /// Boxed: the claim carries the integration, several hundred bytes.
    New(turn::Model, Box<Claimed>),
}

/// The unfinished turn that claimed `turn_id`'s messages. A finished or missing one (which no
/// code path leaves behind) has its messages settled so they cannot wait forever; a `started`
/// one (claimed by a version that prompted in a later transaction) lets its messages go, to
/// be claimed again.
async fn unfinished(state: &AppState, turn_id: &str) -> ApiResult<Option<turn::Model>> {
    let db = state.store().db();
    let t = turn::Entity::find_by_id(turn_id.to_owned()).one(db).await?;
    let (turn_id_to, state_to) = match t.as_ref().map(|t| t.state.as_str()) {
        Some("prompted" | "replied") => return Ok(t),
        Some("started") => (None, "queued"),
        _ => (Some(turn_id.to_owned()), "failed"),
    };
    let txn = store::begin_write(db).await?;
    inbound::Entity::update_many()
        .col_expr(inbound::Column::State, Expr::value(state_to))
        .col_expr(inbound::Column::TurnId, Expr::value(turn_id_to))
        .col_expr(inbound::Column::UpdatedAt, Expr::value(now_ms()))
        .filter(inbound::Column::TurnId.eq(turn_id))
        .filter(inbound::Column::State.eq("queued"))
        .exec(&txn)
        .await?;
    if state_to == "queued" {
        finish_turns(&txn, &[turn_id], "failed", Some("superseded")).await?;
    }
    txn.commit().await?;
    Ok(None)
}

/// Claims the contact's waiting messages for a new turn, after letting a burst settle: messages
/// that arrive within the coalescing window of each other are answered together. The claim and
/// the prompt step (session, contact, user messages) are one write ([`prompt_many`]).
async fn claim(
    state: &AppState,
    lane: &Lane<'_>,
    mut waiting: Vec<inbound::Model>,
) -> ApiResult<Next> {
    let window = state.settings().coalesce_window;
    let waited_since = tokio::time::Instant::now();
    let waiting = loop {
        // Only an earlier holder can have left a turn unfinished: this holder finishes each
        // turn before it claims the next.
        if let Some(turn_id) = waiting.iter().find_map(|m| m.turn_id.clone()) {
            if let Some(t) = unfinished(state, &turn_id).await? {
                return Ok(Next::Resume(t));
            }
            waiting = lane.waiting(state).await?;
            continue;
        }
        let found = waiting.len();
        // Reactions are recorded, never answered on their own.
        let rest =
            input::take_reactions(state, lane.tenant_id, lane.integration_id, waiting).await?;
        if rest.is_empty() && found > 0 {
            waiting = lane.waiting(state).await?;
            continue;
        }
        let Some(newest) = rest.last() else {
            return Ok(Next::Nothing);
        };
        let quiet_for =
            Duration::from_millis(u64::try_from(now_ms() - newest.received_at).unwrap_or(0));
        // Wait out the window, but not forever: a contact typing non-stop still gets answers.
        if quiet_for >= window
            || waited_since.elapsed() >= window * 3
            || rest.len() >= lane::MAX_COALESCED
        {
            break rest;
        }
        tokio::time::sleep(window - quiet_for).await;
        waiting = lane.waiting(state).await?;
    };
    let ids: Vec<String> = waiting.iter().map(|m| m.id.clone()).collect();
    let Some(integration) = cached_integration(state, lane.integration_id).await? else {
        // The integration was deleted: keep the messages, answer nothing.
        settle(state, &ids).await?;
        return Ok(Next::Nothing);
    };
    // Downloads, transcription and document text are slow: before the write.
    let prepared = input::prepare_turn(state, &integration, &waiting).await?;
    let newest_wamid = waiting.last().map(|m| m.wamid.clone()).unwrap_or_default();
    let now = now_ms();
    let turn = turn::Model {
        id: new_id(prefix::TURN),
        tenant_id: lane.tenant_id.to_owned(),
        integration_id: lane.integration_id.to_owned(),
        wa_id: lane.wa_id.to_owned(),
        conversation_id: None,
        state: "started".to_owned(),
        error: None,
        tool_rounds: None,
        created_at: now,
        updated_at: now,
    };
    let claim = Claim {
        turn,
        integration: integration.clone(),
        waiting,
        prepared,
    };
    let Some(prompted) = state.engine_writer().claim(claim).await? else {
        // Someone else claimed some of them (we lost the lane meanwhile): no turn for us.
        return Ok(Next::Nothing);
    };
    Ok(Next::New(
        prompted.turn,
        Box::new(Claimed {
            inbound_ids: ids,
            newest_wamid,
            integration,
            history: prompted.history,
        }),
    ))
}

/// Marks unclaimed messages processed without answering them.
async fn settle(state: &AppState, ids: &[String]) -> ApiResult<()> {
    let db = state.store().db();
    let _gate = store::write_gate(db.get_database_backend()).await;
    store::execute(
        db,
        &format!(
            "UPDATE inbound_message SET state = 'processed', updated_at = ? \
             WHERE {} AND turn_id IS NULL",
            store::in_json(db.get_database_backend(), "id")
        ),
        [now_ms().into(), store::json_param(&ids)],
    )
    .await?;
    Ok(())
}

/// Runs a claimed turn to its end and returns its last write, for the caller to commit with
/// the lane's release.
async fn run_turn(state: &AppState, t: turn::Model, claimed: Option<Claimed>) -> ApiResult<Step> {
    let db = state.store().db();
    let integration = match claimed.as_ref() {
        Some(c) => Some(c.integration.clone()),
        None => cached_integration(state, &t.integration_id).await?,
    };
    let Some(integration) = integration else {
        // The integration was deleted: keep the messages, answer nothing.
        let txn = store::begin_write(db).await?;
        finish_turns(&txn, &[t.id.as_str()], "done", Some("integration deleted")).await?;
        txn.commit().await?;
        return Ok(Step::default());
    };
    let token = crate::integrations::whatsapp::access_token(state, &integration)?;
    let can_send = integration.phone_number_id.is_some() && token.is_some();
    let (t, parts) = match t.state.as_str() {
        "prompted" => {
            let (t, parts) = reply(state, &integration, t, claimed.as_ref(), can_send).await?;
            (t, Some(parts))
        }
        _ => (t, None),
    };
    if t.state != "replied" {
        // A turn the claim failed (nothing readable) is settled already.
        return Ok(Step::default());
    }
    let finish = Step {
        finish: Some(t.id.clone()),
        ..Step::default()
    };
    let (Some(phone), Some(token)) = (&integration.phone_number_id, token) else {
        Event::new(
            "whatsapp.reply.skipped",
            Level::Error,
            "the integration has no phoneNumberId or accessToken; the reply was not sent",
        )
        .integration(&t.integration_id)
        .record(db, &t.tenant_id)
        .await?;
        return Ok(finish);
    };
    let dest = Destination {
        tenant_id: &t.tenant_id,
        integration_id: &t.integration_id,
        phone_number_id: phone,
        token: &token,
        wa_id: &t.wa_id,
        graph: &state.graph_for(&integration),
    };
    match parts {
        // Stored just now, the first as `sending`.
        Some(parts) => outbox::send_fresh(state, &dest, &t.id, parts).await,
        // A turn resumed after its reply was stored, or answered in its claim (a reset, a
        // canned reply): what is still pending goes out one part at a time.
        None => {
            outbox::send_turn(state, &dest, &t.id, None).await?;
            Ok(finish)
        }
    }
}

/// The integration, from the cache the webhook endpoint keeps ([`crate::ingest::cache`]).
async fn cached_integration(state: &AppState, id: &str) -> ApiResult<Option<wi::Model>> {
    Ok(state
        .callbacks()
        .get(state, id)
        .await?
        .map(|target| target.row.clone()))
}

/// Ends turns (`done` or `failed`) and marks their messages processed (or failed).
async fn finish_turns<C: ConnectionTrait>(
    conn: &C,
    ids: &[&str],
    to: &str,
    error: Option<&str>,
) -> ApiResult<()> {
    let backend = conn.get_database_backend();
    let now = now_ms();
    let ids = store::json_param(&ids);
    store::execute(
        conn,
        &format!(
            "UPDATE turn SET state = ?, error = ?, updated_at = ? WHERE {}",
            store::in_json(backend, "id")
        ),
        [
            to.into(),
            error.map(str::to_owned).into(),
            now.into(),
            ids.clone(),
        ],
    )
    .await?;
    let messages_to = if to == "failed" {
        "failed"
    } else {
        "processed"
    };
    store::execute(
        conn,
        &format!(
            "UPDATE inbound_message SET state = ?, updated_at = ? WHERE {}",
            store::in_json(backend, "turn_id")
        ),
        [messages_to.into(), now.into(), ids],
    )
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

/// A turn after its claim and prompt step.
#[derive(Clone, Debug)]
pub(crate) struct Prompted {
    pub turn: turn::Model,
    /// Every message of the turn's conversation, newest first, when the claim started the
    /// conversation: then they are the user messages the claim stored, known without reading
    /// them back. Every turn of a contact's first message (and of the first after a session
    /// ends) saves a read this way.
    pub history: Option<Vec<message::Model>>,
}

/// A new turn's claim of its contact's waiting messages, with what its prompt step needs.
pub(crate) struct Claim {
    /// The turn to create (`started`, with a fresh id).
    pub turn: turn::Model,
    pub integration: wi::Model,
    pub waiting: Vec<inbound::Model>,
    /// What [`input::prepare_turn`] made of each waiting message.
    pub prepared: Vec<input::Prepared>,
}

/// Claims each turn's messages and runs its prompt step (`started` → `prompted`): the
/// session, the contact and the user messages. A reset command instead ends the session and
/// stores the confirmation as the reply (`replied`), as does a canned reply. Returns each turn,
/// or `None` for a turn that found some of its messages claimed by someone else (it lost the
/// lane meanwhile), which claims nothing.
///
/// The turns are different contacts' (each holds its lane), so their rows never overlap.
pub(crate) async fn prompt_many(
    txn: &store::WriteTxn,
    sessions: &Sessions,
    claims: &[Claim],
) -> ApiResult<Vec<Option<Prompted>>> {
    let now = now_ms();
    let lost = claim_messages(txn, claims, now).await?;
    let mut turns: Vec<Option<Prompted>> = vec![None; claims.len()];
    // The claims still on, with their readable messages, what was made of those, and contact.
    let mut ready = Vec::with_capacity(claims.len());
    for (i, c) in claims.iter().enumerate() {
        if lost.contains(&c.turn.id) {
            continue;
        }
        // A stored message we cannot read (bad data) must not block the contact: it is parked
        // as failed and the turn goes on with the rest.
        let (readable, unreadable): (Vec<&inbound::Model>, Vec<&inbound::Model>) = c
            .waiting
            .iter()
            .partition(|m| serde_json::from_str::<Value>(&m.payload).is_ok());
        if !unreadable.is_empty() {
            park_unreadable(txn, &c.turn, &unreadable, now).await?;
        }
        let mut t = c.turn.clone();
        if readable.is_empty() {
            t.state = "failed".to_owned();
            t.error = Some("no readable message".to_owned());
            turns[i] = Some(Prompted {
                turn: t,
                history: None,
            });
            continue;
        }
        let prepared: Vec<input::Prepared> = c
            .prepared
            .iter()
            .filter(|p| readable.iter().any(|m| m.id == p.inbound_id))
            .cloned()
            .collect();
        let profile_name = readable
            .last()
            .and_then(|m| serde_json::from_str::<Value>(&m.payload).ok())
            .and_then(|v| v["contact"]["name"].as_str().map(str::to_owned));
        let contact_id = if c.integration.contact_collection {
            Some(upsert_contact(txn, &t, profile_name.as_deref(), now).await?)
        } else {
            None
        };
        ready.push((i, c, readable, prepared, contact_id));
    }
    let keys: Vec<SessionKey> = ready
        .iter()
        .map(|(_, c, _, _, contact_id)| SessionKey {
            tenant_id: &c.turn.tenant_id,
            integration_id: &c.turn.integration_id,
            wa_id: &c.turn.wa_id,
            bot_id: c.integration.bot_id.as_deref(),
            contact_id: contact_id.as_deref(),
            session_ms: c.integration.session_duration,
        })
        .collect();
    let sessions_now = sessions.continue_or_start_many(txn, &keys).await?;
    let mut user_messages = Vec::new();
    let mut histories = Vec::with_capacity(ready.len());
    for ((_, c, readable, prepared, _), session) in ready.iter().zip(&sessions_now) {
        let ours: Vec<message::Model> = readable
            .iter()
            .zip(prepared)
            .map(|(m, p)| user_message(&c.turn, &session.conversation.id, m, p, now))
            .collect();
        histories.push(session.started.then(|| {
            let mut newest_first = ours.clone();
            newest_first.sort_by(|a, b| b.id.cmp(&a.id));
            newest_first
        }));
        user_messages.extend(ours);
    }
    insert_user_messages(txn, user_messages).await?;
    let mut replies = Vec::new();
    for (((i, c, _, prepared, _), (key, session)), history) in ready
        .iter()
        .zip(keys.iter().zip(&sessions_now))
        .zip(histories)
    {
        let conversation = &session.conversation;
        let mut t = c.turn.clone();
        t.conversation_id = Some(conversation.id.clone());
        input::link_files(txn, &t.tenant_id, &conversation.id, prepared).await?;
        let reset = prepared
            .last()
            .is_some_and(|last| is_reset(&c.integration, &last.text));
        let answer = if reset {
            sessions.end(txn, key).await?;
            Some(reset_confirmation())
        } else {
            input::canned_reply(prepared, c.integration.attachments)
        };
        t.state = match answer {
            Some(text) => {
                let part = tool_loop::Part::text(text);
                replies.extend(outbox::part_rows(&t, 0, &[part], None, false));
                "replied".to_owned()
            }
            None => "prompted".to_owned(),
        };
        turns[*i] = Some(Prompted { turn: t, history });
    }
    outbox::insert_parts(txn, &replies).await?;
    store::insert_all(
        txn,
        turns
            .iter()
            .flatten()
            .map(|p| turn::ActiveModel::from(p.turn.clone()))
            .collect(),
    )
    .await?;
    Ok(turns)
}

/// Claims each turn's waiting messages for it, in one statement. Returns the turns that lost
/// some of theirs to someone else; whatever those did claim is let go again.
async fn claim_messages(
    txn: &store::WriteTxn,
    claims: &[Claim],
    now: i64,
) -> ApiResult<std::collections::HashSet<String>> {
    let backend = txn.get_database_backend();
    let pairs: Vec<[&str; 2]> = claims
        .iter()
        .flat_map(|c| {
            c.waiting
                .iter()
                .map(|m| [m.id.as_str(), c.turn.id.as_str()])
        })
        .collect();
    let claimed: std::collections::HashSet<String> = store::query(
        txn,
        &claim_sql(backend),
        [now.into(), store::json_param(&pairs)],
    )
    .await?
    .iter()
    .filter_map(|r| r.try_get("", "id").ok())
    .collect();
    let lost: std::collections::HashSet<String> = claims
        .iter()
        .filter(|c| c.waiting.iter().any(|m| !claimed.contains(&m.id)))
        .map(|c| c.turn.id.clone())
        .collect();
    if !lost.is_empty() {
        let ids: Vec<&String> = lost.iter().collect();
        store::execute(
            txn,
            &format!(
                "UPDATE inbound_message SET turn_id = NULL WHERE {}",
                store::in_json(backend, "turn_id")
            ),
            [store::json_param(&ids)],
        )
        .await?;
    }
    Ok(lost)
}

/// The statement behind [`claim_messages`], over a JSON list of `[inbound_id, turn_id]`.
/// Public for the query-plan test: SQLite must find the messages by key. With `turn_id IS
/// NULL` written plainly it walked the index of every unclaimed message instead.
pub fn claim_sql(backend: sea_orm::DatabaseBackend) -> String {
    format!(
        "UPDATE inbound_message SET turn_id = j.value ->> 1, updated_at = ? FROM {} \
         WHERE inbound_message.id = j.value ->> 0 \
         AND COALESCE(inbound_message.turn_id, '') = '' RETURNING inbound_message.id",
        store::json_rows(backend)
    )
}

/// Parks messages that cannot be read as failed, out of the turn, and logs them.
async fn park_unreadable(
    txn: &store::WriteTxn,
    t: &turn::Model,
    unreadable: &[&inbound::Model],
    now: i64,
) -> ApiResult<()> {
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
    Ok(())
}

/// A user message of a turn, as stored.
fn user_message(
    t: &turn::Model,
    conversation_id: &str,
    m: &inbound::Model,
    p: &input::Prepared,
    now: i64,
) -> message::Model {
    message::Model {
        id: new_id(prefix::MESSAGE),
        tenant_id: t.tenant_id.clone(),
        conversation_id: conversation_id.to_owned(),
        kind: "user".to_owned(),
        text: p.text.clone(),
        meta: p.meta.clone(),
        wamid: Some(m.wamid.clone()),
        inbound_id: Some(m.id.clone()),
        turn_id: None,
        part: None,
        delivery_status: None,
        error_code: None,
        error_title: None,
        input_tokens: None,
        output_tokens: None,
        created_at: now,
        updated_at: now,
    }
}

/// Stores user messages. The inbound id is unique among user messages, so a message is stored
/// once however often its turn is claimed.
async fn insert_user_messages<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<message::Model>,
) -> ApiResult<()> {
    store::insert_rows(
        conn,
        [
            "INSERT INTO message (id, tenant_id, conversation_id, kind, text, meta, wamid, \
             inbound_id, created_at, updated_at) VALUES ",
            "(?, ?, ?, 'user', ?, ?, ?, ?, ?, ?)",
            " ON CONFLICT (inbound_id) DO NOTHING",
        ],
        &rows,
        |m| -> [sea_orm::Value; 9] {
            [
                m.id.clone().into(),
                m.tenant_id.clone().into(),
                m.conversation_id.clone().into(),
                m.text.clone().into(),
                m.meta.clone().into(),
                m.wamid.clone().into(),
                m.inbound_id.clone().into(),
                m.created_at.into(),
                m.updated_at.into(),
            ]
        },
    )
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

/// A turn's answer from the model (or why there is none), to store as its reply.
pub(crate) struct ReplyDraft {
    pub turn: turn::Model,
    pub answer: Result<tool_loop::Finish, String>,
    pub bot_id: Option<String>,
    pub apology: String,
    /// Whether the first part is sent right after the commit: it is stored as `sending`,
    /// which saves a write per turn.
    pub sending: bool,
}

/// Stores each turn's reply parts (`prompted` → `replied`), before any is sent (the outbox),
/// and returns them. A turn whose model failed after its retries gets one short apology, and
/// the failure is logged.
pub(crate) async fn store_replies(
    txn: &store::WriteTxn,
    drafts: &[ReplyDraft],
) -> ApiResult<Vec<Vec<message::Model>>> {
    let backend = txn.get_database_backend();
    let mut out = Vec::with_capacity(drafts.len());
    for d in drafts {
        let t = &d.turn;
        let (first, texts, usage) = match &d.answer {
            Ok(end) => {
                let parts = split(&to_whatsapp(&end.text), WHATSAPP_TEXT_LIMIT);
                // An empty answer after tool messages needs no filler; with nothing else it does.
                let parts = if parts.is_empty() && !end.said_something {
                    vec!["…".to_owned()]
                } else {
                    parts
                };
                let usage = (end.usage.input_tokens, end.usage.output_tokens);
                (end.next_part, parts, Some(usage))
            }
            Err(why) => {
                Event::new(
                    "bot.reply.failed",
                    Level::Error,
                    format!("the model could not answer: {why}"),
                )
                .integration(&t.integration_id)
                .bot(d.bot_id.as_deref())
                .conversation(t.conversation_id.as_deref().unwrap_or_default())
                .record(txn, &t.tenant_id)
                .await?;
                // After tool rounds (stored in this run or an earlier one), the apology
                // follows what they sent.
                let first = tool_loop::next_part(txn, &t.id).await?;
                (first, vec![d.apology.clone()], None)
            }
        };
        let parts: Vec<tool_loop::Part> = texts.into_iter().map(tool_loop::Part::text).collect();
        out.push(outbox::part_rows(t, first, &parts, usage, d.sending));
    }
    outbox::insert_parts(txn, &out.concat()).await?;
    let ids: Vec<&str> = drafts.iter().map(|d| d.turn.id.as_str()).collect();
    store::execute(
        txn,
        &format!(
            "UPDATE turn SET state = 'replied', updated_at = ? WHERE {}",
            store::in_json(backend, "id")
        ),
        [now_ms().into(), store::json_param(&ids)],
    )
    .await?;
    Ok(out)
}

/// `prompted` → `replied`: asks the model and stores its answer as reply parts, which it
/// returns. If the model fails after its retries, the parts are one short apology. With
/// `sending`, the first part is stored as `sending` (it goes out right after).
async fn reply(
    state: &AppState,
    integration: &wi::Model,
    t: turn::Model,
    claimed: Option<&Claimed>,
    sending: bool,
) -> ApiResult<(turn::Model, Vec<message::Model>)> {
    let db = state.store().db();
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
            Some(bot_id) => {
                let known = claimed.and_then(|c| c.history.as_deref());
                ask_model(
                    state,
                    integration,
                    &t,
                    bot_id,
                    &current,
                    known,
                    newest_wamid,
                )
                .await
            }
        }
    });
    let draft = ReplyDraft {
        turn: t.clone(),
        answer: answer?,
        bot_id: integration.bot_id.clone(),
        apology: state.settings().apology_text.clone(),
        sending,
    };
    let parts = state.engine_writer().reply(draft).await?;
    let mut t = t;
    t.state = "replied".to_owned();
    Ok((t, parts))
}

/// The writes after a send, applied by the engine's writer with other turns' ([`apply_steps`]).
#[derive(Debug, Default)]
pub(crate) struct Step {
    /// A part Meta accepted.
    pub sent: Option<outbox::Sent>,
    /// The next part, marked `sending` before it is sent.
    pub sending: Option<String>,
    /// A turn to mark `done`, with its messages processed.
    pub finish: Option<String>,
    /// The lane to let go if nothing waits.
    pub release: Option<lane::Release>,
}

/// Applies steps together: what was sent, what is sent next, turns finished, lanes offered
/// back. Returns what became of each step's lane, if it offered one.
pub(crate) async fn apply_steps(
    txn: &store::WriteTxn,
    steps: &[Step],
) -> ApiResult<Vec<Option<After>>> {
    let sent: Vec<&outbox::Sent> = steps.iter().filter_map(|s| s.sent.as_ref()).collect();
    outbox::mark_sent(txn, &sent).await?;
    let sending: Vec<&str> = steps.iter().filter_map(|s| s.sending.as_deref()).collect();
    outbox::mark_sending(txn, &sending).await?;
    let finished: Vec<&str> = steps.iter().filter_map(|s| s.finish.as_deref()).collect();
    if !finished.is_empty() {
        finish_turns(txn, &finished, "done", None).await?;
    }
    let releases: Vec<lane::Release> = steps.iter().filter_map(|s| s.release.clone()).collect();
    let mut after = if releases.is_empty() {
        Vec::new()
    } else {
        lane::release_many(txn, &releases).await?
    }
    .into_iter();
    Ok(steps
        .iter()
        .map(|s| s.release.as_ref().and_then(|_| after.next()))
        .collect())
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
    known: Option<&[message::Model]>,
    newest_wamid: Option<&str>,
) -> ApiResult<Result<tool_loop::Finish, String>> {
    let request = match model_request(state, t, bot_id, current, known).await {
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
    known: Option<&[message::Model]>,
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
        known,
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
    bot: &store::entities::bot::Model,
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

/// The newest 500 messages of a conversation, newest first. The tenant is checked on the
/// conversation's row, not the messages': with the tenant on `message` PostgreSQL sometimes
/// intersected the conversation's index with the tenant's (every message the tenant has).
pub const HISTORY_SQL: &str = "SELECT m.* FROM conversation c JOIN message m \
     ON m.conversation_id = c.id WHERE c.id = ? AND c.tenant_id = ? \
     AND m.kind IN ('user', 'bot') ORDER BY m.id DESC LIMIT 500";

/// The conversation so far, oldest first, within the history budget, then the current turn's
/// messages (which are never dropped). Read with [`HISTORY_SQL`] unless `known` (newest first).
async fn history(
    state: &AppState,
    t: &turn::Model,
    conversation_id: &str,
    current: &[String],
    known: Option<&[message::Model]>,
    model: &ModelSpec,
    images: bool,
) -> ApiResult<(Vec<ChatMessage>, bool)> {
    let rows: std::borrow::Cow<[message::Model]> = match known {
        Some(rows) => rows.into(),
        None => store::query(
            state.store().db(),
            HISTORY_SQL,
            [conversation_id.into(), t.tenant_id.as_str().into()],
        )
        .await?
        .iter()
        .map(|row| message::Model::from_query_result(row, ""))
        .collect::<Result<Vec<_>, _>>()?
        .into(),
    };
    let max_messages = model
        .interaction_max_messages
        .map_or(usize::MAX, |n| n as usize);
    let mut budget = state.settings().history_tokens as i64;
    let mut turn_now = Vec::new();
    let mut past = Vec::new();
    let mut has_images = false;
    for m in rows.iter() {
        // What this turn's tool rounds already sent is replayed by the tool loop, in place.
        if m.turn_id.as_deref() == Some(t.id.as_str()) {
            continue;
        }
        let is_current = m.inbound_id.as_ref().is_some_and(|i| current.contains(i));
        if is_current {
            // The current turn's messages with their images (stored text for the rest).
            has_images |= input::has_image(m);
            turn_now.push(ChatMessage {
                role: Role::User,
                content: input::current_content(state, m, images).await?,
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
