//! Dashboard accounts: signup, login, and who-am-I.

use actix_web::{HttpResponse, get, post, web};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Auth, Role, password, throttle};
use crate::config::Signup;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Json;
use crate::state::AppState;
use crate::store::entities::user;
use crate::tenancy;

pub(super) fn configure_public(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(signup).service(login);
}

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(me);
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignupRequest {
    email: String,
    #[schema(value_type = String, min_length = 8)]
    password: SecretString,
    /// Your name. Also names the new tenant unless `tenantName` is given.
    name: String,
    /// Name of the tenant (the business) to create.
    tenant_name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    email: String,
    #[schema(value_type = String)]
    password: SecretString,
}

/// A dashboard session.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    user_id: String,
    tenant_id: String,
}

/// Creates a tenant and its owner, and logs the owner in.
#[utoipa::path(
    operation_id = "signup",
    tag = "Auth",
    security(()),
    request_body = SignupRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 400, body = ErrorBody),
        (status = 403, description = "Signup is closed on this server", body = ErrorBody),
        (status = 409, description = "The email is taken", body = ErrorBody),
    )
)]
#[post("/api/v1/auth/signup")]
async fn signup(
    state: web::Data<AppState>,
    Json(body): Json<SignupRequest>,
) -> ApiResult<HttpResponse> {
    if state.settings().signup == Signup::Closed {
        return Err(ApiError::not_authorized("signup is closed on this server"));
    }
    let email = tenancy::clean_email(&body.email)?;
    let name = tenancy::clean_name("name", &body.name)?;
    let tenant_name = match &body.tenant_name {
        Some(t) => tenancy::clean_name("tenantName", t)?,
        None => name.clone(),
    };
    password::check_new(&body.password)?;
    let hash = password::hash(body.password).await?;
    let (tenant, user) =
        tenancy::create_tenant(state.store(), &tenant_name, &name, &email, Some(hash)).await?;
    tracing::info!(tenant_id = %tenant.id, user_id = %user.id, "tenant signed up");
    Ok(HttpResponse::Ok().json(SessionResponse {
        token: state.jwt().issue(&user.id, &tenant.id)?,
        user_id: user.id,
        tenant_id: tenant.id,
    }))
}

/// Logs in with email and password.
///
/// A wrong email and a wrong password answer alike. After repeated failures for one email,
/// further attempts answer 429 for a growing time.
#[utoipa::path(
    operation_id = "login",
    tag = "Auth",
    security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody),
    )
)]
#[post("/api/v1/auth/login")]
async fn login(
    state: web::Data<AppState>,
    Json(body): Json<LoginRequest>,
) -> ApiResult<HttpResponse> {
    let db = state.store().db();
    // Malformed emails are simply wrong credentials: no hint about what exists.
    let email = body.email.trim().to_lowercase();
    throttle::check(db, &email).await?;
    // Authentication is where the tenant gets decided, so this lookup is by email across
    // tenants; everything after it goes through the tenant scope.
    let found = if email.len() <= 254 {
        user::Entity::find()
            .filter(user::Column::Email.eq(email.as_str()))
            .one(db)
            .await?
    } else {
        None
    };
    let stored = found.as_ref().and_then(|u| u.password_hash.clone());
    if !password::verify(body.password, stored).await? {
        throttle::record_failure(db, &email).await?;
        return Err(ApiError::not_authenticated("invalid email or password"));
    }
    let Some(user) = found else {
        return Err(ApiError::not_authenticated("invalid email or password"));
    };
    throttle::clear(db, &email).await?;
    Ok(HttpResponse::Ok().json(SessionResponse {
        token: state.jwt().issue(&user.id, &user.tenant_id)?,
        user_id: user.id,
        tenant_id: user.tenant_id,
    }))
}

/// The caller, as the server sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeResponse {
    tenant_id: String,
    user_id: Option<String>,
    /// Set when the caller authenticated with an API token.
    token_id: Option<String>,
    role: Role,
    email: Option<String>,
    name: Option<String>,
}

/// Who the credentials belong to.
#[utoipa::path(
    operation_id = "fetchMe",
    tag = "Auth",
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody))
)]
#[get("/auth/me")]
async fn me(auth: Auth) -> ApiResult<HttpResponse> {
    let user = match &auth.user_id {
        Some(id) => Some(auth.scope().find::<user::Entity>(id).await?),
        None => None,
    };
    Ok(HttpResponse::Ok().json(MeResponse {
        tenant_id: auth.tenant_id().to_owned(),
        user_id: auth.user_id.clone(),
        token_id: auth.token_id.clone(),
        role: auth.role,
        email: user.as_ref().map(|u| u.email.clone()),
        name: user.map(|u| u.name),
    }))
}
