//! The built-in WhatsApp sandbox: one per tenant, no Meta account needed. Parley plays Meta.
//!
//! - The dashboard's phone sends the user's messages through the real callback path: Parley
//!   builds a Cloud API webhook, signs it with the sandbox integration's app secret and posts
//!   it to the integration's callback URL, over HTTP, exactly as Meta would. From there on the
//!   message takes the same path as any other (signature check, ingestion, engine).
//! - The sandbox integration's Graph API is Parley's own endpoint
//!   (`/api/v1/sandbox/graph/...`, see [`AppState::graph_for`]). It checks the bearer token,
//!   records the Cloud API bodies it receives for the phone to render, answers like Meta (wamid,
//!   mark-read `success`), and reports `sent` and `delivered` statuses back through the
//!   callback, so the conversation shows delivery ticks.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::channels::whatsapp::signature;
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, Level};
use crate::ids::{new_id, prefix};
use crate::integrations::whatsapp as domain;
use crate::state::AppState;
use crate::store::TenantScope;
use crate::store::entities::{sandbox_message as sm, whatsapp_integration as wi};
use crate::time::now_ms;

/// Where the sandbox's Graph API lives, under Parley's own base URL.
pub const GRAPH_PATH: &str = "/api/v1/sandbox/graph";

/// The sandbox phone's WhatsApp id (the "user"). Reserved-looking 555 number; it only ever
/// exists inside the sandbox.
pub const USER_WA_ID: &str = "15550100001";
/// The bot's number, as the phone shows it.
pub const BUSINESS_DISPLAY_NUMBER: &str = "15550100000";
/// The name the phone's user has in the webhooks' `contacts`.
pub const USER_NAME: &str = "Sandbox user";

/// The Graph API base URL a sandbox integration's client uses: this process itself.
pub fn graph_base(state: &AppState) -> url::Url {
    let own = state.self_url().as_str().trim_end_matches('/').to_owned();
    url::Url::parse(&format!("{own}{GRAPH_PATH}")).unwrap_or_else(|_| state.self_url().clone())
}

/// What the phone sends.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SandboxInput {
    /// A text message.
    Text { text: String },
    /// A tap on a reply button the bot sent.
    ButtonReply {
        /// The button's id.
        id: String,
        title: String,
        /// The wamid of the message whose button was tapped.
        context: Option<String>,
    },
    /// A choice from a list the bot sent.
    ListReply {
        /// The row's id.
        id: String,
        title: String,
        description: Option<String>,
        context: Option<String>,
    },
    /// A location, e.g. in answer to a location request.
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
        context: Option<String>,
    },
}

fn check_len(field: &str, v: &str, max: usize) -> ApiResult<()> {
    let n = v.chars().count();
    if n == 0 || n > max {
        return Err(ApiError::bad_request(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    Ok(())
}

fn check_context(context: &Option<String>) -> ApiResult<()> {
    if let Some(c) = context {
        check_len("context", c, 128)?;
    }
    Ok(())
}

impl SandboxInput {
    /// Checks the input against WhatsApp's own limits, so the webhook is one Meta could send.
    pub fn validate(&self) -> ApiResult<()> {
        match self {
            Self::Text { text } => check_len("text", text.trim(), 4096),
            Self::ButtonReply { id, title, context } => {
                check_len("id", id, 256)?;
                check_len("title", title, 20)?;
                check_context(context)
            }
            Self::ListReply {
                id,
                title,
                description,
                context,
            } => {
                check_len("id", id, 200)?;
                check_len("title", title, 24)?;
                if let Some(d) = description {
                    check_len("description", d, 72)?;
                }
                check_context(context)
            }
            Self::Location {
                latitude,
                longitude,
                name,
                address,
                context,
            } => {
                if !(-90.0..=90.0).contains(latitude) || !(-180.0..=180.0).contains(longitude) {
                    return Err(ApiError::bad_request(
                        "latitude must be within ±90 and longitude within ±180",
                    ));
                }
                for (f, v) in [("name", name), ("address", address)] {
                    if let Some(v) = v {
                        check_len(f, v, 1000)?;
                    }
                }
                check_context(context)
            }
        }
    }

    /// The `messages[]` object of the webhook Meta would send for this input.
    pub fn message_object(&self, wamid: &str, timestamp: i64) -> Value {
        let mut m = json!({
            "from": USER_WA_ID,
            "id": wamid,
            "timestamp": timestamp.to_string(),
        });
        let context = match self {
            Self::Text { text } => {
                m["type"] = json!("text");
                m["text"] = json!({"body": text});
                None
            }
            Self::ButtonReply { id, title, context } => {
                m["type"] = json!("interactive");
                m["interactive"] = json!({
                    "type": "button_reply",
                    "button_reply": {"id": id, "title": title},
                });
                context.as_ref()
            }
            Self::ListReply {
                id,
                title,
                description,
                context,
            } => {
                let mut reply = json!({"id": id, "title": title});
                if let Some(d) = description {
                    reply["description"] = json!(d);
                }
                m["type"] = json!("interactive");
                m["interactive"] = json!({"type": "list_reply", "list_reply": reply});
                context.as_ref()
            }
            Self::Location {
                latitude,
                longitude,
                name,
                address,
                context,
            } => {
                let mut loc = json!({"latitude": latitude, "longitude": longitude});
                if let Some(n) = name {
                    loc["name"] = json!(n);
                }
                if let Some(a) = address {
                    loc["address"] = json!(a);
                }
                m["type"] = json!("location");
                m["location"] = loc;
                context.as_ref()
            }
        };
        if let Some(c) = context {
            m["context"] = json!({"from": BUSINESS_DISPLAY_NUMBER, "id": c});
        }
        m
    }
}

/// A wamid in Meta's style: `wamid.` and base64 of random bytes.
pub fn new_wamid() -> ApiResult<String> {
    let mut bytes = [0u8; 30];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("no randomness: {e}")))?;
    Ok(format!("wamid.{}", STANDARD.encode(bytes)))
}

fn random_secret(len: usize) -> ApiResult<String> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

/// A phone number id for a new sandbox: 15 random digits, like Meta's.
fn new_phone_number_id() -> ApiResult<String> {
    let mut bytes = [0u8; 15];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("no randomness: {e}")))?;
    let mut id: String = bytes.iter().map(|b| char::from(b'0' + b % 10)).collect();
    // No leading zero, as Meta's ids never have one.
    id.replace_range(0..1, "9");
    Ok(id)
}

