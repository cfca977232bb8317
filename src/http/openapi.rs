//! The OpenAPI document. Paths are collected from the handlers' `#[utoipa::path]` attributes as
//! they are registered; this file adds what is global. `parley openapi` prints it, and
//! `openapi/openapi.json` holds the committed copy that `make test` checks for drift.

use actix_web::App;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Parley API",
        description = "Manage WhatsApp bots. Speaks ChatBotKit's v1 dialect: create, update and \
                       delete are POST and answer {id}; fetch and list are GET; lists answer \
                       {items} and page with cursor, take and order; errors answer \
                       {message, code}.",
        license(name = "AGPL-3.0-only")
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth),
    security(("BearerAuth" = []))
)]
pub(super) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "BearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A dashboard session token (from signup or login) or an API token (prl_…)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Serves the document, built once.
pub(super) async fn serve() -> actix_web::HttpResponse {
    static DOCUMENT: std::sync::LazyLock<utoipa::openapi::OpenApi> =
        std::sync::LazyLock::new(openapi_document);
    actix_web::HttpResponse::Ok().json(&*DOCUMENT)
}

/// The full document, built from the same route table the server uses.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(super::routes)
        .split_for_parts();
    doc
}
