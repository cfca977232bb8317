//! Durable, deduplicated ingestion of webhooks, with group commit.
//!
//! The callback handler verifies and parses a webhook, turns it into a [`Batch`] and hands it to
//! the [`Ingestor`]; it answers Meta only once the batch is committed. One writer task collects
//! the batches of all concurrent requests and writes them in a single transaction: inbound
//! messages (deduplicated on `(integration_id, wamid)`), their queue jobs, statuses and event-log
//! entries. One commit (one fsync) then acknowledges many webhooks, which is what makes thousands
//! of durable acknowledgements per second possible on SQLite.

pub mod cache;
pub mod limiter;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    Statement,
};
use serde_json::json;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::events::{Event, Level};
use crate::ids::{new_id, prefix};
use crate::jobs::{INBOUND_QUEUE, InboundJob};
use crate::store::Store;
use crate::store::entities::whatsapp_integration as wi;
use crate::time::now_ms;

/// Most requests committed together.
const MAX_GROUP: usize = 512;
/// Requests waiting for the writer before callers are told to retry (503).
const QUEUE_DEPTH: usize = 8192;

/// An inbound message to store.
#[derive(Debug, Clone)]
pub struct InboundRecord {
    pub wamid: String,
    pub wa_id: String,
    pub kind: String,
    /// JSON: the message, the sender's contact entry and the value's metadata.
    pub payload: String,
    /// Meta's timestamp, seconds.
    pub sent_at: i64,
    /// Whether `allowFrom` lets the sender talk to the bot.
    pub allowed: bool,
}

/// A delivery status to store and apply.
#[derive(Debug, Clone)]
pub struct StatusRecord {
    pub wamid: String,
    pub status: String,
    pub error_code: Option<i32>,
    pub error_title: Option<String>,
    pub payload: String,
    pub status_at: i64,
}

/// Everything one webhook request stores.
#[derive(Debug, Default)]
pub struct Batch {
    pub tenant_id: String,
    pub integration_id: String,
    pub bot_id: Option<String>,
    pub messages: Vec<InboundRecord>,
    pub statuses: Vec<StatusRecord>,
    /// Other event-log entries (unknown fields, errors, wrong phone number ids…).
    pub events: Vec<Event>,
}

/// What storing a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// New messages, queued for the engine.
    pub queued: usize,
    /// New messages from senders `allowFrom` does not allow: stored, never answered.
    pub ignored: usize,
    /// Messages stored before (Meta redelivered them).
    pub duplicates: usize,
    /// New statuses.
    pub statuses: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The integration was deleted after the request started.
    #[error("the integration no longer exists")]
    IntegrationGone,
    /// The database failed; Meta should retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

struct Pending {
    batch: Batch,
    reply: oneshot::Sender<Result<Outcome, IngestError>>,
}

/// The handle requests submit batches through. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ingestor {
    tx: mpsc::Sender<Pending>,
}

impl Ingestor {
    /// Starts the writer task. It runs until every `Ingestor` clone is dropped, so batches
    /// submitted before shutdown are still written. `wake` is notified after each commit that
    /// queued jobs, so this process's workers take them at once instead of at their next poll.
    pub fn start(store: Store, wake: Arc<Notify>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(writer(store, rx, wake));
        Self { tx }
    }

