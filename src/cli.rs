//! The `parley` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::auth::Role;
use crate::config::Settings;
use crate::startup::{self, Application};
use crate::{http, telemetry, tenancy};

#[derive(Parser)]
#[command(
    name = "parley",
    version,
    about = "Self-hosted, multi-tenant WhatsApp bots",
    long_about = "Parley connects WhatsApp Business numbers to LLM bots. Settings come from \
                  built-in defaults, then --config FILE, then PARLEY_* environment variables; \
                  see the README for the full list."
)]
struct Cli {
    /// A TOML file with settings (same names as PARLEY_* variables, lower case, no prefix).
    #[arg(long, global = true, env = "PARLEY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API, the webhooks and the queue workers in one process (the default).
    Serve,
    /// Run only the queue workers, to scale work out beside `serve` replicas.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (JSON) and exit. Needs no configuration.
    Openapi,
    /// Manage tenants without the HTTP API.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage the master key that encrypts tenant secrets.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-encrypt every tenant secret under a new master key, in one transaction.
    ///
    /// With key files (PARLEY_MASTER_KEY unset), the new key replaces data/master.key and the
    /// old one is kept as data/master.key.previous, which servers still read from, so restart
    /// them at your pace. With PARLEY_MASTER_KEY, the new key is printed on stdout: set it as
    /// PARLEY_MASTER_KEY and the old one as PARLEY_MASTER_KEY_PREVIOUS on every replica.
    Rotate {
        /// The new key (32 bytes, base64). Default: a fresh random key.
        #[arg(long, env = "PARLEY_NEW_MASTER_KEY", hide_env_values = true)]
        new_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and its owner, and print an API token (owner role) on stdout.
    ///
    /// The owner has no password; they can use the token, or a password can be set later.
    Create {
        /// The tenant's name, e.g. the business.
        #[arg(long)]
        name: String,
        /// The owner's email.
        #[arg(long)]
        email: String,
    },
}

/// Parses the command line and runs the command. `main` calls only this.
pub fn run() -> ExitCode {
    // rustls has two crypto providers compiled in (ring via sqlx, aws-lc via reqwest); pick one
    // before anything makes a TLS config, or redis over TLS panics.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        return print_openapi();
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("parley: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format, &settings.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "parley failed");
            eprintln!("parley: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            tracing::info!(
                listen = %settings.listen,
                database = ?settings.database,
                public_url = %settings.public_url,
                "starting parley"
            );
            let app = Application::build(settings).await?;
            tracing::info!(port = app.port(), "listening");
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Worker => startup::run_workers(settings, shutdown_signal()).await,
        Command::Migrate => {
            let store = crate::store::Store::connect(&settings).await?;
            store.migrate().await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Create { name, email },
        } => {
            let state = startup::prepare(&settings).await?;
            let name = tenancy::clean_name("--name", &name).map_err(|e| anyhow::anyhow!("{e}"))?;
            let email =
                tenancy::clean_email(&email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            let (tenant, user) = tenancy::create_tenant(state.store(), &name, &name, &email, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("creating the tenant")?;
            let (_, secret) = tenancy::create_token(
                &state.store().scope(&tenant.id),
                Some(user.id.clone()),
                "created by parley tenant create",
                Role::Owner,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            state.store().close().await;
            eprintln!(
                "created tenant {} ({name}) with owner {} <{email}>; its API token:",
                tenant.id, user.id
            );
            println!("{}", secret.expose_secret());
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate { new_key },
        } => rotate_keys(settings, new_key).await,
        Command::Openapi => Ok(()),
    }
}

async fn rotate_keys(settings: Settings, new_key: Option<String>) -> anyhow::Result<()> {
    let keys = crate::keys::Keys::load_or_create(&settings)?;
    let new = match new_key {
        Some(k) => crate::keys::Key::new(Box::new(
            crate::keys::decode_key(&k).map_err(|e| anyhow::anyhow!("--new-key: {e}"))?,
        )),
        None => crate::keys::generate()?,
    };
    let mut vault = crate::crypto::Vault::new(&new).with_older(&keys.master);
    if let Some(previous) = &keys.master_previous {
        vault = vault.with_older(previous);
    }
    let store = crate::store::Store::connect(&settings).await?;
    store.migrate().await?;
    let rotated = crate::rotate::rotate(&store, &vault).await?;
    store.close().await;
    if settings.master_key.is_none() {
        crate::keys::replace_master_key_file(&settings, &keys.master, &new)?;
        eprintln!(
            "re-encrypted {} secrets under key {}; data/master.key holds the new key and \
             master.key.previous the old one; restart the servers",
            rotated.values,
            vault.current_key_id()
        );
    } else {
        eprintln!(
            "re-encrypted {} secrets under key {}. Set PARLEY_MASTER_KEY to the key below and \
             PARLEY_MASTER_KEY_PREVIOUS to the old one on every replica, then restart them:",
            rotated.values,
            vault.current_key_id()
        );
        println!("{}", crate::keys::encode(&new).expose_secret());
    }
    Ok(())
}

fn print_openapi() -> ExitCode {
    match http::openapi_document().to_pretty_json() {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("parley: cannot render the OpenAPI document: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
