//! Liveness and readiness probes.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or what is wrong.
    status: String,
}

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(healthz).service(readyz);
}

/// The process is up and serving HTTP.
#[utoipa::path(
    operation_id = "healthz",
    tag = "Health",
    security(()), responses((status = 200, body = Health)))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
    })
}

/// The database (and Redis, when configured) is reachable and all migrations are applied.
#[utoipa::path(
    operation_id = "readyz",
    security(()),
    tag = "Health",
    responses((status = 200, body = Health), (status = 503, body = crate::error::ErrorBody))
)]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, crate::error::ApiError> {
    let problem = match state.store().ready().await {
        Err(e) => Some(e),
        Ok(()) => state.redis_ping().await.err(),
    };
    match problem {
        None => Ok(HttpResponse::Ok().json(Health {
            status: "ok".into(),
        })),
        Some(why) => Err(crate::error::ApiError::new(
            crate::error::ErrorCode::ServiceUnavailable,
            format!("not ready: {why}"),
        )),
    }
}
