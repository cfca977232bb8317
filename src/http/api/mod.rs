//! The management API, one file per resource. Each file's `configure` registers its routes.

mod auth;
pub mod list;
mod token;

/// Routes that need no credentials, registered with their full paths.
pub(super) fn configure_public(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(auth::configure_public);
}

/// Routes under `/api/v1` that need credentials.
pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(auth::configure).configure(token::configure);
}
