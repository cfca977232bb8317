//! The database: SQLite (embedded default) or PostgreSQL, through one sea-orm connection.
//!
//! The same code and the same migrations serve both. The apalis job queue lives in the same
//! database, on the same pool, so the default setup needs no other server.
//!
//! Tenant data is only ever read, changed or deleted through [`TenantScope`], which adds the
//! tenant filter in one place.

pub mod entities;
mod scope;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, ExecResult, QueryResult,
    RuntimeErr, Statement,
};
use sea_orm_migration::MigratorTrait;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use scope::{Order, Page, TenantOwned, TenantScope};

use crate::config::{DatabaseUrl, Settings};
use crate::migrations::Migrator;

/// The raw pool under sea-orm; the job queue needs it.
#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The connection to the database, shared by the API, the webhooks and the workers.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    pool: Pool,
}

impl Store {
    /// Opens the pool. For SQLite this creates the folder and the file when missing.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let max = settings.database_max_connections;
        match &settings.database {
            DatabaseUrl::Sqlite(path) => {
                let memory = path.as_os_str() == ":memory:";
                let options = if memory {
                    SqliteConnectOptions::from_str("sqlite::memory:")?
                } else {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).with_context(|| {
                            format!("cannot create the database folder {}", dir.display())
                        })?;
                    }
                    SqliteConnectOptions::new()
                        .filename(path)
                        .create_if_missing(true)
                };
                // WAL lets readers run beside the one writer; NORMAL sync is durable across
                // process crashes (the WAL is fsynced at checkpoints); busy_timeout makes writers
                // queue for the lock instead of failing with SQLITE_BUSY.
                let options = options
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .pragma("temp_store", "memory")
                    .pragma("cache_size", "-16000");
                // Checkpoints run from a task of their own (see `checkpoint_in_background`).
                let options = if memory {
                    options
                } else {
                    options.pragma("wal_autocheckpoint", "0")
                };
                let pool = SqlitePoolOptions::new()
                    // An in-memory database exists once per connection: keep exactly one.
                    .max_connections(if memory { 1 } else { max })
                    .min_connections(if memory { 1 } else { 0 })
                    .idle_timeout(if memory {
                        None
                    } else {
                        Some(Duration::from_secs(600))
                    })
                    .max_lifetime(if memory {
                        None
                    } else {
                        Some(Duration::from_secs(1800))
                    })
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
                if !memory {
                    tokio::spawn(checkpoint_in_background(pool.clone()));
                }
                Ok(Self {
                    db: sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone()),
                    pool: Pool::Sqlite(pool),
                })
            }
            DatabaseUrl::Postgres(url) => {
                let options = PgConnectOptions::from_str(url.expose_secret())
                    .context("PARLEY_DATABASE_URL is not a valid PostgreSQL URL")?;
                let pool = PgPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .with_context(|| {
                        format!("cannot connect to PostgreSQL at {:?}", settings.database)
                    })?;
                Ok(Self {
                    db: sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone()),
                    pool: Pool::Postgres(pool),
                })
            }
        }
    }

    /// Applies pending migrations: ours, then the job queue's own.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        Migrator::up(&self.db, None)
            .await
            .context("applying Parley's migrations")?;
        match &self.pool {
            Pool::Sqlite(pool) => {
                apalis_sqlite::SqliteStorage::migrations()
                    .run(pool)
                    .await
                    .context("applying the job queue's SQLite migrations")?;
                narrow_sqlite_lock_index(pool)
                    .await
                    .context("adjusting the job queue's SQLite index")?;
            }
            Pool::Postgres(pool) => {
                apalis_postgres::PostgresStorage::migrations()
                    .run(pool)
                    .await
                    .context("applying the job queue's PostgreSQL migrations")?;
                drop_duplicate_postgres_queue_indexes(pool)
                    .await
                    .context("adjusting the job queue's PostgreSQL indexes")?;
            }
        }
        Ok(())
    }

    /// True when the database answers and no migration is pending.
    pub async fn ready(&self) -> Result<(), String> {
        self.db
            .execute_unprepared("SELECT 1")
            .await
            .map_err(|_| "database unreachable".to_owned())?;
        let pending = Migrator::get_pending_migrations(&self.db)
            .await
            .map_err(|_| "cannot read migration state".to_owned())?;
        if pending.is_empty() {
            Ok(())
        } else {
            Err(format!("{} migrations pending", pending.len()))
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A view of the database limited to one tenant's rows. Only code that has established who
    /// the caller is (the auth extractor, the CLI, webhook routing) should call this.
    pub fn scope(&self, tenant_id: &str) -> TenantScope {
        TenantScope::new(self.db.clone(), tenant_id.to_owned())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Copies SQLite's write-ahead log back into the database file, off the writers' path.
///
/// By default SQLite checkpoints inside whichever commit takes the log past 1,000 pages: that
/// writer then copies the pages and waits for an fsync while holding the write lock, and every
/// writer queued behind it waits too, which made the engine's slowest replies (p99) several
/// times its median. Parley turns automatic checkpoints off and runs them here in PASSIVE mode,
/// which copies what it can without blocking writers or readers. Runs until the pool closes.
async fn checkpoint_in_background(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "WAL checkpoint failed; the next one retries");
        }
    }
}

