//! The [`Auth`] extractor: the only way a handler learns which tenant it acts for.

use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::{ExposeSecret, SecretString};

use super::{Role, token};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::TenantScope;
use crate::store::entities::{api_token, user};

/// An authenticated caller: a dashboard user (JWT) or a program (API token).
#[derive(Debug, Clone)]
pub struct Auth {
    /// Set for dashboard sessions; for API tokens, the user who created the token, if any.
    pub user_id: Option<String>,
    /// Set when the caller used an API token.
    pub token_id: Option<String>,
    pub role: Role,
    scope: TenantScope,
}

impl Auth {
    pub fn tenant_id(&self) -> &str {
        self.scope.tenant_id()
    }

    /// The caller's view of the database: only its own tenant's rows.
    pub fn scope(&self) -> &TenantScope {
        &self.scope
    }

    /// 403 unless the caller's role is at least `needed`.
    pub fn require(&self, needed: Role) -> ApiResult<()> {
        self.role.require(needed)
    }

    async fn resolve(state: &AppState, credential: SecretString) -> ApiResult<Self> {
        let db = state.store().db();
        if token::looks_like_token(&credential) {
            let hash = token::hash(credential.expose_secret());
            let row = api_token::Entity::find()
                .filter(api_token::Column::TokenHash.eq(hash))
                .one(db)
                .await?
                .ok_or_else(|| ApiError::not_authenticated("invalid credentials"))?;
            return Ok(Self {
                user_id: row.user_id,
                token_id: Some(row.id),
                role: Role::from_stored(&row.role),
                scope: state.store().scope(&row.tenant_id),
            });
        }
        let claims = state.jwt().verify(credential.expose_secret())?;
        let scope = state.store().scope(&claims.tid);
        // The user must still exist, and its current role applies.
        let user = scope
            .select::<user::Entity>()
            .filter(user::Column::Id.eq(claims.sub.as_str()))
            .one(db)
            .await?
            .ok_or_else(|| ApiError::not_authenticated("invalid credentials"))?;
        Ok(Self {
            user_id: Some(user.id),
            token_id: None,
            role: Role::from_stored(&user.role),
            scope,
        })
    }
}

fn bearer(req: &HttpRequest) -> ApiResult<SecretString> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::not_authenticated("missing Authorization header"))?
        .to_str()
        .map_err(|_| ApiError::not_authenticated("invalid Authorization header"))?;
    let (scheme, credential) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::not_authenticated("expected Authorization: Bearer <token>"))?;
    let credential = credential.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
        return Err(ApiError::not_authenticated(
            "expected Authorization: Bearer <token>",
        ));
    }
    // Neither of our credentials is anywhere near this long.
    if credential.len() > 4096 {
        return Err(ApiError::not_authenticated("invalid credentials"));
    }
    Ok(SecretString::from(credential.to_owned()))
}

/// Middleware for every route that needs credentials: resolves [`Auth`] before any extractor
/// runs, so a request without valid credentials answers 401 whatever else is wrong with it.
pub async fn require_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let resolved = async {
        let state = state.ok_or_else(|| ApiError::internal(anyhow::anyhow!("no AppState")))?;
        Auth::resolve(&state, bearer(req.request())?).await
    }
    .await;
    match resolved {
        Ok(auth) => {
            tracing::Span::current().record("tenant_id", auth.tenant_id());
            req.extensions_mut().insert(auth);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(e) => Ok(req.error_response(e).map_into_right_body()),
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Set by `require_auth`. Missing means a route that needs credentials was mounted
        // outside the authenticated scope: a bug, not the client's fault.
        ready(req.extensions().get::<Auth>().cloned().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "route {} takes Auth but is not behind require_auth",
                req.path()
            ))
        }))
    }
}
