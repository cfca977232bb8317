//! The HTTP surface: the management API under `/api/v1`, health probes, the docs, and the
//! dashboard at `/`.
//!
//! [`app`] builds the actix `App` for one server worker thread; [`openapi_document`] builds the
//! same routes without a server, to print or check the OpenAPI document.

pub mod api;
mod dashboard;
mod errors;
mod health;
pub mod json;
mod openapi;
mod request_id;
pub mod webhooks;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpResponse, web};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

pub use openapi::openapi_document;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The application for one server thread.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (app, _) = App::new()
        .app_data(web::Data::new(state))
        .app_data(json::query_config())
        .app_data(json::path_config())
        // Outermost: every response, including errors made by the layers below, gets a request
        // id and a log line.
        .wrap(from_fn(request_id::middleware))
        .wrap(ErrorHandlers::new().default_handler(errors::normalize))
        .into_utoipa_app()
        .openapi(openapi::ApiDoc::openapi())
        .configure(routes)
        .split_for_parts();
    app.service(
        SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::new([OPENAPI_PATH])),
    )
    .route(
        "/docs",
        web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header(("location", "/docs/"))
                .finish()
        }),
    )
    .default_service(web::to(dashboard::serve))
}

/// Every route. Order matters: actix tries them in registration order, and the `/api/v1` scope
/// answers everything under it. Public routes therefore come first, with full paths; the scope
/// requires credentials for all it holds.
fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(health::configure)
        .route(OPENAPI_PATH, web::get().to(openapi::serve))
        .configure(api::configure_public)
        .configure(webhooks::configure)
        .service(
            utoipa_actix_web::scope("/api/v1")
                .wrap(from_fn(crate::auth::require_auth))
                .configure(api::configure),
        );
}
