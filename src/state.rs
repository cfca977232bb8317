//! [`AppState`]: what handlers and workers share. Cheap to clone.

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::auth::jwt::JwtKeys;
use crate::channels::whatsapp::graph::GraphClient;
use crate::config::Settings;
use crate::crypto::Vault;
use crate::engine::session::Sessions;
use crate::engine::writer::Writer;
use crate::ingest::Ingestor;
use crate::ingest::cache::CallbackCache;
use crate::ingest::limiter::EventLimiter;
use crate::keys::Keys;
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    settings: Settings,
    store: Store,
    jwt: JwtKeys,
    vault: Vault,
    graph: GraphClient,
    redis: Option<deadpool_redis::Pool>,
    ingestor: Ingestor,
    /// Wakes this process's inbound workers when ingestion has queued jobs ([`crate::jobs`]).
    inbound_wake: Arc<tokio::sync::Notify>,
    callbacks: CallbackCache,
    /// Keeps floods of rejected webhooks out of the event log.
    webhook_events: EventLimiter,
    sessions: Sessions,
    /// Commits the writes of the engine's turns in flight together.
    engine_writer: Writer,
    bot_cache: crate::engine::bot_cache::BotCache,
    /// For model vendors: no total timeout here, each call sets its own.
    llm_http: reqwest::Client,
    /// Names this process in lane leases.
    worker_id: String,
    /// Where this process's own HTTP server answers, once it is bound (see [`AppState::self_url`]).
    self_url: std::sync::OnceLock<url::Url>,
}

impl AppState {
    pub fn new(settings: Settings, store: Store, keys: &Keys) -> anyhow::Result<Self> {
        let redis = match &settings.redis_url {
            None => None,
            Some(url) => {
                let mut config = deadpool_redis::Config::from_url(url.expose_secret());
                // Without timeouts a dead Redis would hang requests instead of failing them.
                let mut pool = deadpool_redis::PoolConfig::default();
                pool.timeouts.wait = Some(std::time::Duration::from_secs(2));
                pool.timeouts.create = Some(std::time::Duration::from_secs(2));
                pool.timeouts.recycle = Some(std::time::Duration::from_secs(2));
                config.pool = Some(pool);
                Some(
                    config
                        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                        .context("PARLEY_REDIS_URL: cannot create a Redis pool")?,
                )
            }
        };
        let graph = GraphClient::new(
            settings.whatsapp_graph_url.clone(),
            settings.whatsapp_graph_version.clone(),
            settings.whatsapp_graph_timeout,
        )?;
        let inbound_wake = Arc::new(tokio::sync::Notify::new());
        let sessions = Sessions::new(redis.clone());
        Ok(Self(Arc::new(Inner {
            engine_writer: Writer::start(store.clone(), sessions.clone()),
            ingestor: Ingestor::start(store.clone(), inbound_wake.clone()),
            inbound_wake,
            callbacks: CallbackCache::default(),
            webhook_events: EventLimiter::new(std::time::Duration::from_secs(10)),
            sessions,
            bot_cache: Default::default(),
            llm_http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
                .build()
                .context("building the HTTP client for model vendors")?,
            // Short: lane holders are this plus a suffix, in a 64-character column.
            worker_id: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            graph,
            self_url: std::sync::OnceLock::new(),
            jwt: JwtKeys::new(&keys.jwt, settings.jwt_ttl),
            vault: match &keys.master_previous {
                Some(previous) => Vault::new(&keys.master).with_older(previous),
                None => Vault::new(&keys.master),
            },
            settings,
            store,
            redis,
        })))
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn jwt(&self) -> &JwtKeys {
        &self.0.jwt
    }

    pub fn vault(&self) -> &Vault {
        &self.0.vault
    }

    /// Where webhooks are stored.
    pub fn ingestor(&self) -> &Ingestor {
        &self.0.ingestor
    }

    pub fn inbound_wake(&self) -> &Arc<tokio::sync::Notify> {
        &self.0.inbound_wake
    }

    /// The engine's group-committing writer ([`crate::engine::writer`]).
    pub fn engine_writer(&self) -> &Writer {
        &self.0.engine_writer
    }

    /// Integrations as their callbacks see them.
    pub fn callbacks(&self) -> &CallbackCache {
        &self.0.callbacks
    }

    pub fn webhook_events(&self) -> &EventLimiter {
        &self.0.webhook_events
    }

    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }

    /// Bots and their model clients, kept briefly for the engine.
    pub fn bot_cache(&self) -> &crate::engine::bot_cache::BotCache {
        &self.0.bot_cache
    }

    pub fn llm_http(&self) -> &reqwest::Client {
        &self.0.llm_http
    }

    /// This process, as lane leases name it.
    pub fn worker_id(&self) -> &str {
        &self.0.worker_id
    }

    /// Meta's Graph API.
    pub fn graph(&self) -> &GraphClient {
        &self.0.graph
    }

    /// The Graph API an integration talks to: Meta's, or for the sandbox Parley's own
    /// endpoint (see [`crate::sandbox`]).
    pub fn graph_for(
        &self,
        integration: &crate::store::entities::whatsapp_integration::Model,
    ) -> std::borrow::Cow<'_, GraphClient> {
        if integration.sandbox {
            std::borrow::Cow::Owned(self.graph().with_base(crate::sandbox::graph_base(self)))
        } else {
            std::borrow::Cow::Borrowed(self.graph())
        }
    }

    /// Records the address the HTTP server is bound to; the sandbox calls itself there.
    pub fn set_bound_addr(&self, addr: std::net::SocketAddr) {
        let ip = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
            ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let bound = std::net::SocketAddr::new(ip, addr.port());
        if let Ok(url) = url::Url::parse(&format!("http://{bound}")) {
            let _ = self.0.self_url.set(url);
        }
    }

    /// This process's own base URL: where it is bound when it serves HTTP, else
    /// `PARLEY_PUBLIC_URL` (a `worker` process reaches the sandbox through the web tier).
    pub fn self_url(&self) -> &url::Url {
        self.0.self_url.get().unwrap_or(&self.0.settings.public_url)
    }

    pub fn redis(&self) -> Option<&deadpool_redis::Pool> {
        self.0.redis.as_ref()
    }

    /// Ok when Redis is not configured or answers PING.
    pub async fn redis_ping(&self) -> Result<(), String> {
        let Some(pool) = self.redis() else {
            return Ok(());
        };
        let mut conn = pool
            .get()
            .await
            .map_err(|_| "redis unreachable".to_owned())?;
        deadpool_redis::redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|_| "redis unreachable".to_owned())
    }
}