/// The tenant's sandbox integration, if it has one.
pub async fn find(scope: &TenantScope) -> ApiResult<Option<wi::Model>> {
    Ok(scope
        .select::<wi::Entity>()
        .filter(wi::Column::Sandbox.eq(true))
        .one(scope.db())
        .await?)
}

/// Creates the tenant's sandbox integration, or links the existing one to `bot_id`.
/// Credentials are random: nobody needs to know them, Parley uses them on both sides.
pub async fn ensure(
    state: &AppState,
    scope: &TenantScope,
    bot_id: Option<String>,
) -> ApiResult<wi::Model> {
    // One write transaction, so two concurrent creates cannot both insert.
    let txn = crate::store::begin_write(scope.db()).await?;
    let existing = wi::Entity::find()
        .filter(scope.owns::<wi::Entity>())
        .filter(wi::Column::Sandbox.eq(true))
        .one(&txn)
        .await?;
    let now = now_ms();
    let row = match existing {
        Some(row) => {
            if bot_id.is_none() || bot_id == row.bot_id {
                txn.commit().await?;
                return Ok(row);
            }
            let mut am: wi::ActiveModel = row.into();
            am.bot_id = Set(bot_id);
            am.updated_at = Set(now);
            am.update(&txn).await?
        }
        None => {
            let mut row = wi::Model {
                id: new_id(prefix::WHATSAPP_INTEGRATION),
                tenant_id: scope.tenant_id().to_owned(),
                alias: None,
                name: Some("Sandbox".to_owned()),
                description: Some(
                    "Parley's built-in WhatsApp sandbox: chat with the bot in the dashboard"
                        .to_owned(),
                ),
                bot_id,
                blueprint_id: None,
                phone_number_id: Some(new_phone_number_id()?),
                access_token: None,
                app_secret: None,
                verify_token: domain::new_verify_token()?,
                contact_collection: true,
                session_duration: domain::DEFAULT_SESSION_MS,
                attachments: false,
                allow_from: "*".to_owned(),
                allow_unsigned: false,
                reset_commands: None,
                status: domain::status::READY.to_owned(),
                status_message: Some("Parley's built-in sandbox plays Meta".to_owned()),
                meta: json!({}),
                sandbox: true,
                created_at: now,
                updated_at: now,
            };
            let vault = state.vault();
            row.access_token = Some(
                vault
                    .seal(
                        &format!("sandbox_{}", random_secret(24)?),
                        &domain::access_token_context(&row),
                    )
                    .map_err(ApiError::internal)?,
            );
            row.app_secret = Some(
                vault
                    .seal(&random_secret(16)?, &domain::app_secret_context(&row))
                    .map_err(ApiError::internal)?,
            );
            let row = wi::ActiveModel::from(row).insert(&txn).await?;
            Event::new(
                "whatsapp.sandbox.created",
                Level::Info,
                "the WhatsApp sandbox was created",
            )
            .integration(&row.id)
            .record(&txn, scope.tenant_id())
            .await?;
            row
        }
    };
    txn.commit().await?;
    state.callbacks().forget(&row.id);
    Ok(row)
}

