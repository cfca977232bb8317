//! WhatsApp integrations: callback URL, verify token, status, setup and initiate.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, QueryFilter, QueryOrder, QuerySelect,
};
use secrecy::SecretString;
use serde_json::json;

use crate::channels::whatsapp::graph::GraphError;
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, Level};
use crate::http::api::fields::secret_context;
use crate::ids::{new_id, prefix};
use crate::state::AppState;
use crate::store::TenantScope;
use crate::store::entities::{conversation, message, whatsapp_integration as wi};
use crate::time::now_ms;

/// WhatsApp's customer-service window: free-form messages only within 24 h of the user's last
/// message.
pub const SERVICE_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// Default `sessionDuration`: one day.
pub const DEFAULT_SESSION_MS: i64 = 24 * 60 * 60 * 1000;

/// Where Meta must send this integration's webhooks.
pub fn callback_url(public_url: &url::Url, id: &str) -> String {
    format!(
        "{}/api/v1/integration/whatsapp/{id}/callback",
        public_url.as_str().trim_end_matches('/')
    )
}

/// A fresh verify token: 192 bits from the OS CSPRNG, base64url (32 characters).
pub fn new_verify_token() -> ApiResult<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("no randomness: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored part of an integration's status. What the API shows is [`shown_status`].
pub mod status {
    /// Credentials changed (or new) and setup has not checked them yet.
    pub const NOT_VERIFIED: &str = "not_verified";
    /// Setup succeeded.
    pub const READY: &str = "ready";
    /// Setup failed; `statusMessage` says why.
    pub const SETUP_FAILED: &str = "setup_failed";
    /// Meta rejected the token (190): it expired or was revoked. Replace it and run setup.
    pub const TOKEN_INVALID: &str = "token_invalid";
    /// Shown (never stored) while phoneNumberId or accessToken is missing.
    pub const NEEDS_SETUP: &str = "needs_setup";
}

/// The status the API shows: missing credentials trump whatever was stored.
pub fn shown_status(row: &wi::Model) -> &str {
    if row.phone_number_id.is_none() || row.access_token.is_none() {
        status::NEEDS_SETUP
    } else {
        &row.status
    }
}

/// Things worth a warning on fetch.
pub fn warnings(row: &wi::Model) -> Vec<String> {
    let mut w = Vec::new();
    if row.allow_unsigned {
        w.push(
            "allowUnsigned is on: webhooks are accepted without a valid signature; use only for \
             local testing"
                .to_owned(),
        );
    } else if row.app_secret.is_none() {
        w.push("appSecret is not set: Parley refuses Meta's webhooks until it is".to_owned());
    }
    if row.bot_id.is_none() {
        w.push("no bot is linked: messages are stored but not answered".to_owned());
    }
    w
}

/// The integration's own reset commands (besides the defaults).
pub fn reset_commands(row: &wi::Model) -> Vec<String> {
    row.reset_commands
        .as_deref()
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

pub fn access_token_context(row: &wi::Model) -> String {
    secret_context(
        &row.tenant_id,
        "whatsapp_integration",
        &row.id,
        "access_token",
    )
}

pub fn app_secret_context(row: &wi::Model) -> String {
    secret_context(
        &row.tenant_id,
        "whatsapp_integration",
        &row.id,
        "app_secret",
    )
}

/// The integration's access token, opened.
pub fn access_token(state: &AppState, row: &wi::Model) -> ApiResult<Option<SecretString>> {
    row.access_token
        .as_ref()
        .map(|sealed| {
            state
                .vault()
                .open(sealed, &access_token_context(row))
                .map_err(ApiError::internal)
        })
        .transpose()
}

/// Both credentials, or 422 naming what is missing.
fn credentials(state: &AppState, row: &wi::Model) -> ApiResult<(String, SecretString)> {
    let token = access_token(state, row)?;
    match (row.phone_number_id.clone(), token) {
        (Some(p), Some(t)) => Ok((p, t)),
        (p, t) => {
            let mut missing = Vec::new();
            if p.is_none() {
                missing.push("phoneNumberId");
            }
            if t.is_none() {
                missing.push("accessToken");
            }
            Err(ApiError::unprocessable(format!(
                "the integration has no {}; set it and run setup",
                missing.join(" and no ")
            )))
        }
    }
}

/// What Meta's error means for someone setting up an integration.
fn describe_setup_error(e: &GraphError, phone_number_id: &str) -> String {
    match e {
        GraphError::Meta { error, .. } if error.code == 190 => format!(
            "Meta rejected the access token (error 190: {}). Generate a new token and update the integration.",
            error.explanation()
        ),
        GraphError::Meta { error, .. } if error.code == 100 => format!(
            "Meta does not accept phone number id {phone_number_id:?} with this token (error 100: {}). Check the id in Meta's WhatsApp Manager.",
            error.explanation()
        ),
        GraphError::Meta { error, .. } => {
            format!(
                "Meta answered error {}: {}",
                error.code,
                error.explanation()
            )
        }
        GraphError::Timeout(d) => format!(
            "Meta's Graph API did not answer within {} s; try again",
            d.as_secs_f32()
        ),
        GraphError::Transport(what) => format!("could not reach Meta's Graph API ({what})"),
        GraphError::Unexpected { status } => {
            format!("Meta's Graph API gave an unexpected answer (HTTP {status})")
        }
    }
}

/// Checks the credentials against the Graph API, records the outcome in the status and the
/// event log, and answers 422 with Meta's reason when they do not work.
pub async fn setup(state: &AppState, scope: &TenantScope, row: wi::Model) -> ApiResult<()> {
    let (phone_number_id, token) = match credentials(state, &row) {
        Ok(c) => c,
        Err(e) => {
            Event::new("whatsapp.setup.failed", Level::Error, e.to_string())
                .integration(&row.id)
                .data(json!({"reason": "missing credentials"}))
                .record(scope.db(), scope.tenant_id())
                .await?;
            return Err(e);
        }
    };
    let result = state
        .graph_for(&row)
        .phone_number(&phone_number_id, &token)
        .await;
    let id = row.id.clone();
    let mut am: wi::ActiveModel = row.into();
    am.updated_at = Set(now_ms());
    match result {
        Ok(number) => {
            let shown = number
                .display_phone_number
                .clone()
                .unwrap_or_else(|| number.id.clone());
            let message = match &number.verified_name {
                Some(name) => format!("connected to {shown} ({name})"),
                None => format!("connected to {shown}"),
            };
            am.status = Set(status::READY.to_owned());
            am.status_message = Set(Some(message.clone()));
            am.update(scope.db()).await?;
            Event::new("whatsapp.setup.succeeded", Level::Info, message)
                .integration(&id)
                .data(json!({
                    "displayPhoneNumber": number.display_phone_number,
                    "verifiedName": number.verified_name,
                    "qualityRating": number.quality_rating,
                }))
                .record(scope.db(), scope.tenant_id())
                .await?;
            Ok(())
        }
        Err(e) => {
            let message = describe_setup_error(&e, &phone_number_id);
            let stored = if e.meta_code() == Some(190) {
                status::TOKEN_INVALID
            } else {
                status::SETUP_FAILED
            };
            am.status = Set(stored.to_owned());
            am.status_message = Set(Some(message.clone()));
            am.update(scope.db()).await?;
            let data = match &e {
                GraphError::Meta { status, error } => json!({
                    "httpStatus": status, "code": error.code, "subcode": error.error_subcode,
                    "type": error.kind,
                }),
                GraphError::Timeout(_) => json!({"reason": "timeout"}),
                _ => json!({"reason": "transport"}),
            };
            Event::new("whatsapp.setup.failed", Level::Error, message.clone())
                .integration(&id)
                .data(data)
                .record(scope.db(), scope.tenant_id())
                .await?;
            Err(ApiError::unprocessable(message))
        }
    }
}

/// When the user `wa_id` last wrote to this integration, if ever.
pub async fn last_inbound_at(
    scope: &TenantScope,
    integration_id: &str,
    wa_id: &str,
) -> ApiResult<Option<(String, i64)>> {
    let conversations: Vec<String> = scope
        .select::<conversation::Entity>()
        .filter(conversation::Column::IntegrationId.eq(integration_id))
        .filter(conversation::Column::WaId.eq(wa_id))
        .select_only()
        .column(conversation::Column::Id)
        .into_tuple()
        .all(scope.db())
        .await?;
    if conversations.is_empty() {
        return Ok(None);
    }
    let last: Option<(String, i64)> = scope
        .select::<message::Entity>()
        .filter(message::Column::ConversationId.is_in(conversations))
        .filter(message::Column::Kind.eq("user"))
        .order_by_desc(message::Column::CreatedAt)
        .select_only()
        .column(message::Column::ConversationId)
        .column(message::Column::CreatedAt)
        .into_tuple()
        .one(scope.db())
        .await?;
    Ok(last)
}

/// Sends free-form text to `wa_id` inside the customer-service window. Outside it, answers 422
/// without calling Meta: only a template may open a conversation.
///
/// The message is stored (pending) before the call, then marked sent with its `wamid`, or failed
/// with Meta's error.
pub async fn initiate(
    state: &AppState,
    scope: &TenantScope,
    row: &wi::Model,
    wa_id: &str,
    text: &str,
) -> ApiResult<String> {
    let (phone_number_id, token) = credentials(state, row)?;
    let now = now_ms();
    let (conversation_id, last) = match last_inbound_at(scope, &row.id, wa_id).await? {
        Some((c, at)) if now - at < SERVICE_WINDOW_MS => (c, at),
        other => {
            let when = match other {
                Some((_, at)) => format!("last wrote {} hours ago", (now - at) / 3_600_000),
                None => "has never written to this number".to_owned(),
            };
            return Err(ApiError::unprocessable(format!(
                "+{wa_id} {when}: outside WhatsApp's 24-hour customer service window only an \
                 approved template message can be sent"
            )));
        }
    };
    tracing::debug!(last_inbound_at = last, "inside the service window");
    let id = new_id(prefix::MESSAGE);
    let part = message::ActiveModel {
        id: Set(id.clone()),
        tenant_id: Set(scope.tenant_id().to_owned()),
        conversation_id: Set(conversation_id.clone()),
        kind: Set("bot".to_owned()),
        text: Set(text.to_owned()),
        meta: Set(json!({"source": "initiate"})),
        wamid: Set(None),
        delivery_status: Set(Some("pending".to_owned())),
        error_code: Set(None),
        error_title: Set(None),
        turn_id: Set(None),
        part: Set(None),
        inbound_id: Set(None),
        input_tokens: Set(None),
        output_tokens: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(scope.db())
    .await?;
    // The engine's outbox: stored before the call, retried on rate limits and Meta's trouble,
    // failures recorded on the message and in the event log.
    let dest = crate::engine::outbox::Destination {
        tenant_id: scope.tenant_id(),
        integration_id: &row.id,
        phone_number_id: &phone_number_id,
        token: &token,
        wa_id,
        graph: &state.graph_for(row),
    };
    match crate::engine::outbox::send_part(state, &dest, &part).await? {
        Ok(_) => Ok(id),
        Err(e @ (GraphError::Timeout(_) | GraphError::Transport(_))) => {
            Err(ApiError::Unavailable(anyhow::anyhow!("Graph API: {e}")))
        }
        Err(e) => Err(ApiError::unprocessable(e.to_string())),
    }
}
