//! The management API, one file per resource. Each file's `configure` registers its routes.

mod auth;
mod bot;
mod contact;
mod conversation;
mod event;
pub mod fields;
pub mod list;
mod playground;
pub mod provider;
mod sandbox;
mod token;
mod usage;
mod whatsapp;

/// Routes that need no credentials, registered with their full paths.
pub(super) fn configure_public(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(auth::configure_public)
        .configure(sandbox::configure_public);
}

/// Routes under `/api/v1` that need credentials.
pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(auth::configure)
        .configure(token::configure)
        .configure(provider::configure)
        .configure(bot::configure)
        .configure(whatsapp::configure)
        .configure(contact::configure)
        .configure(conversation::configure)
        .configure(event::configure)
        .configure(sandbox::configure)
        .configure(usage::configure)
        .configure(playground::configure);
}
