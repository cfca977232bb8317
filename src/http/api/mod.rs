//! The management API, one file per resource. Each file's `configure` registers its routes.

mod auth;
pub mod list;
mod token;

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(auth::configure).configure(token::configure);
}
