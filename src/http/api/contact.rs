//! Contacts: the people who talk to a tenant's bots. Filled by the conversation engine when an
//! integration has `contactCollection` on.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::conversation::Conversation;
use super::fields::{self, Patch};
use super::list::{IdResponse, ListQuery, ListResponse};
use crate::auth::{Auth, Role};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Json;
use crate::store::entities::{contact, conversation};
use crate::store::is_unique_violation;
use crate::time::now_ms;

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(fetch)
        .service(update)
        .service(delete)
        .service(conversations);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    id: String,
    fingerprint: String,
    name: Option<String>,
    description: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    nick: Option<String>,
    preferences: Option<String>,
    verified_at: Option<i64>,
    #[schema(value_type = Object)]
    meta: Value,
    created_at: i64,
    updated_at: i64,
}

impl From<contact::Model> for Contact {
    fn from(m: contact::Model) -> Self {
        Self {
            id: m.id,
            fingerprint: m.fingerprint,
            name: m.name,
            description: m.description,
            email: m.email,
            phone: m.phone,
            nick: m.nick,
            preferences: m.preferences,
            verified_at: m.verified_at,
            meta: m.meta,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactUpdateRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    description: Patch<String>,
    fingerprint: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    email: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    phone: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    nick: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    preferences: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    verified_at: Patch<i64>,
    /// Merged into the stored object; a key set to `null` is removed.
    #[schema(value_type = Option<Object>)]
    meta: Option<Map<String, Value>>,
}

/// Lists contacts. Filter with `meta.KEY=VALUE`.
#[utoipa::path(
    operation_id = "listContacts",
    tag = "Contact",
    params(ListQuery),
    responses((status = 200, body = ListResponse<Contact>))
)]
#[get("/contact/list")]
async fn list(
    auth: Auth,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let filters = fields::meta_filters(req.query_string())?;
    let scope = auth.scope();
    let cond = fields::meta_condition(scope.db().get_database_backend(), "meta", &filters);
    let rows = scope.list::<contact::Entity>(&query.page()?, cond).await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter().map(Contact::from).collect::<Vec<_>>(),
        cursor,
    )))
}

/// Fetches a contact.
#[utoipa::path(
    operation_id = "fetchContact",
    tag = "Contact",
    params(("contactId" = String, Path)),
    responses((status = 200, body = Contact), (status = 404, body = ErrorBody))
)]
#[get("/contact/{contactId}/fetch")]
async fn fetch(auth: Auth, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let row = auth.scope().find::<contact::Entity>(&path).await?;
    Ok(HttpResponse::Ok().json(Contact::from(row)))
}

/// Updates a contact. `meta` is merged.
#[utoipa::path(
    operation_id = "updateContact",
    tag = "Contact",
    params(("contactId" = String, Path)),
    request_body = ContactUpdateRequest,
    responses((status = 200, body = IdResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
#[post("/contact/{contactId}/update")]
async fn update(
    auth: Auth,
    path: web::Path<String>,
    Json(body): Json<ContactUpdateRequest>,
) -> ApiResult<HttpResponse> {
    auth.require(Role::Agent)?;
    let id = path.into_inner();
    let row = auth.scope().find::<contact::Entity>(&id).await?;
    for (field, p, max) in [
        ("name", &body.name, 200),
        ("description", &body.description, 1000),
        ("email", &body.email, 254),
        ("phone", &body.phone, 32),
        ("nick", &body.nick, 100),
        ("preferences", &body.preferences, 4000),
    ] {
        fields::check_patch(field, p, max)?;
    }
    if let Some(f) = &body.fingerprint {
        fields::check_text("fingerprint", f, 128)?;
        if f.is_empty() {
            return Err(ApiError::bad_request("fingerprint must not be empty"));
        }
    }
    let meta = fields::merge_meta(&row.meta, body.meta)?;
    let mut am: contact::ActiveModel = row.into();
    fields::apply_patches!(body, am:
        name,
        description,
        email,
        phone,
        nick,
        preferences,
        verified_at
    );
    if let Some(f) = body.fingerprint {
        am.fingerprint = Set(f);
    }
    if let Some(m) = meta {
        am.meta = Set(m);
    }
    am.updated_at = Set(now_ms());
    am.update(auth.scope().db()).await.map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict("another contact has this fingerprint")
        } else {
            e.into()
        }
    })?;
    Ok(HttpResponse::Ok().json(IdResponse { id }))
}

/// Deletes a contact. Its conversations stay.
#[utoipa::path(
    operation_id = "deleteContact",
    tag = "Contact",
    params(("contactId" = String, Path)),
    responses((status = 200, body = IdResponse), (status = 404, body = ErrorBody))
)]
#[post("/contact/{contactId}/delete")]
async fn delete(auth: Auth, path: web::Path<String>) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    let id = path.into_inner();
    auth.scope().delete::<contact::Entity>(&id).await?;
    Ok(HttpResponse::Ok().json(IdResponse { id }))
}

/// Lists a contact's conversations.
#[utoipa::path(
    operation_id = "listContactConversations",
    tag = "Contact",
    params(("contactId" = String, Path), ListQuery),
    responses((status = 200, body = ListResponse<Conversation>), (status = 404, body = ErrorBody))
)]
#[get("/contact/{contactId}/conversation/list")]
async fn conversations(
    auth: Auth,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let scope = auth.scope();
    let contact = scope.find::<contact::Entity>(&path).await?;
    let cond = sea_orm::Condition::all().add(conversation::Column::ContactId.eq(contact.id));
    let rows = scope
        .list::<conversation::Entity>(&query.page()?, cond)
        .await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter().map(Conversation::from).collect::<Vec<_>>(),
        cursor,
    )))
}
