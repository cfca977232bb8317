//! What the model gets for an inbound message: its text, with media downloaded, stored and
//! turned into what the model can use, and structured messages (buttons, lists, flows,
//! locations, contacts, orders, replies) spelled out as text.
//!
//! The engine calls this in three places, and each keeps what it does small:
//! - at claim time, [`take_reactions`] records reactions against the message they react to;
//!   a reaction never starts a turn (the bot's `showReactions` puts it in the history);
//! - before the prompt transaction, [`prepare_turn`] does the slow part (downloads,
//!   transcription, document text) and gives each message its stored text, which the history
//!   re-uses from then on; [`link_files`] then ties the files to the stored messages, and
//!   [`canned_reply`] answers a turn of unsupported messages without the model;
//! - when asking the model, [`vision`] decides who sees images, and [`current_content`] adds
//!   the image parts of the current turn's messages.

use std::fmt::Write as _;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QuerySelect,
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::channels::whatsapp::webhook::{Interactive, Media, Message, MessageContent};
use crate::error::ApiResult;
use crate::events::{Event, Level};
use crate::files::FileLink;
use crate::ids::{new_id, prefix};
use crate::llm::provider::ContentPart;
use crate::media::{MediaKind, Transcriber};
use crate::state::AppState;
use crate::store::entities::{
    bot, file, inbound_message as inbound, message, provider, whatsapp_integration as wi,
};
use crate::time::now_ms;

/// Longest quote of a replied-to message the model is shown.
const QUOTE_CHARS: usize = 500;

/// One inbound message, ready to be stored as the user's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub inbound_id: String,
    /// The user's text as stored (and re-used as history): captions, transcripts, document
    /// text and structured messages spelled out.
    pub text: String,
    /// Stored as the message's `meta`: `type`, and `fileIds`, `transcript` when there are.
    pub meta: Value,
    /// WhatsApp could not forward the message (`unsupported`).
    pub unsupported: bool,
}

/// Prepares each claimed message of a turn, in order. Reads the integration's bot and provider
/// once. Never fails on a message's content: what cannot be downloaded or read becomes a note.
pub async fn prepare_turn(
    state: &AppState,
    integration: &wi::Model,
    claimed: &[inbound::Model],
) -> ApiResult<Vec<Prepared>> {
    // The provider is only read when there is audio to transcribe: most turns are text.
    let audio = integration.attachments && claimed.iter().any(|m| m.kind == "audio");
    let transcriber = match (&integration.bot_id, audio) {
        (Some(bot_id), true) => transcriber(state, &integration.tenant_id, bot_id).await,
        _ => None,
    };
    let mut out = Vec::with_capacity(claimed.len());
    for row in claimed {
        out.push(prepare(state, integration, transcriber.as_ref(), row).await?);
    }
    Ok(out)
}

/// Prepares one stored inbound message.
pub async fn prepare(
    state: &AppState,
    integration: &wi::Model,
    transcriber: Option<&Transcriber>,
    row: &inbound::Model,
) -> ApiResult<Prepared> {
    let payload: Value = serde_json::from_str(&row.payload).unwrap_or_default();
    let Some(msg) = Message::from_value(payload["message"].clone()) else {
        return Ok(Prepared {
            inbound_id: row.id.clone(),
            text: format!(
                "[the user sent {} {} message]",
                article(&row.kind),
                row.kind
            ),
            meta: json!({"type": row.kind}),
            unsupported: false,
        });
    };
    let mut meta = json!({"type": msg.kind});
    let body = match (&msg.content, MediaKind::from_type(&msg.kind)) {
        (
            MessageContent::Image(media)
            | MessageContent::Audio(media)
            | MessageContent::Video(media)
            | MessageContent::Document(media)
            | MessageContent::Sticker(media),
            Some(kind),
        ) => media_text(state, integration, transcriber, row, kind, media, &mut meta).await?,
        _ => structured_text(&msg),
    };
    let quoted = match msg.context.as_ref().and_then(|c| c.id.as_deref()) {
        Some(wamid) => Some(quoted_text(state, &row.tenant_id, wamid).await?),
        None => None,
    };
    let mut text = String::new();
    if msg.context.as_ref().is_some_and(|c| c.forwarded) {
        text.push_str("[forwarded] ");
    }
    match quoted {
        Some(Some(q)) => {
            let _ = write!(text, "[replying to: \"{q}\"] ");
        }
        Some(None) => text.push_str("[replying to an earlier message] "),
        None => {}
    }
    text.push_str(&body);
    Ok(Prepared {
        inbound_id: row.id.clone(),
        text,
        meta,
        unsupported: matches!(msg.content, MessageContent::Unsupported),
    })
}

