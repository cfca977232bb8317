//! apalis' SQLite queue, with its writes taken through our write gate.
//!
//! apalis-sqlite fetches, acknowledges and heartbeats in write transactions of its own, on
//! the pool it is given. Beside the engine's writer those met SQLite's lock held and waited in
//! its busy handler, which sleeps 1, 2, 5, 10… up to 100 ms between attempts whether or not the
//! lock came free meanwhile: under load most of the tail latency of a turn was a fetch or an
//! ack asleep there. This backend runs the same queries (apalis-sqlite's own, so the queue's
//! rows keep its shape) with [`store::write_gate`] held, so they queue in order behind our
//! commits instead.

use std::marker::PhantomData;
use std::task::{Context, Poll};

use apalis_core::backend::finalize::Durable;
use apalis_core::backend::persistence::{Persisted, Persistence, TaskEvent, TaskPersistLayer};
use apalis_core::backend::{Backend, BackendConfig, WireFormatBackend, WorkerFilter};
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use apalis_sqlite::queries;
use apalis_sqlite::{Config, Error, JsonCodec};
use serde_json::Value;
use sqlx::SqlitePool;
use ulid::Ulid;

use crate::store;

/// A queue of `Args` jobs in apalis-sqlite's `Jobs` table.
pub struct GatedSqliteStorage<Args> {
    persistence: Persisted<Gated>,
    codec: JsonCodec<Vec<u8>>,
    args: PhantomData<Args>,
}

impl<Args> Clone for GatedSqliteStorage<Args> {
    fn clone(&self) -> Self {
        Self {
            persistence: self.persistence.clone(),
            codec: self.codec.clone(),
            args: PhantomData,
        }
    }
}

impl<Args> GatedSqliteStorage<Args> {
    pub fn new(pool: &SqlitePool, config: Config) -> Self {
        Self {
            persistence: Persisted::new(Gated {
                pool: pool.clone(),
                config,
            }),
            codec: JsonCodec::default(),
            args: PhantomData,
        }
    }
}

#[derive(Clone, Debug)]
struct Gated {
    pool: SqlitePool,
    config: Config,
}

impl Gated {
    /// A write transaction holding the gate; the guard must outlive the commit.
    async fn begin(
        &self,
    ) -> Result<
        (
            Option<tokio::sync::OwnedMutexGuard<()>>,
            sqlx::Transaction<'static, sqlx::Sqlite>,
        ),
        Error,
    > {
        let gate = store::write_gate(sea_orm::DatabaseBackend::Sqlite).await;
        let tx = self.pool.begin().await?;
        Ok((gate, tx))
    }
}

impl Persistence for Gated {
    type Compact = Vec<u8>;
    type Response = Value;
    type Error = Error;

    async fn register(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let (_gate, mut tx) = self.begin().await?;
        let dead_for = self.config.heartbeat_interval.as_secs() as i64;
        let only = WorkerFilter::Only(worker.name().to_owned());
        queries::reenqueue_orphaned(&mut *tx, dead_for, self.config.queue.as_ref(), &only).await?;
        queries::register_worker(&mut *tx, &self.config, worker, "SqliteStorage").await?;
        tx.commit().await?;
        Ok(())
    }

    async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let (_gate, mut tx) = self.begin().await?;
        queries::keep_alive(&mut *tx, &self.config, worker).await?;
        let dead_for = self.config.orphaned_duration().as_secs() as i64;
        let others = WorkerFilter::AllExcept(worker.name().to_owned());
        queries::reenqueue_orphaned(&mut *tx, dead_for, self.config.queue.as_ref(), &others)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn fetch_next(&mut self, worker: &WorkerContext) -> Result<Vec<Task<Vec<u8>>>, Error> {
        let (_gate, mut tx) = self.begin().await?;
        let tasks = queries::fetch_next(&mut *tx, &self.config, worker).await?;
        tx.commit().await?;
        Ok(tasks)
    }

    async fn handle_events(
        &mut self,
        events: Vec<TaskEvent<Value>>,
        worker: &WorkerContext,
    ) -> Result<(), Error> {
        let mut locks = Vec::new();
        let mut acks = Vec::new();
        for event in &events {
            match event {
                TaskEvent::Lock { task_id, .. } => locks.push(task_id.to_string()),
                TaskEvent::Complete(payload) => acks.push(payload),
                _ => {}
            }
        }
        if locks.is_empty() && acks.is_empty() {
            return Ok(());
        }
        let (_gate, mut tx) = self.begin().await?;
        if !locks.is_empty() {
            queries::lock_tasks(&mut *tx, &locks, worker.name()).await?;
        }
        if !acks.is_empty() {
            queries::ack_tasks(&mut *tx, &acks, worker.name()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn reenqueue_abandoned(
        &mut self,
        tasks: Vec<Task<Vec<u8>>>,
        worker: &WorkerContext,
    ) -> Result<u64, Error> {
        let ids = tasks
            .iter()
            .filter_map(|t| t.task_id().map(|id| id.to_string()))
            .collect();
        let (_gate, mut tx) = self.begin().await?;
        let queue = self.config.queue.as_ref();
        let count = queries::reenqueue_abandoned(&mut *tx, queue, worker.name(), &ids).await?;
        tx.commit().await?;
        Ok(count)
    }

    async fn push_tasks(&mut self, tasks: Vec<Task<Vec<u8>>>) -> Result<(), Error> {
        let (_gate, mut tx) = self.begin().await?;
        queries::push_tasks(&mut *tx, self.config.queue.as_ref(), &tasks).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl<Args> Backend for GatedSqliteStorage<Args> {
    type Task = Task<Vec<u8>>;
    type Error = Error;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Error>> {
        let heartbeat = self.persistence.config.heartbeat_interval;
        self.persistence.poll_ready(cx, worker, heartbeat)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Task<Vec<u8>>, Error>>> {
        self.persistence.poll_next(cx, worker)
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Error>> {
        self.persistence.poll_close(cx, worker)
    }
}

impl<Args> BackendConfig for GatedSqliteStorage<Args> {
    type Args = Args;
    type Id = Ulid;
    type Kind = Durable;
    type Config = Config;
    type Layer = TaskPersistLayer<JsonCodec<Value>, Value>;

    fn config(&self) -> &Config {
        &self.persistence.config
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        let config = self.persistence.config.clone();
        self.persistence
            .layer(JsonCodec::default(), config.batch_size)
            .persist_results(config.persist_results)
            .lock_tasks(config.lock_tasks)
    }
}

impl<Args> WireFormatBackend for GatedSqliteStorage<Args> {
    type Codec = JsonCodec<Vec<u8>>;
    type Compact = Vec<u8>;

    fn codec(&self) -> &Self::Codec {
        &self.codec
    }
}
