//! The test harness: [`spawn_app`] starts Parley on port 0 with a database of its own.
//!
//! The backend comes from the environment, so `make test` runs this whole binary twice:
//! - default: a fresh SQLite file per test;
//! - `TEST_POSTGRES_URL=postgres://…/db`: a fresh PostgreSQL database per test, created from that
//!   server and dropped afterwards, so concurrent tests and runs never collide.
//!
//! `TEST_REDIS_URL` enables the tests that need Redis. `TEST_LOG=1` prints the app's logs.

use std::sync::{Arc, Once};

use base64::Engine;
use parley::config::{DatabaseUrl, LogFormat, Settings};
use parley::startup::Application;
use parley::state::AppState;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::Connection;

pub const PASSWORD: &str = "correct horse battery";

static TRACING: Once = Once::new();

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            parley::telemetry::init(LogFormat::Pretty, "info,parley=debug");
        }
    });
}

/// The PostgreSQL server to create per-test databases on, when the suite runs on PostgreSQL.
pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

pub fn redis_url() -> Option<String> {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A database that exists for one test.
pub struct TestDb {
    pub settings_url: DatabaseUrl,
    _dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match postgres_url() {
            None => Self {
                settings_url: DatabaseUrl::Sqlite(dir.path().join("parley.db")),
                _dir: dir,
                postgres: None,
            },
            Some(admin_url) => {
                let name = format!("parley_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("TEST_POSTGRES_URL must point at a reachable PostgreSQL server");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let mut url = url::Url::parse(&admin_url).expect("TEST_POSTGRES_URL is a URL");
                url.set_path(&name);
                Self {
                    settings_url: DatabaseUrl::Postgres(SecretString::from(url.to_string())),
                    _dir: dir,
                    postgres: Some((admin_url, name)),
                }
            }
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            // Drop is not async; do it on a thread of its own with its own runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

fn random_key() -> SecretString {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("randomness");
    SecretString::from(base64::engine::general_purpose::STANDARD.encode(key))
}

/// Settings for a test app: port 0, the test's own database and data folder, fixed keys.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut s = Settings::defaults().expect("default settings are valid");
    s.listen = "127.0.0.1:0".parse().expect("address");
    s.database = db.settings_url.clone();
    s.database_max_connections = 8;
    s.data_dir = db.dir().join("data");
    s.master_key = Some(random_key());
    s.jwt_secret = Some(random_key());
    s.http_workers = 1;
    s.shutdown_timeout = std::time::Duration::from_secs(5);
    s
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub settings: Settings,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Last, so the database outlives the server.
    _db: Arc<TestDb>,
}

/// A running app on the default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A running app on test settings changed by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let db = Arc::new(TestDb::new().await);
    let mut settings = test_settings(&db);
    configure(&mut settings);
    spawn_app_on(db, settings).await
}

/// A running app on a database that already exists, with the given settings.
pub async fn spawn_app_on(db: Arc<TestDb>, settings: Settings) -> TestApp {
    init_tracing();
    let app = Application::build(settings.clone())
        .await
        .expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        state,
        settings,
        shutdown: Some(tx),
        server: Some(server),
        _db: db,
    }
}

/// A signed-up user, with its session token.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub token: String,
    pub user_id: String,
    pub tenant_id: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_anon(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn signup(&self, name: &str) -> Account {
        let email = format!(
            "{}-{}@example.com",
            name.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let res = self
            .post_anon(
                "/api/v1/auth/signup",
                &json!({"email": email, "password": PASSWORD, "name": name}),
            )
            .await;
        assert_eq!(res.status(), 200, "signup failed");
        let body: Value = res.json().await.expect("json");
        Account {
            email,
            token: body["token"].as_str().expect("token").to_owned(),
            user_id: body["userId"].as_str().expect("userId").to_owned(),
            tenant_id: body["tenantId"].as_str().expect("tenantId").to_owned(),
        }
    }

    pub async fn create_token(
        &self,
        owner: &Account,
        name: &str,
        role: Option<&str>,
    ) -> (String, String) {
        let mut body = json!({"name": name});
        if let Some(r) = role {
            body["role"] = json!(r);
        }
        let res = self.post("/api/v1/token/create", &owner.token, &body).await;
        assert_eq!(res.status(), 200, "token create failed");
        let v: Value = res.json().await.expect("json");
        (
            v["id"].as_str().expect("id").to_owned(),
            v["token"].as_str().expect("token").to_owned(),
        )
    }

    /// Stops the app the way SIGTERM would, and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Asserts the ChatBotKit error shape and returns the body.
pub async fn assert_error(res: reqwest::Response, status: u16, code: &str) -> Value {
    let got = res.status().as_u16();
    let body: Value = res.json().await.expect("error bodies are JSON");
    assert_eq!(got, status, "unexpected status, body: {body}");
    assert_eq!(body["code"], code, "unexpected code, body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "only message and code: {body}"
    );
    body
}

/// The environment that makes a `parley` child process use `settings`' database, keys and
/// data folder, and log JSON.
pub fn settings_env(settings: &Settings) -> Vec<(String, String)> {
    use secrecy::ExposeSecret;
    let database = match &settings.database {
        DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        DatabaseUrl::Postgres(url) => url.expose_secret().to_owned(),
    };
    let mut env = vec![
        ("PARLEY_DATABASE_URL".to_owned(), database),
        (
            "PARLEY_DATA_DIR".to_owned(),
            settings.data_dir.display().to_string(),
        ),
        ("PARLEY_LOG_FORMAT".to_owned(), "json".to_owned()),
        ("PARLEY_HTTP_WORKERS".to_owned(), "1".to_owned()),
    ];
    if let Some(k) = &settings.master_key {
        env.push(("PARLEY_MASTER_KEY".to_owned(), k.expose_secret().to_owned()));
    }
    if let Some(k) = &settings.jwt_secret {
        env.push(("PARLEY_JWT_SECRET".to_owned(), k.expose_secret().to_owned()));
    }
    env
}

/// A `parley` command with a clean environment: only what the test sets.
pub fn parley_command(env: &[(String, String)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parley"));
    cmd.env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The shared fixtures (real Cloud API payloads, Graph bodies, LLM transcripts).
pub fn fixture(path: &str) -> String {
    let full = format!("{}/../shared/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("fixture {full}: {e}"))
}

/// Rows the conversation engine will write, seeded directly for read-model tests.
pub struct Seeded {
    pub contact_id: String,
    pub conversation_id: String,
    pub message_id: String,
}

impl TestApp {
    /// A contact, a conversation on `integration_id` with user `wa_id`, one user message
    /// `minutes_ago` old, and one event-log entry.
    pub async fn seed_conversation(
        &self,
        tenant_id: &str,
        integration_id: &str,
        wa_id: &str,
        minutes_ago: i64,
    ) -> Seeded {
        use parley::store::entities::{contact, conversation, message};
        use sea_orm::{ActiveModelTrait, ActiveValue::Set};
        let db = self.state.store().db();
        let at = parley::time::now_ms() - minutes_ago * 60_000;
        let c = contact::ActiveModel {
            id: Set(parley::ids::new_id("con")),
            tenant_id: Set(tenant_id.into()),
            fingerprint: Set(format!("wa:{wa_id}:{}", uuid::Uuid::new_v4().simple())),
            name: Set(Some("Zoë".into())),
            description: Set(None),
            email: Set(None),
            phone: Set(Some(format!("+{wa_id}"))),
            nick: Set(None),
            preferences: Set(None),
            verified_at: Set(None),
            meta: Set(json!({"source": "seed"})),
            created_at: Set(at),
            updated_at: Set(at),
        }
        .insert(db)
        .await
        .unwrap();
        let conv = conversation::ActiveModel {
            id: Set(parley::ids::new_id("cnv")),
            tenant_id: Set(tenant_id.into()),
            contact_id: Set(Some(c.id.clone())),
            bot_id: Set(None),
            integration_id: Set(Some(integration_id.into())),
            wa_id: Set(Some(wa_id.into())),
            name: Set(None),
            description: Set(None),
            meta: Set(json!({})),
            last_message_at: Set(Some(at)),
            ended_at: Set(None),
            expires_at: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
        }
        .insert(db)
        .await
        .unwrap();
        let m = message::ActiveModel {
            id: Set(parley::ids::new_id("msg")),
            tenant_id: Set(tenant_id.into()),
            conversation_id: Set(conv.id.clone()),
            kind: Set("user".into()),
            text: Set("hello from whatsapp".into()),
            meta: Set(json!({})),
            wamid: Set(Some(format!("wamid.{}", uuid::Uuid::new_v4().simple()))),
            delivery_status: Set(None),
            error_code: Set(None),
            error_title: Set(None),
            turn_id: Set(None),
            part: Set(None),
            inbound_id: Set(None),
            input_tokens: Set(None),
            output_tokens: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
        }
        .insert(db)
        .await
        .unwrap();
        parley::events::Event::new(
            "whatsapp.message.received",
            parley::events::Level::Info,
            "seeded",
        )
        .integration(integration_id)
        .conversation(&conv.id)
        .contact(Some(&c.id))
        .record(db, tenant_id)
        .await
        .unwrap();
        Seeded {
            contact_id: c.id,
            conversation_id: conv.id,
            message_id: m.id,
        }
    }

    /// Creates a WhatsApp integration and returns its id.
    pub async fn create_integration(&self, who: &Account, body: Value) -> String {
        let res = self
            .post("/api/v1/integration/whatsapp/create", &who.token, &body)
            .await;
        assert_eq!(res.status(), 200, "integration create failed");
        res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn fetch_json(&self, path: &str, token: &str) -> Value {
        let res = self.get(path, token).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }
}