/// The text of a message that carries no media: what the user typed, or the structured
/// content spelled out so the model can act on it. Button and list replies keep both the
/// stable id (which the bot's instructions can rely on) and the title the user saw.
pub fn structured_text(msg: &Message) -> String {
    match &msg.content {
        MessageContent::Text { body } => body.clone(),
        MessageContent::Button { payload, text } => match payload {
            Some(p) => format!("[tapped the button \"{text}\" (id: {p})]"),
            None => format!("[tapped the button \"{text}\"]"),
        },
        MessageContent::Interactive(Interactive::ButtonReply { id, title }) => {
            format!("[tapped the button \"{title}\" (id: {id})]")
        }
        MessageContent::Interactive(Interactive::ListReply {
            id,
            title,
            description,
        }) => match description {
            Some(d) => format!("[chose \"{title}\" (id: {id}) from the list: {d}]"),
            None => format!("[chose \"{title}\" (id: {id}) from the list]"),
        },
        MessageContent::Interactive(Interactive::NfmReply {
            name,
            body,
            response_json,
        }) => {
            let mut fields = response_json
                .as_deref()
                .and_then(|j| serde_json::from_str::<Value>(j).ok())
                .unwrap_or(Value::Null);
            // The flow token identifies the flow to Meta; it means nothing to the model.
            if let Some(map) = fields.as_object_mut() {
                map.remove("flow_token");
            }
            let form = name.as_deref().unwrap_or("flow");
            let mut s = format!("[filled in the form \"{form}\"");
            if let Some(b) = body.as_deref().filter(|b| !b.is_empty()) {
                let _ = write!(s, " ({b})");
            }
            if !fields.is_null() {
                let _ = write!(s, ": {}", cut(&fields.to_string(), 4000));
            }
            s.push(']');
            s
        }
        MessageContent::Interactive(Interactive::Other(v)) => {
            let kind = v["type"].as_str().unwrap_or("interactive");
            format!("[the user answered an interactive message ({kind})]")
        }
        MessageContent::Location(l) => {
            let mut s = String::from("[shared a location: ");
            let place: Vec<&str> = [l.name.as_deref(), l.address.as_deref()]
                .into_iter()
                .flatten()
                .filter(|p| !p.is_empty())
                .collect();
            if !place.is_empty() {
                let _ = write!(s, "{}, ", place.join(", "));
            }
            let _ = write!(s, "latitude {}, longitude {}]", l.latitude, l.longitude);
            s
        }
        MessageContent::Contacts(cards) => {
            let people: Vec<String> = cards.iter().map(contact_card).collect();
            format!("[shared contacts: {}]", people.join("; "))
        }
        MessageContent::Order(order) => order_text(order),
        MessageContent::Reaction { message_id, emoji } => match emoji {
            Some(e) => format!("[reacted {e} to message {message_id}]"),
            None => format!("[removed their reaction from message {message_id}]"),
        },
        MessageContent::Unsupported => {
            let what = msg.raw["unsupported"]["type"]
                .as_str()
                .map_or_else(String::new, |t| format!(" ({t})"));
            format!("[the user sent a kind of message WhatsApp cannot pass on{what}]")
        }
        // Media without its object (malformed), system notices, referrals, edits...
        _ => format!(
            "[the user sent {} {} message]",
            article(&msg.kind),
            msg.kind
        ),
    }
}

