//! Building and running the application. Tests drive the same code through
//! [`Application::build`] with port 0 and a shutdown future of their own.

use std::future::Future;
use std::net::TcpListener;

use actix_web::HttpServer;
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::keys::Keys;
use crate::state::AppState;
use crate::store::Store;
use crate::{http, jobs};

/// Connects to the database, applies migrations and loads the keys: what every command that
/// touches data needs.
pub async fn prepare(settings: &Settings) -> anyhow::Result<AppState> {
    let keys = Keys::load_or_create(settings)?;
    let store = Store::connect(settings).await?;
    store.migrate().await?;
    AppState::new(settings.clone(), store, &keys)
}

/// The HTTP server and the queue workers, in one process.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    state: AppState,
}

impl Application {
    /// Prepares the state and binds `settings.listen` (use port 0 for a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let state = prepare(&settings).await?;
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("PARLEY_LISTEN: cannot bind {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        state.set_bound_addr(listener.local_addr()?);
        let mut server = HttpServer::new({
            let state = state.clone();
            move || http::app(state.clone())
        });
        if settings.http_workers > 0 {
            server = server.workers(settings.http_workers);
        }
        let server = server
            .listen(listener)?
            // We handle signals ourselves, so the workers stop together with the server.
            .disable_signals()
            .shutdown_timeout(settings.shutdown_timeout.as_secs())
            .run();
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting connections, lets in-flight
    /// requests and jobs finish (bounded by `PARLEY_SHUTDOWN_TIMEOUT_SECS`), and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let stop_workers = CancellationToken::new();
        let workers = if self.state.settings().run_workers {
            tokio::spawn(jobs::run(self.state.clone(), stop_workers.clone()))
        } else {
            tokio::spawn(async { Ok(()) })
        };
        let mut server = tokio::spawn(self.server);
        let server_result = tokio::select! {
            () = shutdown => None,
            res = &mut server => Some(res),
        };
        tracing::info!("shutting down: finishing in-flight requests and jobs");
        stop_workers.cancel();
        let server_result = match server_result {
            Some(res) => res,
            None => {
                handle.stop(true).await;
                server.await
            }
        };
        let workers_result = workers.await;
        self.state.store().close().await;
        server_result
            .context("HTTP server task")?
            .context("HTTP server")?;
        workers_result.context("worker task")??;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Queue workers only (`parley worker`), for scaling work out separately from HTTP.
pub async fn run_workers(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = prepare(&settings).await?;
    let stop = CancellationToken::new();
    let workers = tokio::spawn(jobs::run(state.clone(), stop.clone()));
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight jobs");
    stop.cancel();
    workers.await.context("worker task")??;
    state.store().close().await;
    Ok(())
}
