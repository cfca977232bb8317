//! Contact lanes: at most one worker runs a contact's turns at a time, on any replica.
//!
//! A lane is a row keyed by `integration_id:wa_id` with a lease (`locked_by`, `locked_until`).
//! Taking it is one conditional upsert, so two workers can never both hold it. The holder
//! renews the lease while a turn runs; if it dies, the lease lapses and the next job (or the
//! sweeper) takes over where it stopped.
//!
//! Taking and letting go are written for many lanes at once: the engine's writer
//! ([`super::writer`]) applies the requests of all turns in flight in one transaction.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, Statement};
use serde_json::json;

use crate::store::entities::inbound_message as inbound;
use crate::store::{in_json, json_param, json_rows, query, sql, write_one};
use crate::time::now_ms;

/// What a turn claims at most at once.
pub const MAX_COALESCED: usize = 20;

/// The lane id of a contact of an integration.
pub fn lane_id(integration_id: &str, wa_id: &str) -> String {
    format!("{integration_id}:{wa_id}")
}

/// A request to take a contact's lane.
#[derive(Debug, Clone)]
pub struct Take {
    pub tenant_id: String,
    pub integration_id: String,
    pub wa_id: String,
    /// Unique per `run_lane` call: concurrent jobs of one process must exclude each other too.
    pub holder: String,
    pub lease: Duration,
}

/// A request to let a lane go once nothing of its contact waits.
#[derive(Debug, Clone)]
pub struct Release {
    pub integration_id: String,
    pub wa_id: String,
    pub holder: String,
}

/// What became of a lane its holder offered to let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Let go: nothing waited.
    Released,
    /// Still ours: a message arrived meanwhile and the holder answers it.
    Waiting,
    /// No longer ours (the lease lapsed and someone took it over).
    Lost,
}

/// Takes each lane that is free (or already its holder's) and reads what waits in it, oldest
/// first and at most [`MAX_COALESCED`] per contact. `None` for a lane someone else holds: they
/// check for waiting messages before letting go.
///
/// A lane asked for twice in one batch goes to the first request; the holder answers the
/// messages of both.
pub async fn take_many<C: ConnectionTrait>(
    conn: &C,
    takes: &[Take],
) -> Result<Vec<Option<Vec<inbound::Model>>>, DbErr> {
    let backend = conn.get_database_backend();
    let now = now_ms();
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<_> = takes
        .iter()
        .filter(|t| seen.insert(lane_id(&t.integration_id, &t.wa_id)))
        .map(|t| {
            json!({
                "id": lane_id(&t.integration_id, &t.wa_id), "tenant": t.tenant_id,
                "integration": t.integration_id, "wa": t.wa_id, "holder": t.holder,
                "until": now + t.lease.as_millis() as i64,
            })
        })
        .collect();
    // One statement: create each lane on first use, or take it if its lease lapsed or is
    // ours; a lane held by someone else is left alone and not returned. `WHERE true` lets
    // SQLite tell the upsert's ON CONFLICT from a join condition.
    let taken = query(
        conn,
        &format!(
            "INSERT INTO contact_lane (id, tenant_id, integration_id, wa_id, locked_by, \
             locked_until) SELECT j.value ->> 'id', j.value ->> 'tenant', \
             j.value ->> 'integration', j.value ->> 'wa', j.value ->> 'holder', \
             CAST(j.value ->> 'until' AS BIGINT) FROM {} WHERE true \
             ON CONFLICT (id) DO UPDATE SET locked_by = excluded.locked_by, \
             locked_until = excluded.locked_until WHERE contact_lane.locked_until < ? \
             OR contact_lane.locked_by = excluded.locked_by RETURNING id, locked_by",
            json_rows(backend)
        ),
        [json_param(&rows), now.into()],
    )
    .await?;
    let taken: std::collections::HashSet<(String, String)> = taken
        .iter()
        .filter_map(|r| Some((r.try_get("", "id").ok()?, r.try_get("", "locked_by").ok()?)))
        .collect();
    let held: Vec<[&str; 2]> = takes
        .iter()
        .filter(|t| taken.contains(&(lane_id(&t.integration_id, &t.wa_id), t.holder.clone())))
        .map(|t| [t.integration_id.as_str(), t.wa_id.as_str()])
        .collect();
    let mut waiting = waiting_many(conn, &held).await?;
    Ok(takes
        .iter()
        .map(|t| {
            let id = lane_id(&t.integration_id, &t.wa_id);
            taken
                .contains(&(id.clone(), t.holder.clone()))
                .then(|| waiting.remove(&id).unwrap_or_default())
        })
        .collect())
}

/// The waiting messages of a contact, oldest first, at most [`MAX_COALESCED`]: the claimed
/// ones of an unfinished turn among them (they stay `queued` until their turn ends).
pub async fn waiting(
    conn: &DatabaseConnection,
    integration_id: &str,
    wa_id: &str,
) -> Result<Vec<inbound::Model>, DbErr> {
    let mut by_lane = waiting_many(conn, &[[integration_id, wa_id]]).await?;
    Ok(by_lane
        .remove(&lane_id(integration_id, wa_id))
        .unwrap_or_default())
}