fn contact_card(card: &Value) -> String {
    let name = card["name"]["formatted_name"]
        .as_str()
        .or_else(|| card["name"]["first_name"].as_str())
        .unwrap_or("unnamed");
    let phones: Vec<String> = card["phones"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let phone = p["phone"].as_str().or_else(|| p["wa_id"].as_str())?;
            Some(match p["type"].as_str() {
                Some(t) => format!("{phone} ({})", t.to_lowercase()),
                None => phone.to_owned(),
            })
        })
        .collect();
    let emails: Vec<&str> = card["emails"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["email"].as_str())
        .collect();
    let mut s = name.to_owned();
    let details: Vec<String> = phones
        .into_iter()
        .chain(emails.into_iter().map(str::to_owned))
        .collect();
    if !details.is_empty() {
        let _ = write!(s, ": {}", details.join(", "));
    }
    s
}

fn order_text(order: &Value) -> String {
    let mut lines = Vec::new();
    let mut totals: Vec<(String, f64)> = Vec::new();
    for item in order["product_items"].as_array().into_iter().flatten() {
        let id = item["product_retailer_id"].as_str().unwrap_or("item");
        let qty = item["quantity"].as_f64().unwrap_or(1.0);
        let price = item["item_price"].as_f64();
        let currency = item["currency"].as_str().unwrap_or("").to_owned();
        match price {
            Some(p) => {
                lines.push(format!("{qty} × {id} at {p} {currency}"));
                match totals.iter_mut().find(|(c, _)| *c == currency) {
                    Some((_, t)) => *t += qty * p,
                    None => totals.push((currency, qty * p)),
                }
            }
            None => lines.push(format!("{qty} × {id}")),
        }
    }
    let mut s = String::from("[placed an order");
    if let Some(c) = order["catalog_id"].as_str() {
        let _ = write!(s, " from catalog {c}");
    }
    let _ = write!(s, ": {}", lines.join("; "));
    if !totals.is_empty() {
        let t: Vec<String> = totals
            .iter()
            .map(|(c, t)| format!("{t} {c}").trim().to_owned())
            .collect();
        let _ = write!(s, "; total {}", t.join(" + "));
    }
    s.push(']');
    if let Some(note) = order["text"].as_str().filter(|t| !t.trim().is_empty()) {
        let _ = write!(s, " {note}");
    }
    s
}

