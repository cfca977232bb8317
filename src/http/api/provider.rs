//! Model providers: where bots send prompts. Parley's own resource (ChatBotKit hosts its
//! models; we do not).
//!
//! Besides each tenant's rows, the server may define default providers from its settings
//! (`PARLEY_OPENAI_API_KEY`, `PARLEY_ANTHROPIC_API_KEY`). Every tenant sees them, read-only and
//! without their keys, under the fixed ids `prv_system_openai` and `prv_system_anthropic`. Those
//! ids sort after every generated id, so lists page through them like any other row.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, PaginatorTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::fields::{self, Patch, SecretInput};
use super::list::{IdResponse, ListQuery, ListResponse};
use crate::auth::{Auth, Role};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Json;
use crate::ids::{new_id, prefix};
use crate::state::AppState;
use crate::store::entities::{bot, provider};
use crate::store::{Order, Page};
use crate::tenancy::clean_name;
use crate::time::now_ms;

pub const SYSTEM_OPENAI_ID: &str = "prv_system_openai";
pub const SYSTEM_ANTHROPIC_ID: &str = "prv_system_anthropic";

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(fetch)
        .service(update)
        .service(delete);
}

/// Which API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible Chat Completions API: OpenAI, Mistral, Groq, Together, OpenRouter,
    /// vLLM, Ollama, llama.cpp server…
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    pub fn from_stored(s: &str) -> Self {
        if s == "anthropic" {
            Self::Anthropic
        } else {
            Self::Openai
        }
    }

    /// Following each vendor SDK: OpenAI's base URL includes the version path, Anthropic's not.
    fn default_base_url(self) -> &'static str {
        match self {
            Self::Openai => "https://api.openai.com/v1",
            Self::Anthropic => "https://api.anthropic.com",
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderCreateRequest {
    name: String,
    description: Option<String>,
    #[serde(rename = "type")]
    kind: ProviderKind,
    /// Default: the vendor's public API.
    base_url: Option<String>,
    /// Write-only: fetch and list show `"********"`.
    #[schema(value_type = Option<String>)]
    api_key: Option<String>,
    default_model: Option<String>,
    vision_model: Option<String>,
    transcription_model: Option<String>,
    #[schema(value_type = Option<Object>)]
    meta: Option<Map<String, Value>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderUpdateRequest {
    name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    description: Patch<String>,
    #[serde(rename = "type")]
    kind: Option<ProviderKind>,
    base_url: Option<String>,
    /// `"********"` keeps the stored key, `null` clears it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    api_key: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    default_model: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    vision_model: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    transcription_model: Patch<String>,
    /// Merged into the stored object; a key set to `null` is removed.
    #[schema(value_type = Option<Object>)]
    meta: Option<Map<String, Value>>,
}

#[derive(Serialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    id: String,
    name: String,
    description: Option<String>,
    #[serde(rename = "type")]
    kind: ProviderKind,
    base_url: String,
    /// `"********"` when set, `null` when not.
    api_key: Option<String>,
    default_model: Option<String>,
    vision_model: Option<String>,
    transcription_model: Option<String>,
    #[schema(value_type = Object)]
    meta: Value,
    /// Defined by the server's configuration: read-only, shared by all tenants.
    system: bool,
    created_at: i64,
    updated_at: i64,
}

impl From<provider::Model> for Provider {
    fn from(m: provider::Model) -> Self {
        Self {
            api_key: fields::masked(&m.api_key),
            kind: ProviderKind::from_stored(&m.kind),
            id: m.id,
            name: m.name,
            description: m.description,
            base_url: m.base_url,
            default_model: m.default_model,
            vision_model: m.vision_model,
            transcription_model: m.transcription_model,
            meta: m.meta,
            system: false,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// The server's default providers, as tenants see them.
fn system_providers(state: &AppState) -> Vec<Provider> {
    let s = state.settings();
    let mut out = Vec::new();
    let system = |id: &str, name: &str, kind: ProviderKind, base: &url::Url| Provider {
        id: id.to_owned(),
        name: name.to_owned(),
        description: Some("Defined by the server configuration".to_owned()),
        kind,
        base_url: base.as_str().trim_end_matches('/').to_owned(),
        api_key: Some(fields::MASK.to_owned()),
        default_model: None,
        vision_model: None,
        transcription_model: None,
        meta: Value::Object(Map::new()),
        system: true,
        created_at: 0,
        updated_at: 0,
    };
    if s.openai_api_key.is_some() {
        out.push(system(
            SYSTEM_OPENAI_ID,
            "OpenAI (server default)",
            ProviderKind::Openai,
            &s.openai_base_url,
        ));
    }
    if s.anthropic_api_key.is_some() {
        out.push(system(
            SYSTEM_ANTHROPIC_ID,
            "Anthropic (server default)",
            ProviderKind::Anthropic,
            &s.anthropic_base_url,
        ));
    }
    out
}

/// Whether `id` names a provider the caller may use: one of its own, or a system one.
pub async fn exists(state: &AppState, auth: &Auth, id: &str) -> ApiResult<()> {
    if system_providers(state).iter().any(|p| p.id == id) {
        return Ok(());
    }
    auth.scope().find::<provider::Entity>(id).await.map(|_| ())
}

fn check_base_url(raw: &str) -> ApiResult<String> {
    let url = url::Url::parse(raw)
        .map_err(|_| ApiError::bad_request("baseUrl must be an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ApiError::bad_request(
            "baseUrl must be an absolute http(s) URL",
        ));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

fn check_model_field(field: &str, v: &str) -> ApiResult<()> {
    if v.is_empty() || v.len() > 128 || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::bad_request(format!(
            "{field} must be a model name of 1 to 128 characters without spaces"
        )));
    }
    Ok(())
}

fn check_model_patch(field: &str, p: &Patch<String>) -> ApiResult<()> {
    if let Patch::Value(v) = p {
        check_model_field(field, v)?;
    }
    Ok(())
}

fn api_key_context(tenant_id: &str, id: &str) -> String {
    fields::secret_context(tenant_id, "provider", id, "api_key")
}

/// Creates a model provider.
#[utoipa::path(
    operation_id = "createProvider",
    tag = "Provider",
    request_body = ProviderCreateRequest,
    responses((status = 200, body = IdResponse), (status = 400, body = ErrorBody))
)]
#[post("/provider/create")]
async fn create(
    auth: Auth,
    state: web::Data<AppState>,
    Json(body): Json<ProviderCreateRequest>,
) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    let name = clean_name("name", &body.name)?;
    if let Some(d) = &body.description {
        fields::check_text("description", d, 1000)?;
    }
    let base_url = match &body.base_url {
        Some(u) => check_base_url(u)?,
        None => body.kind.default_base_url().to_owned(),
    };
    for (field, v) in [
        ("defaultModel", &body.default_model),
        ("visionModel", &body.vision_model),
        ("transcriptionModel", &body.transcription_model),
    ] {
        if let Some(v) = v {
            check_model_field(field, v)?;
        }
    }
    let meta = fields::new_meta(body.meta)?;
    let id = new_id(prefix::PROVIDER);
    let tenant = auth.tenant_id();
    let api_key =
        SecretInput::from_patch("apiKey", body.api_key.map_or(Patch::Missing, Patch::Value))?
            .seal(state.vault(), None, &api_key_context(tenant, &id))?;
    let now = now_ms();
    provider::ActiveModel {
        id: Set(id.clone()),
        tenant_id: Set(tenant.to_owned()),
        name: Set(name),
        description: Set(body.description),
        kind: Set(body.kind.as_str().to_owned()),
        base_url: Set(base_url),
        api_key: Set(api_key),
        default_model: Set(body.default_model),
        vision_model: Set(body.vision_model),
        transcription_model: Set(body.transcription_model),
        meta: Set(meta),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(auth.scope().db())
    .await?;
    Ok(HttpResponse::Ok().json(IdResponse { id }))
}

/// Lists the tenant's providers and the server's default ones.
#[utoipa::path(
    operation_id = "listProviders",
    tag = "Provider",
    params(ListQuery),
    responses((status = 200, body = ListResponse<Provider>))
)]
#[get("/provider/list")]
async fn list(
    auth: Auth,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let page = query.page()?;
    let filters = fields::meta_filters(req.query_string())?;
    let backend = auth.scope().db().get_database_backend();
    let rows = auth
        .scope()
        .list::<provider::Entity>(&page, fields::meta_condition(backend, "meta", &filters))
        .await?;
    let mut items: Vec<Provider> = rows.into_iter().map(Provider::from).collect();
    // System providers have empty meta, so any meta filter excludes them.
    if filters.is_empty() {
        items.extend(
            system_providers(&state)
                .into_iter()
                .filter(|p| after_cursor(&page, &p.id)),
        );
    }
    match page.order {
        Order::Asc => items.sort_by(|a, b| a.id.cmp(&b.id)),
        Order::Desc => items.sort_by(|a, b| b.id.cmp(&a.id)),
    }
    items.truncate(page.take as usize);
    let cursor = items.last().map(|p| p.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(items, cursor)))
}

