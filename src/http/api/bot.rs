//! Bots, in ChatBotKit's shape, plus Parley's `providerId`.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::fields::{self, Patch};
use super::list::{IdResponse, ListQuery, ListResponse};
use super::provider;
use crate::auth::{Auth, Role};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::Json;
use crate::ids::{new_id, prefix};
use crate::llm::model::ModelSpec;
use crate::state::AppState;
use crate::store::entities::{bot, whatsapp_integration};
use crate::time::now_ms;

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(fetch)
        .service(update)
        .service(delete);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Private,
    Protected,
    Public,
}

impl Visibility {
    fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Protected => "protected",
            Self::Public => "public",
        }
    }

    fn from_stored(s: &str) -> Self {
        match s {
            "public" => Self::Public,
            "protected" => Self::Protected,
            _ => Self::Private,
        }
    }
}

const MAX_BACKSTORY: usize = 100_000;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BotCreateRequest {
    alias: Option<String>,
    name: Option<String>,
    description: Option<String>,
    /// The system prompt.
    backstory: Option<String>,
    /// `name/param=value…`, e.g. `gpt-4o-mini/temperature=0.2/maxTokens=512`.
    #[schema(example = "gpt-4o-mini/temperature=0.2/maxTokens=512")]
    model: Option<String>,
    /// Parley: the model provider to call.
    provider_id: Option<String>,
    dataset_id: Option<String>,
    skillset_id: Option<String>,
    blueprint_id: Option<String>,
    privacy: Option<bool>,
    moderation: Option<bool>,
    visibility: Option<Visibility>,
    #[schema(value_type = Option<Object>)]
    meta: Option<Map<String, Value>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BotUpdateRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    alias: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    description: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    backstory: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    model: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    provider_id: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    dataset_id: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    skillset_id: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    blueprint_id: Patch<String>,
    privacy: Option<bool>,
    moderation: Option<bool>,
    visibility: Option<Visibility>,
    /// Merged into the stored object; a key set to `null` is removed.
    #[schema(value_type = Option<Object>)]
    meta: Option<Map<String, Value>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bot {
    id: String,
    alias: Option<String>,
    name: Option<String>,
    description: Option<String>,
    backstory: Option<String>,
    model: Option<String>,
    provider_id: Option<String>,
    dataset_id: Option<String>,
    skillset_id: Option<String>,
    blueprint_id: Option<String>,
    privacy: bool,
    moderation: bool,
    visibility: Visibility,
    #[schema(value_type = Object)]
    meta: Value,
    created_at: i64,
    updated_at: i64,
}

impl From<bot::Model> for Bot {
    fn from(m: bot::Model) -> Self {
        Self {
            visibility: Visibility::from_stored(&m.visibility),
            id: m.id,
            alias: m.alias,
            name: m.name,
            description: m.description,
            backstory: m.backstory,
            model: m.model,
            provider_id: m.provider_id,
            dataset_id: m.dataset_id,
            skillset_id: m.skillset_id,
            blueprint_id: m.blueprint_id,
            privacy: m.privacy,
            moderation: m.moderation,
            meta: m.meta,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

fn check_model(model: &str) -> ApiResult<()> {
    model
        .parse::<ModelSpec>()
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

fn check_ref(field: &str, v: &str) -> ApiResult<()> {
    if v.is_empty()
        || v.len() > crate::ids::MAX_ID_LEN
        || v.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ApiError::bad_request(format!("{field} is not a valid id")));
    }
    Ok(())
}

/// Creates a bot.
#[utoipa::path(
    operation_id = "createBot",
    tag = "Bot",
    request_body = BotCreateRequest,
    responses((status = 200, body = IdResponse), (status = 400, body = ErrorBody), (status = 404, description = "Unknown providerId", body = ErrorBody))
)]
#[post("/bot/create")]
async fn create(
    auth: Auth,
    state: web::Data<AppState>,
    Json(body): Json<BotCreateRequest>,
) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    for (field, value, max) in [
        ("alias", &body.alias, 200),
        ("name", &body.name, 200),
        ("description", &body.description, 1000),
        ("backstory", &body.backstory, MAX_BACKSTORY),
    ] {
        if let Some(v) = value {
            fields::check_text(field, v, max)?;
        }
    }
    if let Some(m) = &body.model {
        check_model(m)?;
    }
    for (field, v) in [
        ("datasetId", &body.dataset_id),
        ("skillsetId", &body.skillset_id),
        ("blueprintId", &body.blueprint_id),
        ("providerId", &body.provider_id),
    ] {
        if let Some(v) = v {
            check_ref(field, v)?;
        }
    }
    if let Some(p) = &body.provider_id {
        provider::exists(&state, &auth, p).await?;
    }
    let meta = fields::new_meta(body.meta)?;
    let id = new_id(prefix::BOT);
    let now = now_ms();
    bot::ActiveModel {
        id: Set(id.clone()),
        tenant_id: Set(auth.tenant_id().to_owned()),
        alias: Set(body.alias),
        name: Set(body.name),
        description: Set(body.description),
        backstory: Set(body.backstory),
        model: Set(body.model),
        provider_id: Set(body.provider_id),
        dataset_id: Set(body.dataset_id),
        skillset_id: Set(body.skillset_id),
        blueprint_id: Set(body.blueprint_id),
        privacy: Set(body.privacy.unwrap_or(false)),
        moderation: Set(body.moderation.unwrap_or(false)),
        visibility: Set(body.visibility.unwrap_or_default().as_str().to_owned()),
        meta: Set(meta),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(auth.scope().db())
    .await?;
    Ok(HttpResponse::Ok().json(IdResponse { id }))
}

/// Lists bots. Filter with `meta.KEY=VALUE`.
#[utoipa::path(
    operation_id = "listBots",
    tag = "Bot",
    params(ListQuery),
    responses((status = 200, body = ListResponse<Bot>))
)]
#[get("/bot/list")]
async fn list(
    auth: Auth,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let filters = fields::meta_filters(req.query_string())?;
    let scope = auth.scope();
    let cond = fields::meta_condition(scope.db().get_database_backend(), "meta", &filters);
    let rows = scope.list::<bot::Entity>(&query.page()?, cond).await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter().map(Bot::from).collect::<Vec<_>>(),
        cursor,
    )))
}