    /// Stores a batch; returns once it is committed.
    pub async fn submit(&self, batch: Batch) -> Result<Outcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Pending { batch, reply })
            .map_err(|_| IngestError::Unavailable("ingest queue full".to_owned()))?;
        answer
            .await
            .map_err(|_| IngestError::Unavailable("ingest writer stopped".to_owned()))?
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Pending>, wake: Arc<Notify>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.recv().await {
        group.push(first);
        // Whatever arrived while the last commit ran goes into this one.
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let batches: Vec<&Batch> = group.iter().map(|p| &p.batch).collect();
        let result = write_group(&store, &batches).await;
        match result {
            Ok(outcomes) => {
                if outcomes
                    .iter()
                    .any(|o| o.as_ref().is_ok_and(|o| o.queued > 0))
                {
                    wake.notify_one();
                }
                for (p, outcome) in group.drain(..).zip(outcomes) {
                    let _ = p.reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = ?e, requests = group.len(), "storing webhooks failed");
                let why = if crate::store::is_unavailable(&e) {
                    "database unavailable"
                } else {
                    "database error"
                };
                for p in group.drain(..) {
                    let _ = p.reply.send(Err(IngestError::Unavailable(why.to_owned())));
                }
                // Do not spin against a database that is down.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn write_group(
    store: &Store,
    batches: &[&Batch],
) -> Result<Vec<Result<Outcome, IngestError>>, DbErr> {
    let txn = crate::store::begin_write(store.db()).await?;
    let mut ids: Vec<&str> = batches.iter().map(|b| b.integration_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let existing: Vec<String> = wi::Entity::find()
        .filter(wi::Column::Id.is_in(ids))
        .select_only()
        .column(wi::Column::Id)
        .into_tuple()
        .all(&txn)
        .await?;
    let now = now_ms();
    let live = |b: &Batch| existing.iter().any(|id| id == &b.integration_id);

    // All messages of the group in multi-row inserts: statements per commit stay few however
    // many webhooks share it. Ids are made here, so RETURNING says which rows are new.
    let mut rows: Vec<(usize, String, &InboundRecord)> = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        if live(b) {
            rows.extend(b.messages.iter().map(|m| (i, new_id(prefix::INBOUND), m)));
        }
    }
    let inserted = crate::store::insert_rows(
        &txn,
        [
            "INSERT INTO inbound_message (id, tenant_id, integration_id, wamid, wa_id, kind, \
             payload, state, sent_at, received_at, updated_at) VALUES ",
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            " ON CONFLICT (integration_id, wamid) DO NOTHING RETURNING id",
        ],
        &rows,
        |(i, id, m)| -> [sea_orm::Value; 11] {
            let b = batches[*i];
            let state = if m.allowed { "queued" } else { "ignored" };
            [
                id.clone().into(),
                b.tenant_id.clone().into(),
                b.integration_id.clone().into(),
                m.wamid.clone().into(),
                m.wa_id.clone().into(),
                m.kind.clone().into(),
                m.payload.clone().into(),
                state.into(),
                m.sent_at.into(),
                now.into(),
                now.into(),
            ]
        },
    )
    .await?
    .iter()
    .map(|row| row.try_get::<String>("", "id"))
    .collect::<Result<std::collections::HashSet<_>, _>>()?;

    let mut results: Vec<Result<Outcome, IngestError>> = batches
        .iter()
        .map(|b| {
            if live(b) {
                Ok(Outcome::default())
            } else {
                Err(IngestError::IntegrationGone)
            }
        })
        .collect();
    let mut jobs = Vec::new();
    let mut events: Vec<(usize, Event)> = Vec::new();
    for (i, id, m) in &rows {
        let b = batches[*i];
        let Some(Ok(outcome)) = results.get_mut(*i) else {
            continue;
        };
        if !inserted.contains(id) {
            outcome.duplicates += 1;
            continue;
        }
        let data = json!({"wamid": m.wamid, "type": m.kind, "from": m.wa_id, "inboundId": id});
        let event = if m.allowed {
            outcome.queued += 1;
            jobs.push((
                InboundJob {
                    tenant_id: b.tenant_id.clone(),
                    integration_id: b.integration_id.clone(),
                    inbound_id: id.clone(),
                    wa_id: Some(m.wa_id.clone()),
                },
                id.clone(),
            ));
            Event::new(
                "whatsapp.message.received",
                Level::Info,
                format!("{} message received", m.kind),
            )
        } else {
            outcome.ignored += 1;
            Event::new(
                "whatsapp.message.ignored",
                Level::Warning,
                "message from a sender allowFrom does not allow: stored, not answered",
            )
        };
        events.push((
            *i,
            event
                .integration(&b.integration_id)
                .bot(b.bot_id.as_deref())
                .data(data),
        ));
    }
    for chunk in crate::store::shaped_chunks(&jobs) {
        crate::jobs::enqueue_many_in(&txn, INBOUND_QUEUE, chunk).await?;
    }

    for (i, b) in batches.iter().enumerate() {
        if !live(b) {
            continue;
        }
        for s in &b.statuses {
            if record_status(&txn, b, s, now).await?
                && let Some(Ok(outcome)) = results.get_mut(i)
            {
                outcome.statuses += 1;
            }
        }
        events.extend(b.events.iter().map(|e| (i, e.clone())));
    }
    crate::store::insert_rows(
        &txn,
        [
            &format!("INSERT INTO event_log ({}) VALUES ", Event::COLUMNS),
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            "",
        ],
        &events,
        |(i, e)| e.clone().into_row(&batches[*i].tenant_id, now),
    )
    .await?;
    txn.commit().await?;
    Ok(results)
}

/// Stores a status once (redeliveries are ignored), applies it to the outbound message if that
/// is known, and logs it. Returns whether it was new.
async fn record_status(
    txn: &crate::store::WriteTxn,
    b: &Batch,
    s: &StatusRecord,
    now: i64,
) -> Result<bool, DbErr> {
    let backend = txn.get_database_backend();
    let inserted = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            crate::store::sql(
                backend,
                "INSERT INTO message_status (id, tenant_id, integration_id, wamid, status, \
                 error_code, error_title, payload, status_at, received_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (integration_id, wamid, status) DO NOTHING RETURNING id",
            ),
            [
                new_id(prefix::STATUS).into(),
                b.tenant_id.clone().into(),
                b.integration_id.clone().into(),
                s.wamid.clone().into(),
                s.status.clone().into(),
                s.error_code.into(),
                s.error_title.clone().into(),
                s.payload.clone().into(),
                s.status_at.into(),
                now.into(),
            ],
        ))
        .await?;
    if inserted.is_none() {
        return Ok(false);
    }
    apply_status(
        txn,
        &b.tenant_id,
        &s.wamid,
        &s.status,
        s.error_code,
        s.error_title.as_deref(),
        now,
    )
    .await?;
    let (level, message) = match (s.status.as_str(), s.error_code) {
        ("failed", Some(code)) => (
            Level::Error,
            format!(
                "delivery failed with error {code}: {}",
                s.error_title.as_deref().unwrap_or("no title")
            ),
        ),
        ("failed", None) => (Level::Error, "delivery failed".to_owned()),
        (other, _) => (Level::Info, format!("message {other}")),
    };
    Event::new(status_event_kind(&s.status), level, message)
        .integration(&b.integration_id)
        .bot(b.bot_id.as_deref())
        .data(json!({"wamid": s.wamid, "status": s.status, "code": s.error_code}))
        .record(txn, &b.tenant_id)
        .await?;
    Ok(true)
}