fn app_secret(state: &AppState, row: &wi::Model) -> ApiResult<SecretString> {
    let sealed = row
        .app_secret
        .as_ref()
        .ok_or_else(|| ApiError::unprocessable("the sandbox integration has no appSecret"))?;
    state
        .vault()
        .open(sealed, &domain::app_secret_context(row))
        .map_err(ApiError::internal)
}

/// A webhook envelope around one `messages` change value.
fn envelope(row: &wi::Model, value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({
        "display_phone_number": BUSINESS_DISPLAY_NUMBER,
        "phone_number_id": row.phone_number_id,
    });
    value["contacts"] = json!([{"profile": {"name": USER_NAME}, "wa_id": USER_WA_ID}]);
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": format!("waba_{}", row.id), "changes": [{"field": "messages", "value": value}]}],
    })
}

/// Signs `body` with the integration's app secret and posts it to its callback URL, as Meta
/// does.
async fn post_webhook(state: &AppState, row: &wi::Model, body: &Value) -> ApiResult<()> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::internal(anyhow::Error::from(e)))?;
    let secret = app_secret(state, row)?;
    let header = signature::sign(secret.expose_secret().as_bytes(), &bytes);
    let url = domain::callback_url(state.self_url(), &row.id);
    let res = state
        .llm_http()
        .post(url)
        .timeout(std::time::Duration::from_secs(15))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", header)
        .body(bytes)
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(anyhow::anyhow!("sandbox callback: {e}")))?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(ApiError::Unavailable(anyhow::anyhow!(
            "the callback answered HTTP {}",
            res.status()
        )))
    }
}