/// Fetches a bot.
#[utoipa::path(
    operation_id = "fetchBot",
    tag = "Bot",
    params(("botId" = String, Path)),
    responses((status = 200, body = Bot), (status = 404, body = ErrorBody))
)]
#[get("/bot/{botId}/fetch")]
async fn fetch(auth: Auth, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let row = auth.scope().find::<bot::Entity>(&path).await?;
    Ok(HttpResponse::Ok().json(Bot::from(row)))
}

/// Updates a bot. Fields left out stay; `null` clears optional ones; `meta` is merged.
#[utoipa::path(
    operation_id = "updateBot",
    tag = "Bot",
    params(("botId" = String, Path)),
    request_body = BotUpdateRequest,
    responses((status = 200, body = IdResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[post("/bot/{botId}/update")]
async fn update(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<String>,
    Json(body): Json<BotUpdateRequest>,
) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    let id = path.into_inner();
    let row = auth.scope().find::<bot::Entity>(&id).await?;
    fields::check_patch("alias", &body.alias, 200)?;
    fields::check_patch("name", &body.name, 200)?;
    fields::check_patch("description", &body.description, 1000)?;
    fields::check_patch("backstory", &body.backstory, MAX_BACKSTORY)?;
    if let Patch::Value(m) = &body.model {
        check_model(m)?;
    }
    for (field, p) in [
        ("datasetId", &body.dataset_id),
        ("skillsetId", &body.skillset_id),
        ("blueprintId", &body.blueprint_id),
        ("providerId", &body.provider_id),
    ] {
        if let Patch::Value(v) = p {
            check_ref(field, v)?;
        }
    }
    if let Patch::Value(p) = &body.provider_id {
        provider::exists(&state, &auth, p).await?;
    }
    let meta = fields::merge_meta(&row.meta, body.meta)?;
    let mut am: bot::ActiveModel = row.into();
    fields::apply_patches!(body, am:
        alias,
        name,
        description,
        backstory,
        model,
        provider_id,
        dataset_id,
        skillset_id,
        blueprint_id
    );
    if let Some(v) = body.privacy {
        am.privacy = Set(v);
    }
    if let Some(v) = body.moderation {
        am.moderation = Set(v);
    }
    if let Some(v) = body.visibility {
        am.visibility = Set(v.as_str().to_owned());
    }
    if let Some(m) = meta {
        am.meta = Set(m);
    }
    am.updated_at = Set(now_ms());
    am.update(auth.scope().db()).await?;
    // The engine must answer with the new settings from the next turn on.
    state.bot_cache().clear();
    Ok(HttpResponse::Ok().json(IdResponse { id }))
}

/// Deletes a bot. Integrations that used it keep running without one (they stop answering)
/// until given another.
#[utoipa::path(
    operation_id = "deleteBot",
    tag = "Bot",
    params(("botId" = String, Path)),
    responses((status = 200, body = IdResponse), (status = 404, body = ErrorBody))
)]
#[post("/bot/{botId}/delete")]
async fn delete(auth: Auth, path: web::Path<String>) -> ApiResult<HttpResponse> {
    auth.require(Role::Admin)?;
    let id = path.into_inner();
    let scope = auth.scope();
    let txn = crate::store::begin_write(scope.db()).await?;
    scope.delete_on::<bot::Entity, _>(&txn, &id).await?;
    scope
        .update_many::<whatsapp_integration::Entity>()
        .col_expr(
            whatsapp_integration::Column::BotId,
            Expr::value(Option::<String>::None),
        )
        .filter(whatsapp_integration::Column::BotId.eq(id.as_str()))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(HttpResponse::Ok().json(IdResponse { id }))
}