fn status_event_kind(status: &str) -> &'static str {
    match status {
        "sent" => "whatsapp.status.sent",
        "delivered" => "whatsapp.status.delivered",
        "read" => "whatsapp.status.read",
        "failed" => "whatsapp.status.failed",
        _ => "whatsapp.status.other",
    }
}

/// Where a delivery state stands; a message only ever moves to a higher rank.
fn rank(status: &str) -> Option<i32> {
    match status {
        "sent" => Some(1),
        "delivered" => Some(2),
        "read" => Some(3),
        "failed" => Some(4),
        _ => None,
    }
}

/// Moves the outbound message with `wamid` forward to `status`, never backwards. Does nothing
/// when no such message is known (yet): the status stays stored and
/// [`apply_stored_statuses`] applies it once the send call has recorded the wamid.
pub async fn apply_status<C: ConnectionTrait>(
    conn: &C,
    tenant_id: &str,
    wamid: &str,
    status: &str,
    error_code: Option<i32>,
    error_title: Option<&str>,
    now: i64,
) -> Result<(), DbErr> {
    let Some(rank) = rank(status) else {
        return Ok(());
    };
    crate::store::execute(
        conn,
        "UPDATE message SET delivery_status = ?, error_code = COALESCE(?, error_code), \
         error_title = COALESCE(?, error_title), updated_at = ? \
         WHERE tenant_id = ? AND wamid = ? AND \
         (CASE delivery_status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 \
          WHEN 'failed' THEN 4 ELSE 0 END) < ?",
        [
            status.into(),
            error_code.into(),
            error_title.map(str::to_owned).into(),
            now.into(),
            tenant_id.into(),
            wamid.into(),
            rank.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Applies statuses that arrived before the messages' wamids were known. `sent` lists
/// `[integration_id, wamid]` pairs of messages whose send call just returned.
pub async fn apply_stored_statuses<C: ConnectionTrait>(
    conn: &C,
    sent: &[[&str; 2]],
) -> Result<(), DbErr> {
    use crate::store::entities::message_status as ms;
    if sent.is_empty() {
        return Ok(());
    }
    // By integration and wamid, the leading columns of the table's unique key. A tenant filter
    // here made SQLite walk all of the tenant's statuses instead.
    let rows = crate::store::query(
        conn,
        &stored_statuses_sql(conn.get_database_backend()),
        [crate::store::json_param(&sent)],
    )
    .await?;
    let now = now_ms();
    for row in rows {
        let s = ms::Model::from_query_result(&row, "")?;
        apply_status(
            conn,
            &s.tenant_id,
            &s.wamid,
            &s.status,
            s.error_code,
            s.error_title.as_deref(),
            now,
        )
        .await?;
    }
    Ok(())
}

/// The statement behind [`apply_stored_statuses`]; public for the query-plan test.
pub fn stored_statuses_sql(backend: sea_orm::DatabaseBackend) -> String {
    format!(
        "SELECT s.* FROM message_status s WHERE (s.integration_id, s.wamid) IN \
         (SELECT j.value ->> 0, j.value ->> 1 FROM {})",
        crate::store::json_rows(backend)
    )
}
