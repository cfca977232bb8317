//! Background work, run by apalis workers in `parley serve` and `parley worker`.
//!
//! Workers stop taking new work on shutdown and get up to `PARLEY_SHUTDOWN_TIMEOUT_SECS` to
//! finish what they hold.

use std::str::FromStr;

use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::auth::throttle;

mod sqlite_queue;
use crate::state::AppState;

/// The queue of stored inbound WhatsApp messages waiting for the conversation engine.
pub const INBOUND_QUEUE: &str = "inbound";

/// How often idle SQLite workers look for new jobs, and how soon after a wake any worker looks
/// once more. Jobs are written by our own SQL inside the ingest transaction, which apalis-sqlite's
/// notifications do not see; this process's ingestion wakes its workers itself, and the poll
/// finds what other processes queued.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// How often idle PostgreSQL workers look for jobs nothing announced (retries coming due).
/// Inserts are announced (`LISTEN`), so this can be slow.
const POSTGRES_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How often a job may fail before it is parked as failed.
pub const MAX_ATTEMPTS: i32 = 10;

/// One stored inbound message to process. Carries ids only: the worker re-reads the row, so a
/// job that runs twice finds the message already processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundJob {
    pub tenant_id: String,
    pub integration_id: String,
    pub inbound_id: String,
    /// The contact, so the worker can go straight to its lane without reading the message
    /// first. Absent in jobs queued by earlier versions; those read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
}

/// Enqueues a job inside the caller's transaction, so the job exists exactly when the data it
/// points to does.
///
/// apalis' own `push` takes its pool, not our transaction, so this writes the queue's row
/// itself, in the shape apalis-sqlite and apalis-postgres 1.0 read back (args as JSON bytes,
/// a ULID id, `Pending`). `idempotency_key` is unique per queue: enqueuing twice is a no-op.
/// A test (`storage::jobs_enqueued_in_a_transaction_reach_an_apalis_worker`) guards the shape.
pub async fn enqueue_in<C: ConnectionTrait>(
    conn: &C,
    queue: &str,
    args: &impl Serialize,
    idempotency_key: &str,
) -> Result<(), DbErr> {
    enqueue_many_in(conn, queue, &[(args, idempotency_key.to_owned())]).await
}

/// [`enqueue_in`] for many jobs of one queue in one statement; `jobs` pairs args with their
/// idempotency keys.
pub async fn enqueue_many_in<C: ConnectionTrait, T: Serialize>(
    conn: &C,
    queue: &str,
    jobs: &[(T, String)],
) -> Result<(), DbErr> {
    if jobs.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    let now_secs = crate::time::now_ms() / 1000;
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(jobs.len() * 6);
    for (args, key) in jobs {
        let job = serde_json::to_vec(args).map_err(|e| DbErr::Custom(format!("job args: {e}")))?;
        let id = ulid::Ulid::generate().to_string();
        match backend {
            DatabaseBackend::Postgres => {
                values.extend([
                    id.into(),
                    queue.into(),
                    job.into(),
                    MAX_ATTEMPTS.into(),
                    key.clone().into(),
                ]);
            }
            _ => values.extend([
                job.into(),
                id.into(),
                queue.into(),
                MAX_ATTEMPTS.into(),
                now_secs.into(),
                key.clone().into(),
            ]),
        }
    }
    let (head, row) = match backend {
        DatabaseBackend::Postgres => (
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, \
             priority, metadata, idempotency_key) VALUES ",
            "(?, ?, ?, 'Pending', 0, ?, now(), 0, ''::hstore, ?)",
        ),
        _ => (
            "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, \
             priority, metadata, idempotency_key) VALUES ",
            "(?, ?, ?, 'Pending', 0, ?, ?, 0, '{}', ?)",
        ),
    };
    conn.execute_raw(crate::store::multi_row(
        backend,
        head,
        row,
        jobs.len(),
        " ON CONFLICT (job_type, idempotency_key) DO NOTHING",
        values,
    ))
    .await?;
    Ok(())
}

/// How long finished jobs stay in the queue's table. Our own tables keep the record of what
/// happened (messages, turns, events); the job rows only make the queue's queries slower.
const FINISHED_JOB_RETENTION_SECS: i64 = 3600;

/// Deletes jobs that finished more than [`FINISHED_JOB_RETENTION_SECS`] ago. Jobs that failed
/// for good stay, for inspection.
pub async fn prune_finished<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "DELETE FROM apalis.jobs WHERE status IN ('Done', 'Killed') \
             AND done_at < now() - make_interval(secs => $1)"
        }
        _ => "DELETE FROM Jobs WHERE status IN ('Done', 'Killed') AND done_at < ?",
    };
    let arg: sea_orm::Value = match backend {
        DatabaseBackend::Postgres => (FINISHED_JOB_RETENTION_SECS as f64).into(),
        _ => (crate::time::now_ms() / 1000 - FINISHED_JOB_RETENTION_SECS).into(),
    };
    let res = conn
        .execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, [arg]))
        .await?;
    Ok(res.rows_affected())
}