/// The statement behind [`waiting_many`]: the waiting messages of the contacts in a JSON list
/// of `[integration_id, wa_id]` pairs, at most [`MAX_COALESCED`] each, oldest first. Public for
/// the query-plan test: contacts are found through the partial index of waiting messages
/// (migration 000009), whose state is written as a literal so that both databases use it.
/// Every waiting message of the contacts is read to rank them, which is cheap while a contact
/// has few waiting; a contact with thousands queued costs a read of all of them per turn.
pub fn waiting_sql(backend: sea_orm::DatabaseBackend) -> String {
    // Joined from the list, so that SQLite looks each contact up in the partial index; as
    // `(integration_id, wa_id) IN (…)` it walked every message of the integration instead.
    format!(
        "SELECT * FROM (SELECT m.*, ROW_NUMBER() OVER (PARTITION BY m.integration_id, m.wa_id \
         ORDER BY m.id) AS lane_rank FROM (SELECT j.value ->> 0 AS lane_integration, \
         j.value ->> 1 AS lane_wa FROM {}) AS l JOIN inbound_message m \
         ON m.integration_id = l.lane_integration AND m.wa_id = l.lane_wa \
         WHERE m.state = 'queued') AS w WHERE w.lane_rank <= {MAX_COALESCED} ORDER BY w.id",
        json_rows(backend)
    )
}

/// [`waiting`] for many contacts, given as `[integration_id, wa_id]`, by lane id.
async fn waiting_many<C: ConnectionTrait>(
    conn: &C,
    lanes: &[[&str; 2]],
) -> Result<std::collections::HashMap<String, Vec<inbound::Model>>, DbErr> {
    let mut by_lane: std::collections::HashMap<String, Vec<inbound::Model>> = Default::default();
    if lanes.is_empty() {
        return Ok(by_lane);
    }
    let backend = conn.get_database_backend();
    let rows = query(conn, &waiting_sql(backend), [json_param(&lanes)]).await?;
    for row in rows {
        let m = inbound::Model::from_query_result(&row, "")?;
        by_lane
            .entry(lane_id(&m.integration_id, &m.wa_id))
            .or_default()
            .push(m);
    }
    Ok(by_lane)
}

/// Lets each lane go unless a message of its contact is waiting, and tells what became of it.
///
/// One statement, so no message can slip between the check and the release: a message stored
/// before it is seen by it, and a message stored after it finds the lane free when its job runs.
/// A job that found the lane taken relies on exactly this.
pub async fn release_many<C: ConnectionTrait>(
    conn: &C,
    releases: &[Release],
) -> Result<Vec<After>, DbErr> {
    let backend = conn.get_database_backend();
    let holders: Vec<&str> = releases.iter().map(|r| r.holder.as_str()).collect();
    let ids: Vec<String> = releases
        .iter()
        .map(|r| lane_id(&r.integration_id, &r.wa_id))
        .collect();
    let released = query(
        conn,
        &release_sql(backend),
        [json_param(&ids), json_param(&holders)],
    )
    .await?;
    let released: std::collections::HashSet<String> = released
        .iter()
        .filter_map(|r| r.try_get("", "id").ok())
        .collect();
    let kept: Vec<&str> = releases
        .iter()
        .zip(&ids)
        .filter(|(_, id)| !released.contains(*id))
        .map(|(r, _)| r.holder.as_str())
        .collect();
    let still_held: std::collections::HashSet<String> = if kept.is_empty() {
        Default::default()
    } else {
        query(
            conn,
            &format!(
                "SELECT locked_by FROM contact_lane WHERE {} AND {}",
                in_json(backend, "id"),
                in_json(backend, "locked_by")
            ),
            [json_param(&ids), json_param(&kept)],
        )
        .await?
        .iter()
        .filter_map(|r| r.try_get("", "locked_by").ok())
        .collect()
    };
    Ok(releases
        .iter()
        .zip(&ids)
        .map(|(r, id)| {
            if released.contains(id) {
                After::Released
            } else if still_held.contains(&r.holder) {
                After::Waiting
            } else {
                After::Lost
            }
        })
        .collect())
}

/// The statement behind [`release_many`], over JSON lists of lane ids and holders. Public for
/// the query-plan test: the check for waiting messages must use their partial index.
///
/// A holder string is unique to one `run_lane` call, which holds one lane, so matching the
/// holders alone would do; the ids let both databases find the rows by key.
pub fn release_sql(backend: sea_orm::DatabaseBackend) -> String {
    format!(
        "UPDATE contact_lane SET locked_by = NULL, locked_until = 0 WHERE {} AND {} \
         AND NOT EXISTS (SELECT 1 FROM inbound_message m \
         WHERE m.integration_id = contact_lane.integration_id \
         AND m.wa_id = contact_lane.wa_id AND m.state = 'queued') RETURNING id",
        in_json(backend, "id"),
        in_json(backend, "locked_by"),
    )
}

/// Extends our lease. Returns false if we lost it (it lapsed and someone else took it).
pub async fn renew(
    conn: &DatabaseConnection,
    lane: &str,
    worker: &str,
    lease: Duration,
) -> Result<bool, DbErr> {
    let until = now_ms() + lease.as_millis() as i64;
    let changed = write(
        conn,
        "UPDATE contact_lane SET locked_until = ? WHERE id = ? AND locked_by = ?",
        [until.into(), lane.into(), worker.into()],
    )
    .await?;
    Ok(changed == 1)
}

/// Gives the lane up whatever waits (after a failed turn, whose job is retried).
pub async fn release(conn: &DatabaseConnection, lane: &str, worker: &str) -> Result<(), DbErr> {
    write(
        conn,
        "UPDATE contact_lane SET locked_by = NULL, locked_until = 0 WHERE id = ? AND locked_by = ?",
        [lane.into(), worker.into()],
    )
    .await?;
    Ok(())
}

/// Runs one lane write through the write gate; returns the rows it changed.
async fn write<const N: usize>(
    conn: &DatabaseConnection,
    text: &str,
    values: [sea_orm::Value; N],
) -> Result<u64, DbErr> {
    let backend = conn.get_database_backend();
    let stmt = Statement::from_sql_and_values(backend, sql(backend, text), values);
    Ok(write_one(conn, stmt).await?.rows_affected())
}
