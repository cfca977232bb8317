//! Contact lanes: at most one worker runs a contact's turns at a time, on any replica.
//!
//! A lane is a row keyed by `integration_id:wa_id` with a lease (`locked_by`, `locked_until`).
//! Taking it is one conditional update, so two workers can never both hold it. The holder
//! renews the lease while a turn runs; if it dies, the lease lapses and the next job (or the
//! sweeper) takes over where it stopped.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};

use crate::store::write_one;

use crate::store::sql;
use crate::time::now_ms;

/// The lane id of a contact of an integration.
pub fn lane_id(integration_id: &str, wa_id: &str) -> String {
    format!("{integration_id}:{wa_id}")
}

/// Takes the lane for `worker` if it is free (or already ours). Returns whether we hold it.
pub async fn acquire(
    conn: &DatabaseConnection,
    tenant_id: &str,
    integration_id: &str,
    wa_id: &str,
    worker: &str,
    lease: Duration,
) -> Result<bool, DbErr> {
    let now = now_ms();
    let until = now + lease.as_millis() as i64;
    let id = lane_id(integration_id, wa_id);
    // One statement: create the lane on first use, or take it if its lease lapsed or is ours.
    // Nothing changes (no row affected) when someone else holds it.
    let changed = write(
        conn,
        "INSERT INTO contact_lane (id, tenant_id, integration_id, wa_id, locked_by, locked_until) \
         VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET locked_by = excluded.locked_by, \
         locked_until = excluded.locked_until \
         WHERE contact_lane.locked_until < ? OR contact_lane.locked_by = ?",
        [
            id.into(),
            tenant_id.into(),
            integration_id.into(),
            wa_id.into(),
            worker.into(),
            until.into(),
            now.into(),
            worker.into(),
        ],
    )
    .await?;
    Ok(changed == 1)
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

/// Gives the lane up.
pub async fn release(conn: &DatabaseConnection, lane: &str, worker: &str) -> Result<(), DbErr> {
    write(
        conn,
        "UPDATE contact_lane SET locked_by = NULL, locked_until = 0 WHERE id = ? AND locked_by = ?",
        [lane.into(), worker.into()],
    )
    .await?;
    Ok(())
}

/// Gives the lane up unless a message of the contact is waiting. Returns whether it was given
/// up; if not, either a message waits and the lane is still ours ([`holds`] tells), or it was
/// no longer ours.
///
/// One statement, so no message can slip between the check and the release: a message stored
/// before it is seen by it, and a message stored after it finds the lane free when its job runs.
/// A job that found the lane taken relies on exactly this.
pub async fn release_if_idle(
    conn: &DatabaseConnection,
    lane: &str,
    worker: &str,
    integration_id: &str,
    wa_id: &str,
) -> Result<bool, DbErr> {
    let changed = write(
        conn,
        "UPDATE contact_lane SET locked_by = NULL, locked_until = 0 \
         WHERE id = ? AND locked_by = ? AND NOT EXISTS (SELECT 1 FROM inbound_message \
         WHERE integration_id = ? AND wa_id = ? AND state = 'queued')",
        [
            lane.into(),
            worker.into(),
            integration_id.into(),
            wa_id.into(),
        ],
    )
    .await?;
    Ok(changed == 1)
}

/// Whether `worker` holds the lane.
pub async fn holds(conn: &DatabaseConnection, lane: &str, worker: &str) -> Result<bool, DbErr> {
    let backend = conn.get_database_backend();
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql(
                backend,
                "SELECT 1 AS held FROM contact_lane WHERE id = ? AND locked_by = ?",
            ),
            [lane.into(), worker.into()],
        ))
        .await?;
    Ok(row.is_some())
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