/// Housekeeping, once a minute on every replica. Each task is idempotent, so replicas running
/// it at the same time do no harm.
const MAINTENANCE_SCHEDULE: &str = "0 * * * * *";

/// Wakes an idle worker every `interval` to look for jobs, at once when this process's
/// ingestion has queued some (`wake`) or another process announces an insert (`inserts`, on
/// PostgreSQL), and once more `recheck` after the last of those.
///
/// apalis' own strategies each lose wake-ups:
/// - `IntervalStrategy` arms each next timer without polling it, so no waker is registered with
///   it: a worker whose queue was empty at start slept until something else woke its task.
/// - `StreamStrategy` (what `PostgresStorage::with_pubsub` uses) takes one notification per
///   poll. While more are queued the stream never returns `Pending`, so it registers no waker,
///   and a worker whose fetch came back empty slept through every later insert until its
///   heartbeat, 30 s on. The bench saw replies stop for 23 s at 200 messages/s.
///
/// This one polls every new timer at once and drains the stream, registering the waker with
/// both. A wake that arrives while a fetch runs is spent on that fetch, which may have read the
/// queue before the new job was committed: the `recheck` look closes that gap. The interval
/// finds what nothing announces (retries coming due, jobs queued with the stream down).
struct WakeOrEvery {
    interval: std::time::Duration,
    recheck: std::time::Duration,
    wake: std::sync::Arc<tokio::sync::Notify>,
    inserts: Option<Announcements>,
    /// Created on first use: a tokio timer needs the runtime, which the builder may not have.
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    notified: Option<std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>>,
}

/// Announcements of jobs inserted by any process (PostgreSQL's `LISTEN`).
type Announcements = std::pin::Pin<Box<dyn futures_util::Stream<Item = ()> + Send + Sync>>;

impl WakeOrEvery {
    fn new(
        interval: std::time::Duration,
        recheck: std::time::Duration,
        wake: std::sync::Arc<tokio::sync::Notify>,
        inserts: Option<Announcements>,
    ) -> Self {
        Self {
            interval,
            recheck,
            wake,
            inserts,
            sleep: None,
            notified: None,
        }
    }

    /// Takes every queued announcement, leaving the stream `Pending` (its waker registered).
    fn drain_inserts(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        use std::task::Poll;
        let Some(inserts) = self.inserts.as_mut() else {
            return false;
        };
        let mut announced = false;
        loop {
            match inserts.as_mut().poll_next(cx) {
                Poll::Ready(Some(())) => announced = true,
                Poll::Ready(None) => {
                    tracing::warn!("the job insert stream closed; polling only");
                    self.inserts = None;
                    return announced;
                }
                Poll::Pending => return announced,
            }
        }
    }
}