/// The stored text of the message with this wamid (ours or the user's), cut for quoting.
/// `None` when it is not among the stored messages.
async fn quoted_text(state: &AppState, tenant_id: &str, wamid: &str) -> ApiResult<Option<String>> {
    let scope = state.store().scope(tenant_id);
    let found = scope
        .select::<message::Entity>()
        .filter(message::Column::Wamid.eq(wamid))
        .one(scope.db())
        .await?;
    Ok(found.map(|m| cut(&m.text, QUOTE_CHARS)))
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// The text of a media message, after downloading and storing the item when the integration
/// has `attachments` on. Files are recorded in `meta.fileIds`.
async fn media_text(
    state: &AppState,
    integration: &wi::Model,
    transcriber: Option<&Transcriber>,
    row: &inbound::Model,
    kind: MediaKind,
    media: &Media,
    meta: &mut Value,
) -> ApiResult<String> {
    let caption = media
        .caption
        .as_deref()
        .filter(|c| !c.trim().is_empty())
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    let noun = match (kind, media.voice) {
        (MediaKind::Audio, Some(true)) => "voice message",
        (MediaKind::Audio, _) => "audio message",
        (k, _) => k.as_str(),
    };
    if !integration.attachments {
        return Ok(format!(
            "[the user sent {} {noun}, which you cannot see: attachments are off]{caption}",
            article(noun)
        ));
    }
    let f = match stored_or_download(state, integration, row, kind, media).await? {
        Ok(f) => f,
        Err(why) => {
            Event::new(
                "whatsapp.media.failed",
                Level::Warning,
                format!("a {noun} could not be downloaded: {why}"),
            )
            .integration(&integration.id)
            .data(json!({"inboundId": row.id, "wamid": row.wamid, "type": kind.as_str()}))
            .record(state.store().db(), &row.tenant_id)
            .await?;
            return Ok(format!(
                "[the user sent {} {noun}, but it could not be downloaded]{caption}",
                article(noun)
            ));
        }
    };
    meta["fileIds"] = json!([f.id]);
    Ok(match kind {
        MediaKind::Image | MediaKind::Sticker => format!("[{noun}]{caption}"),
        MediaKind::Video => format!("[video, which you cannot watch]{caption}"),
        MediaKind::Audio => match transcript(state, &integration.id, transcriber, f).await? {
            Some(t) => {
                meta["transcript"] = json!(t);
                format!("[{noun}, transcribed] {t}")
            }
            None => format!(
                "[the user sent {} {noun}, which cannot be transcribed here]{caption}",
                article(noun)
            ),
        },
        MediaKind::Document => document(state, &f, &caption).await?,
    })
}

fn article(noun: &str) -> &'static str {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The message's file: the one stored by an earlier attempt at this turn, or a fresh download.
/// The inner `Err` says why there is none.
async fn stored_or_download(
    state: &AppState,
    integration: &wi::Model,
    row: &inbound::Model,
    kind: MediaKind,
    media: &Media,
) -> ApiResult<Result<file::Model, String>> {
    if let Some(f) = crate::files::for_inbound(state, &row.tenant_id, &row.id)
        .await?
        .into_iter()
        .next()
    {
        return Ok(Ok(f));
    }
    let Some(media_id) = &media.id else {
        return Ok(Err("the message has no media id".to_owned()));
    };
    let Some(token) = crate::integrations::whatsapp::access_token(state, integration)? else {
        return Ok(Err("the integration has no access token".to_owned()));
    };
    let limits = &state.settings().media;
    let allowed = |mime: &str| crate::media::type_allowed(&limits.types, mime);
    let download = state
        .graph()
        .download_media(media_id, &token, kind.max_bytes(limits), &allowed)
        .await;
    let d = match download {
        Ok(d) => d,
        // Meta's error texts name no secrets; sizes and types are ours.
        Err(e) => return Ok(Err(e.to_string())),
    };
    let name = media
        .filename
        .clone()
        .unwrap_or_else(|| format!("{}{}", kind.as_str(), extension(&d.mime_type)));
    let f = crate::files::store(
        state,
        &row.tenant_id,
        &d.bytes,
        &d.mime_type,
        Some(&name),
        &FileLink {
            inbound_id: Some(&row.id),
            meta: Some(json!({"source": "whatsapp", "type": kind.as_str(), "wamid": row.wamid})),
            ..FileLink::default()
        },
    )
    .await?;
    Ok(Ok(f))
}

fn extension(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or_default().trim() {
        "image/jpeg" => ".jpg",
        "image/png" => ".png",
        "image/webp" => ".webp",
        "audio/ogg" => ".ogg",
        "audio/mpeg" => ".mp3",
        "audio/mp4" | "audio/aac" => ".m4a",
        "audio/amr" => ".amr",
        "video/mp4" => ".mp4",
        "video/3gpp" => ".3gp",
        "application/pdf" => ".pdf",
        "text/plain" => ".txt",
        _ => "",
    }
}

/// The transcript of an audio file: kept in the file's meta, so a resumed turn does not pay
/// for it twice. `None` without a transcription model or when transcription fails (logged).
async fn transcript(
    state: &AppState,
    integration_id: &str,
    transcriber: Option<&Transcriber>,
    f: file::Model,
) -> ApiResult<Option<String>> {
    if let Some(t) = f.meta["transcript"].as_str() {
        return Ok(Some(t.to_owned()));
    }
    let Some(transcriber) = transcriber else {
        return Ok(None);
    };
    let tenant_id = f.tenant_id.clone();
    let (f, audio) = crate::files::read(state, &tenant_id, &f.id).await?;
    match transcriber
        .transcribe(state.llm_http(), audio, &f.mime_type)
        .await
    {
        Ok(text) if !text.is_empty() => {
            let mut meta = f.meta.clone();
            meta["transcript"] = json!(text);
            crate::files::set_meta(state, f, meta).await?;
            Ok(Some(text))
        }
        Ok(_) => Ok(None),
        Err(e) => {
            Event::new(
                "bot.transcription.failed",
                Level::Warning,
                format!("a voice message could not be transcribed: {e}"),
            )
            .integration(integration_id)
            .data(json!({"fileId": f.id}))
            .record(state.store().db(), &tenant_id)
            .await?;
            Ok(None)
        }
    }
}

/// A document's text for the model, bounded by `PARLEY_DOCUMENT_TEXT_CHARS`.
async fn document(state: &AppState, f: &file::Model, caption: &str) -> ApiResult<String> {
    let name = f.name.clone().unwrap_or_else(|| "document".to_owned());
    let (_, bytes) = crate::files::read(state, &f.tenant_id, &f.id).await?;
    let max = state.settings().media.document_text_chars;
    let mime = f.mime_type.clone();
    let text = tokio::task::spawn_blocking(move || crate::media::document_text(&mime, &bytes, max))
        .await
        .map_err(crate::error::ApiError::internal)?;
    Ok(match text {
        Some(d) => {
            let more = if d.truncated {
                "\n[the rest of the document was cut]"
            } else {
                ""
            };
            format!(
                "[document \"{name}\"]{caption}\n<document name=\"{name}\">\n{}{more}\n</document>",
                d.text
            )
        }
        None => format!(
            "[the user sent a document \"{name}\" ({}), whose text cannot be read here]{caption}",
            f.mime_type
        ),
    })
}

/// The bot's speech-to-text: its provider's `transcriptionModel`, on an OpenAI-compatible
/// provider.
async fn transcriber(state: &AppState, tenant_id: &str, bot_id: &str) -> Option<Transcriber> {
    let scope = state.store().scope(tenant_id);
    let bot = scope.find::<bot::Entity>(bot_id).await.ok()?;
    let row = scope
        .find::<provider::Entity>(bot.provider_id.as_deref()?)
        .await
        .ok()?;
    let model = row.transcription_model.clone()?;
    if row.kind != "openai" {
        return None;
    }
    Some(Transcriber {
        base_url: row.base_url.clone(),
        api_key: provider_key(state, &row),
        model,
        timeout: state.settings().llm_timeout,
    })
}

fn provider_key(state: &AppState, row: &provider::Model) -> Option<SecretString> {
    let sealed = row.api_key.as_ref()?;
    let context =
        crate::http::api::fields::secret_context(&row.tenant_id, "provider", &row.id, "api_key");
    match state.vault().open(sealed, &context) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(error = %e, provider_id = %row.id, "cannot open the provider's key");
            None
        }
    }
}