/// Sends what the phone's user did to the bot, through the callback. The message is recorded
/// for the phone first, so it shows even while the bot thinks.
pub async fn send(
    state: &AppState,
    scope: &TenantScope,
    input: &SandboxInput,
) -> ApiResult<sm::Model> {
    input.validate()?;
    let row = find(scope)
        .await?
        .ok_or_else(|| ApiError::not_found("sandbox"))?;
    let now = now_ms();
    let wamid = new_wamid()?;
    let message = input.message_object(&wamid, now / 1000);
    let rec = sm::ActiveModel {
        id: Set(new_id(prefix::SANDBOX_MESSAGE)),
        tenant_id: Set(scope.tenant_id().to_owned()),
        integration_id: Set(row.id.clone()),
        direction: Set("in".to_owned()),
        wamid: Set(wamid),
        body: Set(message.clone()),
        status: Set("sent".to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(scope.db())
    .await?;
    let webhook = envelope(&row, json!({"messages": [message]}));
    if let Err(e) = post_webhook(state, &row, &webhook).await {
        set_status(state, &rec.id, "failed").await?;
        return Err(e);
    }
    Ok(rec)
}

async fn set_status(state: &AppState, id: &str, status: &str) -> ApiResult<()> {
    sm::Entity::update_many()
        .col_expr(sm::Column::Status, Expr::value(status))
        .col_expr(sm::Column::UpdatedAt, Expr::value(now_ms()))
        .filter(sm::Column::Id.eq(id))
        .exec(state.store().db())
        .await?;
    Ok(())
}

/// A Graph API error in Meta's shape.
#[derive(Debug)]
pub struct GraphFault {
    pub status: u16,
    pub body: Value,
}

impl GraphFault {
    fn new(status: u16, code: i64, kind: &str, message: &str, details: Option<&str>) -> Self {
        let mut error = json!({
            "message": message,
            "type": kind,
            "code": code,
            "fbtrace_id": "ParleySandbox",
        });
        if let Some(d) = details {
            error["error_data"] = json!({"messaging_product": "whatsapp", "details": d});
        }
        Self {
            status,
            body: json!({ "error": error }),
        }
    }

    fn param(details: &str) -> Self {
        Self::new(
            400,
            100,
            "OAuthException",
            "(#100) Invalid parameter",
            Some(details),
        )
    }
}

impl From<ApiError> for GraphFault {
    fn from(e: ApiError) -> Self {
        tracing::error!(error = ?e, "sandbox Graph API");
        Self::new(500, 1, "OAuthException", "An unknown error occurred", None)
    }
}

impl From<sea_orm::DbErr> for GraphFault {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::from(e).into()
    }
}

/// The sandbox integration a Graph call is for, when the bearer token is its access token.
/// Like Meta, an unknown number and a wrong token look the same to the caller: 190.
pub async fn authorize(
    state: &AppState,
    phone_number_id: &str,
    bearer: Option<&str>,
) -> Result<wi::Model, GraphFault> {
    let invalid = || {
        GraphFault::new(
            401,
            190,
            "OAuthException",
            "Invalid OAuth access token - Cannot parse access token",
            None,
        )
    };
    let bearer = bearer.ok_or_else(invalid)?;
    if phone_number_id.len() > 64 {
        return Err(invalid());
    }
    let row = wi::Entity::find()
        .filter(wi::Column::Sandbox.eq(true))
        .filter(wi::Column::PhoneNumberId.eq(phone_number_id))
        .one(state.store().db())
        .await?
        .ok_or_else(invalid)?;
    let token = domain::access_token(state, &row)?.ok_or_else(invalid)?;
    if bool::from(token.expose_secret().as_bytes().ct_eq(bearer.as_bytes())) {
        Ok(row)
    } else {
        Err(invalid())
    }
}

/// What `GET /{phone-number-id}` answers for the sandbox's number.
pub fn phone_number(row: &wi::Model) -> Value {
    json!({
        "verified_name": "Parley Sandbox",
        "display_phone_number": format!("+{BUSINESS_DISPLAY_NUMBER}"),
        "id": row.phone_number_id,
        "quality_rating": "GREEN",
        "code_verification_status": "VERIFIED",
    })
}

/// Handles `POST /{phone-number-id}/messages`: a mark-read (with or without typing), or a
/// message for the phone. Answers Meta's response body.
pub async fn receive(state: &AppState, row: &wi::Model, body: Value) -> Result<Value, GraphFault> {
    if body["messaging_product"] != "whatsapp" {
        return Err(GraphFault::param(
            "The parameter messaging_product is required.",
        ));
    }
    let db = state.store().db();
    let now = now_ms();
    if body["status"] == "read" {
        let wamid = body["message_id"]
            .as_str()
            .ok_or_else(|| GraphFault::param("The parameter message_id is required."))?;
        let status = if body.get("typing_indicator").is_some() {
            "typing"
        } else {
            "read"
        };
        sm::Entity::update_many()
            .col_expr(sm::Column::Status, Expr::value(status))
            .col_expr(sm::Column::UpdatedAt, Expr::value(now))
            .filter(sm::Column::IntegrationId.eq(row.id.as_str()))
            .filter(sm::Column::Wamid.eq(wamid))
            .filter(sm::Column::Direction.eq("in"))
            .exec(db)
            .await?;
        return Ok(json!({"success": true}));
    }
    let to = body["to"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| GraphFault::param("The parameter to is required."))?;
    if to.trim_start_matches('+') != USER_WA_ID {
        // What Meta answers for a test number sending to someone not on its list.
        return Err(GraphFault::new(
            400,
            131030,
            "OAuthException",
            "(#131030) Recipient phone number not in allowed list",
            Some("Recipient phone number not in allowed list: the sandbox has one user"),
        ));
    }
    let kind = body["type"].as_str().unwrap_or("text");
    if body.get(kind).is_none_or(Value::is_null) {
        return Err(GraphFault::param(&format!(
            "The parameter {kind} is required."
        )));
    }
    let wamid = new_wamid()?;
    sm::ActiveModel {
        id: Set(new_id(prefix::SANDBOX_MESSAGE)),
        tenant_id: Set(row.tenant_id.clone()),
        integration_id: Set(row.id.clone()),
        direction: Set("out".to_owned()),
        wamid: Set(wamid.clone()),
        body: Set(body),
        status: Set("received".to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    // The phone got it: tell Parley, as Meta would, a moment after the send call returned.
    let (state2, row2, wamid2) = (state.clone(), row.clone(), wamid.clone());
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let ts = (now_ms() / 1000).to_string();
        let statuses: Vec<Value> = ["sent", "delivered"]
            .iter()
            .map(|s| {
                json!({
                    "id": wamid2, "status": s, "timestamp": ts, "recipient_id": USER_WA_ID,
                    "conversation": {"id": "sandbox", "origin": {"type": "service"}},
                    "pricing": {"billable": false, "pricing_model": "PMP", "category": "service"},
                })
            })
            .collect();
        let webhook = envelope(&row2, json!({"statuses": statuses}));
        if let Err(e) = post_webhook(&state2, &row2, &webhook).await {
            tracing::debug!(error = %e, "sandbox status webhook failed");
        }
    });
    Ok(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": USER_WA_ID}],
        "messages": [{"id": wamid, "message_status": "accepted"}],
    }))
}
