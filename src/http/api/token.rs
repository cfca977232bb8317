//! API tokens for programs. The token is shown once, at creation; only its hash is stored.

use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::list::{IdResponse, ListQuery, ListResponse};
use crate::auth::{Auth, Role};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Json;
use crate::store::entities::api_token;
use crate::tenancy;

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create).service(list).service(delete);
}

#[derive(Deserialize, ToSchema)]
pub struct TokenCreateRequest {
    name: String,
    /// The token's role, at most the caller's own. Default: the caller's role.
    role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenCreateResponse {
    id: String,
    /// The token. It is shown only this once.
    token: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    id: String,
    name: String,
    role: Role,
    /// The first characters of the token, to tell tokens apart.
    token_prefix: String,
    /// The user who created it, if any.
    user_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<api_token::Model> for Token {
    fn from(m: api_token::Model) -> Self {
        Self {
            role: Role::from_stored(&m.role),
            id: m.id,
            name: m.name,
            token_prefix: m.token_prefix,
            user_id: m.user_id,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// Creates an API token. Needs the admin role.
#[utoipa::path(
    operation_id = "createToken",
    tag = "Token",
    request_body = TokenCreateRequest,
    responses(
        (status = 200, body = TokenCreateResponse),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    )
)]
#[post("/token/create")]
async fn create(auth: Auth, Json(body): Json<TokenCreateRequest>) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    let name = tenancy::clean_name("name", &body.name)?;
    let role = body.role.unwrap_or(auth.role);
    if role > auth.role {
        return Err(ApiError::not_authorized(
            "a token cannot have a higher role than its creator",
        ));
    }
    let (row, secret) =
        tenancy::create_token(auth.scope(), auth.user_id.clone(), &name, role).await?;
    Ok(HttpResponse::Ok().json(TokenCreateResponse {
        id: row.id,
        token: secrecy::ExposeSecret::expose_secret(&secret).to_owned(),
    }))
}

/// Lists the tenant's API tokens (never the tokens themselves). Needs the admin role.
#[utoipa::path(
    operation_id = "listTokens",
    tag = "Token",
    params(ListQuery),
    responses((status = 200, body = ListResponse<Token>), (status = 401, body = ErrorBody))
)]
#[get("/token/list")]
async fn list(auth: Auth, query: web::Query<ListQuery>) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    let rows = auth
        .scope()
        .list::<api_token::Entity>(&query.page()?, sea_orm::Condition::all())
        .await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter().map(Token::from).collect::<Vec<_>>(),
        cursor,
    )))
}

/// Revokes an API token at once. Needs the admin role.
#[utoipa::path(
    operation_id = "deleteToken",
    tag = "Token",
    params(("tokenId" = String, Path)),
    responses(
        (status = 200, body = IdResponse),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
#[post("/token/{tokenId}/delete")]
async fn delete(auth: Auth, path: web::Path<String>) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    let id = path.into_inner();
    auth.scope().delete::<api_token::Entity>(&id).await?;
    Ok(HttpResponse::Ok().json(IdResponse { id }))
}