/// Ties the files of the stored messages to them and their conversation. Runs in the prompt
/// transaction, after the user messages are inserted.
pub async fn link_files<C: ConnectionTrait>(
    conn: &C,
    tenant_id: &str,
    conversation_id: &str,
    prepared: &[Prepared],
) -> ApiResult<()> {
    for p in prepared.iter().filter(|p| p.meta.get("fileIds").is_some()) {
        let message_id: Option<String> = message::Entity::find()
            .filter(message::Column::InboundId.eq(p.inbound_id.as_str()))
            .select_only()
            .column(message::Column::Id)
            .into_tuple()
            .one(conn)
            .await?;
        file::Entity::update_many()
            .col_expr(file::Column::ConversationId, Expr::value(conversation_id))
            .col_expr(file::Column::MessageId, Expr::value(message_id))
            .col_expr(file::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(file::Column::TenantId.eq(tenant_id))
            .filter(file::Column::InboundId.eq(p.inbound_id.as_str()))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// The answer to a turn made only of messages WhatsApp could not pass on: the model has
/// nothing to read, so the user is told what works instead.
pub fn canned_reply(prepared: &[Prepared], attachments: bool) -> Option<String> {
    if prepared.is_empty() || !prepared.iter().all(|p| p.unsupported) {
        return None;
    }
    let media = if attachments {
        "photos, voice messages, documents, "
    } else {
        ""
    };
    Some(format!(
        "Sorry, I can't read that kind of message. I understand text, {media}locations, \
         contacts and taps on buttons and lists."
    ))
}

/// Who looks at the images of a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vision {
    /// The bot's own model takes images (the bot's `vision`).
    Own,
    /// The provider's `visionModel` answers turns that have images.
    Model(String),
    /// Nobody: the model is told an image arrived that it cannot see.
    None,
}

/// Whether and how the bot sees images.
pub async fn vision(state: &AppState, bot: &bot::Model) -> Vision {
    if bot.vision {
        return Vision::Own;
    }
    let Some(provider_id) = bot.provider_id.as_deref() else {
        return Vision::None;
    };
    match state
        .store()
        .scope(&bot.tenant_id)
        .find::<provider::Entity>(provider_id)
        .await
    {
        Ok(p) => p
            .vision_model
            .filter(|m| !m.trim().is_empty())
            .map_or(Vision::None, Vision::Model),
        Err(_) => Vision::None,
    }
}

/// Whether a stored user message came with an image the model could be shown.
pub fn has_image(m: &message::Model) -> bool {
    m.meta["fileIds"].as_array().is_some_and(|f| !f.is_empty())
        && matches!(m.meta["type"].as_str(), Some("image" | "sticker"))
}

/// The content of one of the current turn's user messages: its stored text, and its image
/// when `images` (else a note that the image cannot be seen).
pub async fn current_content(
    state: &AppState,
    m: &message::Model,
    images: bool,
) -> ApiResult<Vec<ContentPart>> {
    let text = ContentPart::Text(m.text.clone());
    if !has_image(m) {
        return Ok(vec![text]);
    }
    if !images {
        return Ok(vec![ContentPart::Text(format!(
            "{}\n[you cannot see images, so you cannot see this one]",
            m.text
        ))]);
    }
    let mut parts = vec![text];
    for id in m.meta["fileIds"].as_array().into_iter().flatten() {
        let Some(id) = id.as_str() else { continue };
        match crate::files::read(state, &m.tenant_id, id).await {
            Ok((f, data)) if f.mime_type.starts_with("image/") => {
                parts.push(ContentPart::Image {
                    mime_type: f
                        .mime_type
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                    data,
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, file_id = id, "an image could not be read"),
        }
    }
    Ok(parts)
}

/// Records the reactions among `waiting` and returns the other messages. A reaction is stored
/// on the message it reacts to (`meta.reaction`); with the bot's `showReactions`, it is also
/// added to that conversation as a user message, so the model sees it in the next turn's
/// history. Either way it is processed here and never starts a turn of its own.
pub async fn take_reactions(
    state: &AppState,
    tenant_id: &str,
    integration_id: &str,
    waiting: Vec<inbound::Model>,
) -> ApiResult<Vec<inbound::Model>> {
    let (reactions, rest): (Vec<_>, Vec<_>) =
        waiting.into_iter().partition(|m| m.kind == "reaction");
    if reactions.is_empty() {
        return Ok(rest);
    }
    let db = state.store().db();
    let scope = state.store().scope(tenant_id);
    let bot_id = scope
        .find::<wi::Entity>(integration_id)
        .await
        .ok()
        .and_then(|i| i.bot_id);
    let show = match bot_id {
        Some(id) => scope
            .find::<bot::Entity>(&id)
            .await
            .is_ok_and(|b| b.show_reactions),
        None => false,
    };
    for r in reactions {
        let msg = serde_json::from_str::<Value>(&r.payload)
            .ok()
            .and_then(|v| Message::from_value(v["message"].clone()));
        if let Some(Message {
            content: MessageContent::Reaction { message_id, emoji },
            ..
        }) = &msg
        {
            record_reaction(state, &r, message_id, emoji.as_deref(), show).await?;
        }
        let now = now_ms();
        let txn = crate::store::begin_write(db).await?;
        inbound::Entity::update_many()
            .col_expr(inbound::Column::State, Expr::value("processed"))
            .col_expr(inbound::Column::UpdatedAt, Expr::value(now))
            .filter(inbound::Column::Id.eq(r.id.as_str()))
            .filter(inbound::Column::TurnId.is_null())
            .exec(&txn)
            .await?;
        txn.commit().await?;
    }
    Ok(rest)
}

async fn record_reaction(
    state: &AppState,
    r: &inbound::Model,
    target_wamid: &str,
    emoji: Option<&str>,
    show: bool,
) -> ApiResult<()> {
    let scope = state.store().scope(&r.tenant_id);
    let Some(target) = scope
        .select::<message::Entity>()
        .filter(message::Column::Wamid.eq(target_wamid))
        .one(scope.db())
        .await?
    else {
        // A reaction to a message we never stored (sent before Parley, say): nothing to tie it to.
        return Ok(());
    };
    let now = now_ms();
    let txn = crate::store::begin_write(scope.db()).await?;
    let mut meta = target.meta.clone();
    if !meta.is_object() {
        meta = json!({});
    }
    meta["reaction"] = match emoji {
        Some(e) => json!({"emoji": e, "at": now, "wamid": r.wamid}),
        None => Value::Null,
    };
    if let Some(map) = meta.as_object_mut()
        && emoji.is_none()
    {
        map.remove("reaction");
    }
    let quoted = cut(&target.text, QUOTE_CHARS);
    let conversation_id = target.conversation_id.clone();
    let mut am: message::ActiveModel = target.into();
    am.meta = Set(meta);
    am.updated_at = Set(now);
    am.update(&txn).await?;
    if show {
        let text = match emoji {
            Some(e) => format!("[reacted {e} to: \"{quoted}\"]"),
            None => format!("[removed their reaction from: \"{quoted}\"]"),
        };
        crate::store::execute(
            &txn,
            "INSERT INTO message (id, tenant_id, conversation_id, kind, text, meta, wamid, \
             inbound_id, created_at, updated_at) VALUES (?, ?, ?, 'user', ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (inbound_id) DO NOTHING",
            [
                new_id(prefix::MESSAGE).into(),
                r.tenant_id.clone().into(),
                conversation_id.into(),
                text.into(),
                json!({"type": "reaction"}).into(),
                r.wamid.clone().into(),
                r.id.clone().into(),
                now.into(),
                now.into(),
            ],
        )
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_message(name: &str) -> Message {
        let raw = std::fs::read_to_string(format!(
            "{}/../shared/fixtures/webhook/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        let v: Value = serde_json::from_str(&raw).unwrap();
        Message::from_value(v["entry"][0]["changes"][0]["value"]["messages"][0].clone()).unwrap()
    }

    #[test]
    fn structured_messages_are_spelled_out_with_ids_and_titles() {
        let cases = [
            ("text", vec!["Body Text"]),
            ("button_quick_reply", vec!["\"title\"", "id: callback_data"]),
            (
                "interactive_button_reply",
                vec!["tapped the button", "id: "],
            ),
            (
                "interactive_list_reply_description",
                vec!["chose \"title\"", "id: callback_data", "description"],
            ),
            (
                "interactive_nfm_reply",
                vec![
                    "filled in the form \"flow\"",
                    "Comment Text",
                    "delivery_rating",
                ],
            ),
            (
                "location_named",
                vec![
                    "Facebook HQ",
                    "1 Hacker Way, Menlo Park, CA 94025",
                    "latitude 37.4611978",
                    "longitude -122.2164385",
                ],
            ),
            (
                "contacts",
                vec![
                    "Chandler Bing: +1 555-555-5555 (cell)",
                    "Monica",
                    "Rachel Green",
                ],
            ),
            (
                "order",
                vec![
                    "catalog 354160437058781",
                    "3 × HAMBURGER at 30 ILS",
                    "2 × SODA at 10 ILS",
                    "total 180 ILS",
                ],
            ),
            ("unsupported_with_type", vec!["cannot pass on (pool)"]),
            ("message_edited", vec!["[the user sent an edit message]"]),
        ];
        for (name, wanted) in cases {
            let text = structured_text(&fixture_message(name));
            for w in wanted {
                assert!(text.contains(w), "{name}: {w:?} not in {text:?}");
            }
        }
        // The flow token is Meta's, not the user's.
        assert!(!structured_text(&fixture_message("interactive_nfm_reply")).contains("flow_token"));
    }

    #[test]
    fn a_turn_of_unsupported_messages_gets_a_canned_reply_naming_what_works() {
        let p = |unsupported| Prepared {
            inbound_id: "inb_1".into(),
            text: String::new(),
            meta: json!({}),
            unsupported,
        };
        let reply = canned_reply(&[p(true)], true).unwrap();
        assert!(reply.contains("voice messages") && reply.contains("locations"));
        assert!(!canned_reply(&[p(true)], false).unwrap().contains("voice"));
        assert!(canned_reply(&[p(true), p(false)], true).is_none());
        assert!(canned_reply(&[], true).is_none());
    }

    #[test]
    fn quotes_are_cut_on_character_boundaries() {
        assert_eq!(cut("héllo", 10), "héllo");
        assert_eq!(cut("héllo", 2), "hé…");
    }
}