fn after_cursor(page: &Page, id: &str) -> bool {
    match (&page.cursor, page.order) {
        (None, _) => true,
        (Some(c), Order::Asc) => id > c.as_str(),
        (Some(c), Order::Desc) => id < c.as_str(),
    }
}

/// Fetches a provider. The API key is never shown.
#[utoipa::path(
    operation_id = "fetchProvider",
    tag = "Provider",
    params(("providerId" = String, Path)),
    responses((status = 200, body = Provider), (status = 404, body = ErrorBody))
)]
#[get("/provider/{providerId}/fetch")]
async fn fetch(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    if let Some(p) = system_providers(&state).into_iter().find(|p| p.id == id) {
        return Ok(HttpResponse::Ok().json(p));
    }
    let row = auth.scope().find::<provider::Entity>(&id).await?;
    Ok(HttpResponse::Ok().json(Provider::from(row)))
}

fn refuse_system(id: &str) -> ApiResult<()> {
    if id.starts_with("prv_system_") {
        return Err(ApiError::not_authorized(
            "this provider is defined by the server configuration and cannot be changed here",
        ));
    }
    Ok(())
}

/// Updates a provider. `apiKey: "********"` keeps the key, `null` clears it; `meta` is merged.
#[utoipa::path(
    operation_id = "updateProvider",
    tag = "Provider",
    params(("providerId" = String, Path)),
    request_body = ProviderUpdateRequest,
    responses((status = 200, body = IdResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[post("/provider/{providerId}/update")]
async fn update(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    Json(body): Json<ProviderUpdateRequest>,
) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    let id = path.into_inner();
    refuse_system(&id)?;
    let row = auth.scope().find::<provider::Entity>(&id).await?;
    fields::check_patch("description", &body.description, 1000)?;
    check_model_patch("defaultModel", &body.default_model)?;
    check_model_patch("visionModel", &body.vision_model)?;
    check_model_patch("transcriptionModel", &body.transcription_model)?;
    let meta = fields::merge_meta(&row.meta, body.meta)?;
    let api_key = SecretInput::from_patch("apiKey", body.api_key)?.seal(
        state.vault(),
        row.api_key.clone(),
        &api_key_context(auth.tenant_id(), &id),
    )?;
    let mut am: provider::ActiveModel = row.into();
    if let Some(name) = body.name {
        am.name = Set(clean_name("name", &name)?);
    }
    if let Some(d) = body.description.resolve() {
        am.description = Set(d);
    }
    if let Some(k) = body.kind {
        am.kind = Set(k.as_str().to_owned());
    }
    if let Some(u) = body.base_url {
        am.base_url = Set(check_base_url(&u)?);
    }
    am.api_key = Set(api_key);
    if let Some(v) = body.default_model.resolve() {
        am.default_model = Set(v);
    }
    if let Some(v) = body.vision_model.resolve() {
        am.vision_model = Set(v);
    }
    if let Some(v) = body.transcription_model.resolve() {
        am.transcription_model = Set(v);
    }
    if let Some(m) = meta {
        am.meta = Set(m);
    }
    am.updated_at = Set(now_ms());
    am.update(auth.scope().db()).await?;
    // The engine must use the new endpoint and key from the next turn on.
    state.bot_cache().clear();
    Ok(HttpResponse::Ok().json(IdResponse { id }))
}

/// Deletes a provider. Refused (409) while bots use it.
#[utoipa::path(
    operation_id = "deleteProvider",
    tag = "Provider",
    params(("providerId" = String, Path)),
    responses((status = 200, body = IdResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
#[post("/provider/{providerId}/delete")]
async fn delete(auth: Auth, path: web::Path<String>) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    let id = path.into_inner();
    refuse_system(&id)?;
    let scope = auth.scope();
    scope.find::<provider::Entity>(&id).await?;
    let users = scope
        .select::<bot::Entity>()
        .filter(bot::Column::ProviderId.eq(id.as_str()))
        .count(scope.db())
        .await?;
    if users > 0 {
        return Err(ApiError::conflict(format!(
            "{users} bot(s) use this provider; point them elsewhere first"
        )));
    }
    scope.delete::<provider::Entity>(&id).await?;
    Ok(HttpResponse::Ok().json(IdResponse { id }))
}