/// apalis-sqlite indexes `Jobs(lock_by)` in full and acks a job with `WHERE lock_by = ?`
/// joined to the acknowledged ids. SQLite then walks every job the worker ever ran, parsing
/// JSON for each, on every ack: 13 ms per ack after 6,000 jobs and growing with each, which
/// capped the engine near 150 turns/s. Limited to jobs still in hand, the index no longer
/// serves that query, and SQLite finds the acknowledged ids by key instead (0.2 ms). The name
/// stays, so apalis' own later migrations still find it. Idempotent; runs at every migrate.
async fn narrow_sqlite_lock_index(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let current: Option<String> =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'LIdx'")
            .fetch_optional(pool)
            .await?;
    if current.is_some_and(|sql| sql.contains("WHERE")) {
        return Ok(());
    }
    let mut txn = pool.begin().await?;
    sqlx::query("DROP INDEX IF EXISTS LIdx")
        .execute(&mut *txn)
        .await?;
    sqlx::query("CREATE INDEX LIdx ON Jobs(lock_by) WHERE status IN ('Queued', 'Running')")
        .execute(&mut *txn)
        .await?;
    txn.commit().await
}

/// apalis-postgres' first migration indexes `jobs(id)` and `jobs(lock_by)`; later ones add a
/// primary key on `id` and a second index on `lock_by`, and keep the first two. Every job is
/// inserted and updated twice, and none of those updates can stay on its page (they change
/// `status` and `lock_by`), so each writes an entry into every index: the two copies added a
/// third to the queue's index writes for nothing. Idempotent; runs at every migrate.
async fn drop_duplicate_postgres_queue_indexes(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("DROP INDEX IF EXISTS apalis.unique_job_id; DROP INDEX IF EXISTS apalis.lidx")
        .execute(pool)
        .await
        .map(|_| ())
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a transaction that reads first and writes later would otherwise fail
/// with SQLITE_BUSY, without waiting, whenever another writer committed in between. Every
/// transaction that writes must start here, and must not start another before it ends.
///
/// On SQLite the transaction also holds this process's write gate, so our writers queue for
/// the lock in order instead of in SQLite's busy handler, which sleeps 1, 2, 5, 10… ms between
/// attempts and leaves the lock idle meanwhile: under load that, not the work, was the limit.
/// The gate is one per process, shared by every SQLite file it opens (only tests open more
/// than one); other processes on the same file still meet the busy handler.
pub async fn begin_write<C>(db: &C) -> Result<WriteTxn, DbErr>
where
    C: sea_orm::TransactionTrait<Transaction = DatabaseTransaction> + ConnectionTrait,
{
    let gate = write_gate(db.get_database_backend()).await;
    let txn = db
        .begin_with_options(sea_orm::TransactionOptions {
            isolation_level: None,
            access_mode: None,
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        })
        .await?;
    Ok(WriteTxn { txn, _gate: gate })
}

/// Writes one statement outside any transaction, through the write gate on SQLite (see
/// [`begin_write`]).
pub async fn write_one(db: &DatabaseConnection, stmt: Statement) -> Result<ExecResult, DbErr> {
    let _gate = write_gate(db.get_database_backend()).await;
    db.execute_raw(stmt).await
}

static SQLITE_WRITE_GATE: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

/// The write gate's guard on SQLite; PostgreSQL needs none.
pub async fn write_gate(
    backend: sea_orm::DatabaseBackend,
) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    match backend {
        sea_orm::DatabaseBackend::Sqlite => Some(SQLITE_WRITE_GATE.clone().lock_owned().await),
        _ => None,
    }
}