impl PollStrategy for WakeOrEvery {
    fn poll_drive(
        &mut self,
        cx: &mut std::task::Context<'_>,
        _snapshot: &PollSnapshot,
    ) -> std::task::Poll<Option<()>> {
        use std::future::Future;
        use std::task::Poll;
        let wake = &self.wake;
        let notified = self
            .notified
            .get_or_insert_with(|| Box::pin(wake.clone().notified_owned()));
        let mut woken = notified.as_mut().poll(cx).is_ready();
        if woken {
            // Registers this task's waker for the next notification.
            let mut next = Box::pin(wake.clone().notified_owned());
            let _ = next.as_mut().poll(cx);
            self.notified = Some(next);
        }
        woken |= self.drain_inserts(cx);
        let interval = self.interval;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
        let ticked = sleep.as_mut().poll(cx).is_ready();
        if woken || ticked {
            let next = if woken { self.recheck } else { self.interval };
            sleep.as_mut().reset(tokio::time::Instant::now() + next);
            // Registers this task's waker with the next tick (it cannot be ready yet).
            let _ = sleep.as_mut().poll(cx);
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

async fn maintenance(_tick: Tick, state: Data<AppState>) -> Result<(), BoxDynError> {
    let pruned = throttle::prune(state.store().db()).await?;
    if pruned > 0 {
        tracing::debug!(pruned, "pruned expired login throttle rows");
    }
    let pruned = prune_finished(state.store().db()).await?;
    if pruned > 0 {
        tracing::debug!(pruned, "deleted finished jobs");
    }
    let ended = crate::engine::session::close_expired(state.store().db()).await?;
    if ended > 0 {
        tracing::debug!(ended, "ended expired sessions");
    }
    let woken = crate::engine::sweep(&state)
        .await
        .map_err(|e| format!("{e:?}"))?;
    if woken > 0 {
        tracing::info!(
            woken,
            "woke contacts whose messages were waiting without a worker"
        );
    }
    Ok(())
}

/// Runs the engine for one stored inbound message. Database trouble is retried by apalis
/// (up to [`MAX_ATTEMPTS`]); everything else the engine records and finishes itself.
async fn inbound(job: InboundJob, state: Data<AppState>) -> Result<(), BoxDynError> {
    crate::engine::handle(&state, &job)
        .await
        .map_err(|e| -> BoxDynError { format!("{e:?}").into() })
}

/// Runs every worker until `shutdown` is cancelled, then drains them within the shutdown bound.
pub async fn run(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let schedule = cron::Schedule::from_str(MAINTENANCE_SCHEDULE)?;
    let timeout = state.settings().shutdown_timeout;
    let maintenance_state = state.clone();
    let concurrency = state.settings().worker_concurrency;
    let monitor = Monitor::new().register(move |_| {
        WorkerBuilder::new("maintenance")
            .backend(CronScheduler::new(schedule.clone()))
            .data(maintenance_state.clone())
            .build(maintenance)
    });
    let engine_state = state.clone();
    // Worker names are registered in the queue's database and must be unique per process:
    // replicas, and a process restarted before its old registration expired, would otherwise
    // be refused (WORKER_ALREADY_EXISTS) and never take a job.
    let worker_name = format!("inbound-{}", state.worker_id());
    let wake = state.inbound_wake().clone();
    // One fetch can fill every free slot: fewer queue round trips under load. The fetch
    // already marks its jobs taken by this worker (`Queued`, `lock_by`), and a dead worker's
    // taken jobs are re-queued by the heartbeat either way; apalis' separate lock write per
    // batch (to `Running`) adds a write transaction outside our write gate for nothing the
    // engine needs: its lanes keep two workers off one contact.
    let fetch_batch = concurrency.max(1);
    let monitor = match state.store().pool().clone() {
        crate::store::Pool::Sqlite(pool) => monitor.register(move |_| {
            let config = apalis_sqlite::Config::default()
                .queue(INBOUND_QUEUE)
                .batch_size(fetch_batch)
                .lock_tasks(false);
            let storage = sqlite_queue::GatedSqliteStorage::<InboundJob>::new(&pool, config)
                .poll_with_strategy(WakeOrEvery::new(
                    POLL_INTERVAL,
                    POLL_INTERVAL,
                    wake.clone(),
                    None,
                ));
            WorkerBuilder::new(worker_name.clone())
                .backend(storage)
                .concurrency(concurrency)
                .data(engine_state.clone())
                .build(inbound)
        }),
        crate::store::Pool::Postgres(pool) => monitor.register(move |_| {
            // PostgreSQL: apalis' insert trigger sends a NOTIFY that our own inserts fire too;
            // workers LISTEN for it instead of polling often.
            let inserts = futures_util::StreamExt::map(
                apalis_postgres::Pubsub::new(pool.clone(), INBOUND_QUEUE.to_owned()),
                |_| (),
            );
            let storage = apalis_postgres::PostgresStorage::<InboundJob>::new(&pool)
                .with_config(
                    apalis_postgres::Config::default()
                        .queue(INBOUND_QUEUE)
                        .batch_size(fetch_batch)
                        .lock_tasks(false),
                )
                .poll_with_strategy(WakeOrEvery::new(
                    POSTGRES_POLL_INTERVAL,
                    POLL_INTERVAL,
                    wake.clone(),
                    Some(Box::pin(inserts)),
                ));
            WorkerBuilder::new(worker_name.clone())
                .backend(storage)
                .concurrency(concurrency)
                .data(engine_state.clone())
                .build(inbound)
        }),
    };
    monitor
        .shutdown_timeout(timeout)
        .run_with_signal(async move {
            shutdown.cancelled().await;
            Ok(())
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake, Waker};
    use std::time::Duration;

    use super::*;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// apalis' `StreamStrategy` fails this: it takes one of the queued announcements, and the
    /// insert after them wakes no one.
    #[tokio::test]
    async fn an_insert_after_several_queued_announcements_still_wakes_the_worker() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let inserts = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let hour = Duration::from_secs(3600);
        let mut strategy = WakeOrEvery::new(
            hour,
            hour,
            Arc::new(tokio::sync::Notify::new()),
            Some(Box::pin(inserts)),
        );
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let snapshot = PollSnapshot::default();

        for _ in 0..3 {
            tx.send(()).unwrap();
        }
        assert!(strategy.poll_drive(&mut cx, &snapshot).is_ready());
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);

        tx.send(()).unwrap();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "the insert woke no one"
        );
        assert!(strategy.poll_drive(&mut cx, &snapshot).is_ready());
        // All four were taken: nothing is left to report.
        assert!(strategy.poll_drive(&mut cx, &snapshot).is_pending());
    }

    #[tokio::test]
    async fn a_wake_is_followed_by_one_more_look_after_the_recheck_delay() {
        let wake = Arc::new(tokio::sync::Notify::new());
        let mut strategy = WakeOrEvery::new(
            Duration::from_secs(3600),
            Duration::from_millis(50),
            wake.clone(),
            None,
        );
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let snapshot = PollSnapshot::default();
        assert!(strategy.poll_drive(&mut cx, &snapshot).is_pending());

        wake.notify_one();
        assert!(strategy.poll_drive(&mut cx, &snapshot).is_ready());
        assert!(strategy.poll_drive(&mut cx, &snapshot).is_pending());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(strategy.poll_drive(&mut cx, &snapshot).is_ready());
        // Then only the interval, an hour away.
        assert!(strategy.poll_drive(&mut cx, &snapshot).is_pending());
    }
}
