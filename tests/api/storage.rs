//! The storage layer itself, on whichever backend the suite runs on.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use sea_orm_migration::MigratorTrait;

use crate::helpers::{TestDb, spawn_app, test_settings};

async fn table_names(db: &sea_orm::DatabaseConnection) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DatabaseBackend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        }
        _ => {
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
        }
    };
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "name").unwrap())
        .collect()
}

#[tokio::test]
async fn migrations_apply_revert_and_reapply_cleanly() {
    let db = TestDb::new().await;
    let store = parley::store::Store::connect(&test_settings(&db))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let before = table_names(store.db()).await;
    for t in ["tenant", "user", "api_token", "login_throttle"] {
        assert!(
            before.contains(&t.to_owned()),
            "{t} missing from {before:?}"
        );
    }
    store.ready().await.unwrap();

    parley::migrations::Migrator::down(store.db(), None)
        .await
        .unwrap();
    let down = table_names(store.db()).await;
    for t in ["tenant", "user", "api_token", "login_throttle"] {
        assert!(!down.contains(&t.to_owned()), "{t} still there after down");
    }
    assert!(
        store.ready().await.is_err(),
        "readiness reports pending migrations"
    );

    store.migrate().await.unwrap();
    assert_eq!(table_names(store.db()).await, before);
    // Applying again is a no-op.
    store.migrate().await.unwrap();
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_foreign_keys() {
    let db = TestDb::new().await;
    let settings = test_settings(&db);
    if !matches!(settings.database, parley::config::DatabaseUrl::Sqlite(_)) {
        return;
    }
    let store = parley::store::Store::connect(&settings).await.unwrap();
    let conn = store.db();
    let one = |sql: &str| Statement::from_string(DatabaseBackend::Sqlite, sql.to_owned());
    let row = conn
        .query_one_raw(one("PRAGMA journal_mode"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "wal");
    let row = conn
        .query_one_raw(one("PRAGMA foreign_keys"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i32>(0).unwrap(), 1);
    let row = conn
        .query_one_raw(one("PRAGMA synchronous"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i32>(0).unwrap(), 1, "NORMAL");
}

#[tokio::test]
async fn concurrent_writers_do_not_fail_with_lock_errors() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = app.client.clone();
        let url = app.url("/api/v1/token/create");
        let token = ana.token.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"name": format!("t{i}")}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let list: serde_json::Value = app
        .get("/api/v1/token/list?take=100", &ana.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 40);
}

#[tokio::test]
async fn the_job_queue_tables_live_in_the_same_database() {
    let db = TestDb::new().await;
    let store = parley::store::Store::connect(&test_settings(&db))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let sql = match store.db().get_database_backend() {
        DatabaseBackend::Sqlite => "SELECT COUNT(*) AS n FROM Jobs",
        _ => "SELECT COUNT(*) AS n FROM apalis.jobs",
    };
    let row = store
        .db()
        .query_one_raw(Statement::from_string(
            store.db().get_database_backend(),
            sql,
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0);
}

/// Jobs are written into apalis' tables by our own SQL (so they share the storing
/// transaction); this proves apalis workers read them back, on either backend.
#[tokio::test]
async fn jobs_enqueued_in_a_transaction_reach_an_apalis_worker() {
    use apalis::prelude::*;
    use parley::jobs::{InboundJob, enqueue_in};
    use parley::store::Pool;
    use sea_orm::TransactionTrait;

    async fn handle(
        job: InboundJob,
        tx: Data<tokio::sync::mpsc::UnboundedSender<InboundJob>>,
    ) -> Result<(), BoxDynError> {
        tx.send(job)?;
        Ok(())
    }

    let db = TestDb::new().await;
    let store = parley::store::Store::connect(&test_settings(&db))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let job = InboundJob {
        tenant_id: "ten_1".into(),
        integration_id: "wai_1".into(),
        inbound_id: "inb_1".into(),
        wa_id: Some("447700900123".into()),
    };
    let txn = store.db().begin().await.unwrap();
    enqueue_in(&txn, "probe", &job, "inb_1").await.unwrap();
    enqueue_in(&txn, "probe", &job, "inb_1").await.unwrap();
    txn.commit().await.unwrap();
    // A rolled-back transaction leaves no job behind.
    let txn = store.db().begin().await.unwrap();
    enqueue_in(
        &txn,
        "probe",
        &InboundJob {
            inbound_id: "inb_2".into(),
            ..job.clone()
        },
        "inb_2",
    )
    .await
    .unwrap();
    txn.rollback().await.unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = match store.pool().clone() {
        Pool::Sqlite(pool) => {
            let storage = apalis_sqlite::SqliteStorage::<InboundJob>::new(&pool)
                .with_config(apalis_sqlite::Config::default().queue("probe"));
            tokio::spawn(
                WorkerBuilder::new("probe")
                    .backend(storage)
                    .data(tx)
                    .build(handle)
                    .run(),
            )
        }
        Pool::Postgres(pool) => {
            let storage = apalis_postgres::PostgresStorage::<InboundJob>::new(&pool)
                .with_config(apalis_postgres::Config::default().queue("probe"));
            tokio::spawn(
                WorkerBuilder::new("probe")
                    .backend(storage)
                    .data(tx)
                    .build(handle)
                    .run(),
            )
        }
    };
    let got = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
        .await
        .expect("the worker got the job");
    assert_eq!(got, Some(job));
    let again = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv()).await;
    assert!(again.is_err(), "exactly one job: {again:?}");
    worker.abort();
}

#[tokio::test]
async fn sqlite_queue_acks_look_jobs_up_by_key_not_by_worker() {
    let db = TestDb::new().await;
    let Some(store) = migrated_store(&db, DatabaseBackend::Sqlite).await else {
        return;
    };
    // Twice: the adjustment runs at every start and must leave the index as it is.
    store.migrate().await.unwrap();
    // The shape of apalis-sqlite's ack: acknowledged ids from JSON, joined on the worker.
    let plan = explain(
        store.db(),
        "WITH j AS (SELECT value ->> 'task_id' AS task_id FROM \
         json_each('[{\"task_id\":\"x\"}]')) UPDATE Jobs SET status = 'Done' FROM j \
         WHERE Jobs.id = j.task_id AND Jobs.lock_by = 'worker'",
        [],
    )
    .await;
    assert!(!plan.contains("LIdx"), "{plan}");
    assert!(plan.contains("(id=?)"), "{plan}");
}

#[tokio::test]
async fn finished_jobs_are_pruned_after_an_hour_and_others_kept() {
    use parley::jobs::{InboundJob, enqueue_in, prune_finished};
    let db = TestDb::new().await;
    let store = parley::store::Store::connect(&test_settings(&db))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let conn = store.db();
    for key in ["old-done", "new-done", "old-failed", "pending"] {
        let job = InboundJob {
            tenant_id: "ten_1".into(),
            integration_id: "wai_1".into(),
            inbound_id: key.into(),
            wa_id: None,
        };
        enqueue_in(conn, "probe", &job, key).await.unwrap();
    }
    let backend = conn.get_database_backend();
    let (table, two_hours_ago, now) = match backend {
        DatabaseBackend::Postgres => ("apalis.jobs", "now() - interval '2 hours'", "now()"),
        _ => (
            "Jobs",
            "strftime('%s', 'now') - 7200",
            "strftime('%s', 'now')",
        ),
    };
    for (key, status, at) in [
        ("old-done", "Done", two_hours_ago),
        ("new-done", "Done", now),
        ("old-failed", "Failed", two_hours_ago),
    ] {
        conn.execute_unprepared(&format!(
            "UPDATE {table} SET status = '{status}', done_at = {at} WHERE idempotency_key = '{key}'"
        ))
        .await
        .unwrap();
    }

    assert_eq!(prune_finished(conn).await.unwrap(), 1);

    let left: Vec<String> = conn
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT idempotency_key FROM {table} WHERE job_type = 'probe' ORDER BY idempotency_key"),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "idempotency_key").unwrap())
        .collect();
    assert_eq!(left, ["new-done", "old-failed", "pending"]);
}

#[tokio::test]
async fn the_engines_hot_lookups_use_their_indexes_on_sqlite() {
    let db = TestDb::new().await;
    let Some(store) = migrated_store(&db, DatabaseBackend::Sqlite).await else {
        return;
    };
    // SQLite plans without statistics, so an index that only half fits can lose to walking a
    // tenant's whole table in id order: each of these runs for every turn. The engine's own
    // statements are planned with their placeholders unbound, as SQLite prepares them.
    for (query, index) in [
        (
            parley::engine::session::open_sql(DatabaseBackend::Sqlite),
            "conversation_integration_id_wa_id_id_idx",
        ),
        (
            parley::ingest::stored_statuses_sql(DatabaseBackend::Sqlite),
            "message_status_integration_id_wamid_status_key",
        ),
        (
            parley::engine::HISTORY_SQL.to_owned(),
            "message_conversation_id_idx",
        ),
        (
            parley::engine::lane::waiting_sql(DatabaseBackend::Sqlite),
            "inbound_message_waiting_idx",
        ),
        (
            parley::engine::lane::release_sql(DatabaseBackend::Sqlite),
            "inbound_message_waiting_idx",
        ),
        (
            parley::engine::claim_sql(DatabaseBackend::Sqlite),
            "sqlite_autoindex_inbound_message_1 (id=?)",
        ),
    ] {
        let plan = explain(store.db(), &query, []).await;
        assert!(plan.contains(index), "{query}\n{plan}");
    }
}

#[tokio::test]
async fn list_parameters_are_looked_up_by_index_on_postgres() {
    let db = TestDb::new().await;
    let Some(store) = migrated_store(&db, DatabaseBackend::Postgres).await else {
        return;
    };
    let conn = store.db();
    conn.execute_unprepared(
        "INSERT INTO contact_lane (id, tenant_id, integration_id, wa_id, locked_by, locked_until) \
         SELECT 'wai_1:' || n, 'ten_1', 'wai_1', n::text, 'w' || n, 0 \
         FROM generate_series(1, 20000) AS n; ANALYZE contact_lane",
    )
    .await
    .unwrap();
    let ids: Vec<String> = (1..=20).map(|n| format!("wai_1:{n}")).collect();
    let holders: Vec<String> = (1..=20).map(|n| format!("w{n}")).collect();
    let backend = DatabaseBackend::Postgres;
    // PostgreSQL guesses a JSON list at a hundred rows; written the obvious way, that made it
    // hash the whole table rather than look twenty rows up.
    for (query, values) in [
        (
            parley::engine::lane::release_sql(backend),
            vec![
                parley::store::json_param(&ids),
                parley::store::json_param(&holders),
            ],
        ),
        (
            format!(
                "SELECT l.id FROM {} JOIN contact_lane l ON l.id = j.value ->> 0",
                parley::store::json_rows(backend)
            ),
            vec![parley::store::json_param(&ids)],
        ),
    ] {
        let plan = explain(conn, &query, values).await;
        assert!(
            plan.contains("contact_lane_pkey") && !plan.contains("Seq Scan on contact_lane"),
            "{query}\n{plan}"
        );
    }
}

/// The test database's store, migrated, if the suite runs on `backend`; tests of one backend's
/// behaviour return early on the other.
async fn migrated_store(db: &TestDb, backend: DatabaseBackend) -> Option<parley::store::Store> {
    let settings = test_settings(db);
    let ours = match settings.database {
        parley::config::DatabaseUrl::Sqlite(_) => DatabaseBackend::Sqlite,
        parley::config::DatabaseUrl::Postgres(_) => DatabaseBackend::Postgres,
    };
    if ours != backend {
        return None;
    }
    let store = parley::store::Store::connect(&settings).await.unwrap();
    store.migrate().await.unwrap();
    Some(store)
}

/// The database's plan for `query` (`?` placeholders, bound to `values` on PostgreSQL, left
/// unbound on SQLite as it prepares them), one step per line.
async fn explain(
    conn: &sea_orm::DatabaseConnection,
    query: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> String {
    let (prefix, column) = match conn.get_database_backend() {
        DatabaseBackend::Postgres => ("EXPLAIN", "QUERY PLAN"),
        _ => ("EXPLAIN QUERY PLAN", "detail"),
    };
    let text = format!("{prefix} {query}");
    let rows = match conn.get_database_backend() {
        DatabaseBackend::Postgres => parley::store::query(conn, &text, values).await,
        backend => {
            conn.query_all_raw(Statement::from_string(backend, text))
                .await
        }
    };
    rows.unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", column).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}