/// A write transaction from [`begin_write`]; use it as a connection, then commit it. Dropping
/// it without committing rolls it back.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> sea_orm::DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}

/// `?` placeholders as the backend wants them: PostgreSQL numbers them.
pub fn sql(backend: sea_orm::DatabaseBackend, sql: &str) -> String {
    if backend != sea_orm::DatabaseBackend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// `head` + `n` copies of `row` + `tail`, with placeholders numbered for the backend.
pub fn multi_row(
    backend: sea_orm::DatabaseBackend,
    head: &str,
    row: &str,
    n: usize,
    tail: &str,
    values: Vec<sea_orm::Value>,
) -> sea_orm::Statement {
    let mut text = String::with_capacity(head.len() + n * (row.len() + 2) + tail.len());
    text.push_str(head);
    for i in 0..n {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(row);
    }
    text.push_str(tail);
    statement(backend, &text, values)
}

/// Rows per multi-row statement come from this short list, largest first, so each table sees
/// at most four statement shapes: the databases' prepared-statement caches keep them, instead
/// of planning a new statement for every group size. 256 × 11 values stays far below SQLite's
/// 32,766 parameters.
pub const STATEMENT_ROWS: [usize; 4] = [256, 32, 4, 1];

/// Splits `items` into chunks of [`STATEMENT_ROWS`] sizes.
pub fn shaped_chunks<T>(items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let (head, tail) = rest.split_at(chunk_size(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// The largest of [`STATEMENT_ROWS`] that `left` items fill.
fn chunk_size(left: usize) -> usize {
    STATEMENT_ROWS
        .iter()
        .copied()
        .find(|s| *s <= left)
        .unwrap_or(1)
}

/// Inserts `rows` with multi-row statements of [`shaped_chunks`] sizes: `head`, then `row`
/// once per item with the values `values` gives it, then `tail` (a conflict clause,
/// `RETURNING`). Returns the rows the statements return.
pub async fn insert_rows<C, T, V>(
    conn: &C,
    [head, row, tail]: [&str; 3],
    rows: &[T],
    values: impl Fn(&T) -> V,
) -> Result<Vec<QueryResult>, DbErr>
where
    C: ConnectionTrait,
    V: IntoIterator<Item = sea_orm::Value>,
{
    let backend = conn.get_database_backend();
    let mut out = Vec::new();
    for chunk in shaped_chunks(rows) {
        let values = chunk.iter().flat_map(&values).collect();
        let stmt = multi_row(backend, head, row, chunk.len(), tail, values);
        out.extend(conn.query_all_raw(stmt).await?);
    }
    Ok(out)
}

/// Inserts `models` with as few statements as [`shaped_chunks`] allows.
pub async fn insert_all<A, C>(conn: &C, models: Vec<A>) -> Result<(), DbErr>
where
    A: sea_orm::ActiveModelTrait + Send,
    C: ConnectionTrait,
{
    let mut rest = models;
    while !rest.is_empty() {
        let tail = rest.split_off(chunk_size(rest.len()));
        <A::Entity as sea_orm::EntityTrait>::insert_many(rest)
            .exec_without_returning(conn)
            .await?;
        rest = tail;
    }
    Ok(())
}

/// Runs a statement written with `?` placeholders, on either database.
pub async fn execute<C: ConnectionTrait>(
    conn: &C,
    text: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Result<ExecResult, DbErr> {
    conn.execute_raw(statement(conn.get_database_backend(), text, values))
        .await
}

/// Runs a query written with `?` placeholders, on either database.
pub async fn query<C: ConnectionTrait>(
    conn: &C,
    text: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Result<Vec<QueryResult>, DbErr> {
    conn.query_all_raw(statement(conn.get_database_backend(), text, values))
        .await
}

/// A statement written with `?` placeholders, in `backend`'s dialect.
fn statement(
    backend: sea_orm::DatabaseBackend,
    text: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Statement {
    Statement::from_sql_and_values(backend, sql(backend, text), values)
}

/// A list passed to a statement as one JSON parameter, read back as the rows of `j` (each row's
/// `j.value` one item; `j.value ->> 'key'` one of its fields as text). The statement's text
/// then does not depend on the list's length, so one prepared statement serves every batch
/// size on both databases, where `IN (?, ?, …)` would be a new statement for each.
pub fn json_rows(backend: sea_orm::DatabaseBackend) -> &'static str {
    match backend {
        // Through an array: PostgreSQL guesses a list of ten rows from `unnest` where it
        // guesses a hundred from `jsonb_array_elements`, and a hundred made it join by hashing a
        // whole table instead of looking the rows up by index.
        sea_orm::DatabaseBackend::Postgres => {
            "unnest(ARRAY(SELECT jsonb_array_elements(CAST(? AS jsonb)))) AS j(value)"
        }
        _ => "json_each(?) AS j",
    }
}

/// `column IN (the items of a JSON list of strings)`; see [`json_rows`].
pub fn in_json(backend: sea_orm::DatabaseBackend, column: &str) -> String {
    match backend {
        sea_orm::DatabaseBackend::Postgres => {
            // `= ANY(array)` is looked up by index; `IN (SELECT …)` was joined by hashing the
            // whole table (PostgreSQL guesses the list at a hundred rows).
            format!("{column} = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(? AS jsonb))))")
        }
        _ => format!("{column} IN (SELECT value FROM json_each(?))"),
    }
}

/// The parameter for [`json_rows`] and [`in_json`].
pub fn json_param(items: &impl serde::Serialize) -> sea_orm::Value {
    // Serializing strings and plain structs cannot fail.
    serde_json::to_string(items)
        .unwrap_or_else(|_| "[]".to_owned())
        .into()
}

/// Whether a database error means "the database is not there right now" (answer 503 and let
/// the client retry) rather than a bug (answer 500).
pub fn is_unavailable(e: &DbErr) -> bool {
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(
                **e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ) || matches!(&**e, sqlx::Error::Database(d) if is_busy(d.code().as_deref()))
        }
        _ => false,
    }
}

fn is_busy(code: Option<&str>) -> bool {
    // SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED. PostgreSQL: 57P01 admin shutdown, 57P03 cannot
    // connect now, 53300 too many connections.
    matches!(code, Some("5" | "6" | "57P01" | "57P03" | "53300"))
}

/// Whether a database error is a unique-constraint violation.
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_use_few_shapes_and_keep_everything_in_order() {
        let items: Vec<usize> = (0..301).collect();
        let chunks = shaped_chunks(&items);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![256, 32, 4, 4, 4, 1]);
        let flat: Vec<usize> = chunks.concat();
        assert_eq!(flat, items);
        assert!(shaped_chunks::<u8>(&[]).is_empty());
    }
}
