//! The tools a bot's model may call during a turn to answer in native WhatsApp: reply buttons,
//! lists, location requests, locations, media, reactions, interim progress texts and saving what
//! the user tells about themselves.
//!
//! Each tool is defined once ([`specs`]) and reaches both vendors through the provider
//! abstraction (OpenAI `tools`, Anthropic `tool_use`). [`prepare`] checks a call's arguments
//! against WhatsApp's documented limits (`shared/fixtures/limits.md`) and turns it into an
//! [`Action`]: a Cloud API message body, a progress text, or contact fields. It is pure, so the
//! limits are table-tested here. Free text that is too long is cut ([`cut`]); anything the model
//! must decide itself (too many buttons, an id too long, a missing field, duplicate titles) comes
//! back as a [`ToolError`], which the engine gives to the model as the tool's result so that it
//! can correct the call.
//!
//! Bodies are built without `to`; the outbox adds the recipient when it sends.

use std::collections::HashSet;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use crate::channels::whatsapp::graph::GraphClient;
use crate::conversation::format::{WHATSAPP_TEXT_LIMIT, to_whatsapp};
use crate::llm::provider::{ToolCall, ToolSpec};
use crate::state::AppState;
use crate::store::entities::contact;
use crate::time::now_ms;

// WhatsApp's limits, in characters (limits.md rows in brackets).
const BUTTONS_MAX: usize = 3; // [2]
const BUTTON_TITLE_MAX: usize = 20; // [3]
const BUTTON_ID_MAX: usize = 256; // [4]
const INTERACTIVE_BODY_MAX: usize = 1024; // [5]
const FOOTER_MAX: usize = 60; // [6], [16]
const HEADER_MAX: usize = 60; // [7]
const LIST_SECTIONS_MAX: usize = 10; // [8]
const LIST_ROWS_MAX: usize = 10; // [9]
const LIST_BUTTON_MAX: usize = 20; // [10]
const ROW_TITLE_MAX: usize = 24; // [11]
const ROW_DESCRIPTION_MAX: usize = 72; // [12]
const ROW_ID_MAX: usize = 200; // [13]
const SECTION_TITLE_MAX: usize = 24; // [14]
/// [15]: the current doc says 4096 for list bodies, older pages 1024. The lower value is safe
/// under both, and a list's body is a prompt, not an essay.
const LIST_BODY_MAX: usize = 1024;
const CAPTION_MAX: usize = 1024; // [17]
const IMAGE_BYTES_MAX: usize = 5 * 1024 * 1024; // [23]
const DOCUMENT_BYTES_MAX: usize = 100 * 1024 * 1024; // [22]
/// Meta documents no limit for a location's name and address or a document's file name; these
/// keep a confused model from sending pages of text in them.
const LOCATION_TEXT_MAX: usize = 256;
const FILENAME_MAX: usize = 240;
/// Contact fields are stored, not sent; they are bounded like other API strings.
const CONTACT_FIELD_MAX: usize = 500;
const CONTACT_OTHER_MAX: usize = 20;

pub const SEND_BUTTONS: &str = "send_buttons";
pub const SEND_LIST: &str = "send_list";
pub const REQUEST_LOCATION: &str = "request_location";
pub const SEND_LOCATION: &str = "send_location";
pub const SEND_MEDIA: &str = "send_media";
pub const REACT: &str = "react";
pub const REPORT_PROGRESS: &str = "report_progress";
pub const COLLECT_CONTACT: &str = "collect_contact";

/// What the tools may use of the turn they run in.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The integration's `contactCollection`: `collect_contact` is offered only when on.
    pub contact_collection: bool,
    /// The wamid of the user's newest message in the turn, which `react` reacts to.
    pub reply_to: Option<&'a str>,
}

/// An argument problem, phrased for the model: it gets this text as the tool's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError(pub String);

impl ToolError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a valid call does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A message to send: its Cloud API body (without `to`) and a one-line summary for the
    /// conversation's transcript.
    Message { body: Value, summary: String },
    /// An image or document whose body needs its source resolved first ([`resolve_media`]).
    Media(MediaRequest),
    /// An interim text, sent before the turn goes on.
    Progress(String),
    /// Fields to save on the contact.
    Contact(ContactFields),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Document,
}

impl MediaKind {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Document => "document",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// A public https URL Meta fetches itself.
    Link(String),
    /// A file stored in Parley, uploaded to Meta's media API before sending.
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRequest {
    pub kind: MediaKind,
    pub source: MediaSource,
    pub caption: Option<String>,
    pub filename: Option<String>,
}

/// What `collect_contact` saves. `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactFields {
    pub name: Option<String>,
    pub email: Option<String>,
    pub nick: Option<String>,
    pub description: Option<String>,
    pub preferences: Option<String>,
    /// Anything else (company, city...), merged into the contact's `meta`.
    pub other: Map<String, Value>,
}

impl ContactFields {
    /// The names of the fields set, for the tool's result.
    pub fn saved(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            ("name", &self.name),
            ("email", &self.email),
            ("nick", &self.nick),
            ("description", &self.description),
            ("preferences", &self.preferences),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.to_owned())
        .collect();
        out.extend(self.other.keys().cloned());
        out
    }
}

/// The tools offered in a turn: all of them, `collect_contact` only when the integration
/// collects contacts, `react` only when there is a message to react to.
pub fn specs(ctx: &Context<'_>) -> Vec<ToolSpec> {
    let spec = |name: &str, description: &str, parameters: Value| ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters,
    };
    let text_fields = json!({
        "header": {"type": "string", "description": format!("Optional title line, at most {HEADER_MAX} characters.")},
        "footer": {"type": "string", "description": format!("Optional small print under the body, at most {FOOTER_MAX} characters.")},
    });
    let mut buttons_props = json!({
        "body": {"type": "string", "description": format!("The message text, at most {INTERACTIVE_BODY_MAX} characters.")},
        "buttons": {
            "type": "array", "minItems": 1, "maxItems": BUTTONS_MAX,
            "description": "The reply buttons. The user's tap comes back as a message with the button's title.",
            "items": {"type": "object", "properties": {
                "id": {"type": "string", "description": format!("Stable id you will see when it is tapped, at most {BUTTON_ID_MAX} characters; defaults to the title.")},
                "title": {"type": "string", "description": format!("Button label, at most {BUTTON_TITLE_MAX} characters, unique in the message.")},
            }, "required": ["title"]},
        },
    });
    merge(&mut buttons_props, &text_fields);
    let mut list_props = json!({
        "body": {"type": "string", "description": format!("The message text, at most {LIST_BODY_MAX} characters.")},
        "button": {"type": "string", "description": format!("Label of the button that opens the list, at most {LIST_BUTTON_MAX} characters.")},
        "sections": {
            "type": "array", "minItems": 1, "maxItems": LIST_SECTIONS_MAX,
            "description": format!("Sections of rows; at most {LIST_ROWS_MAX} rows in all sections together. With more than one section each needs a title."),
            "items": {"type": "object", "properties": {
                "title": {"type": "string", "description": format!("Section title, at most {SECTION_TITLE_MAX} characters.")},
                "rows": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
                    "id": {"type": "string", "description": format!("Stable id you will see when it is picked, at most {ROW_ID_MAX} characters; defaults to the title.")},
                    "title": {"type": "string", "description": format!("Row title, at most {ROW_TITLE_MAX} characters.")},
                    "description": {"type": "string", "description": format!("Optional second line, at most {ROW_DESCRIPTION_MAX} characters.")},
                }, "required": ["title"]}},
            }, "required": ["rows"]},
        },
    });
    merge(&mut list_props, &text_fields);
    let mut out = vec![
        spec(
            SEND_BUTTONS,
            "Send a message with 1 to 3 reply buttons, for a short choice the user answers with one tap.",
            json!({"type": "object", "properties": buttons_props, "required": ["body", "buttons"]}),
        ),
        spec(
            SEND_LIST,
            "Send a message with a list of up to 10 options (in up to 10 sections) behind a button, for a choice among more than 3 options.",
            json!({"type": "object", "properties": list_props, "required": ["body", "button", "sections"]}),
        ),
        spec(
            REQUEST_LOCATION,
            "Ask the user to share their location with a button that opens WhatsApp's location picker.",
            json!({"type": "object", "properties": {
                "body": {"type": "string", "description": format!("Why you ask, at most {INTERACTIVE_BODY_MAX} characters.")},
            }, "required": ["body"]}),
        ),
        spec(
            SEND_LOCATION,
            "Send a map pin.",
            json!({"type": "object", "properties": {
                "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                "name": {"type": "string", "description": "Name of the place."},
                "address": {"type": "string", "description": "Its address."},
            }, "required": ["latitude", "longitude"]}),
        ),
        spec(
            SEND_MEDIA,
            "Send an image or a document, from a public https URL or a stored file id.",
            json!({"type": "object", "properties": {
                "kind": {"type": "string", "enum": ["image", "document"]},
                "url": {"type": "string", "description": "A public https URL of the file."},
                "file_id": {"type": "string", "description": "The id of a stored file, instead of url."},
                "caption": {"type": "string", "description": format!("Optional text under it, at most {CAPTION_MAX} characters.")},
                "filename": {"type": "string", "description": "For documents: the file name the user sees."},
            }, "required": ["kind"]}),
        ),
    ];
    if ctx.reply_to.is_some() {
        out.push(spec(
            REACT,
            "React to the user's latest message with an emoji.",
            json!({"type": "object", "properties": {
                "emoji": {"type": "string", "description": "One emoji, such as 👍."},
            }, "required": ["emoji"]}),
        ));
    }
    out.push(spec(
        REPORT_PROGRESS,
        "Send a short interim message at once (\"Let me check that…\") while you keep working on the answer.",
        json!({"type": "object", "properties": {
            "text": {"type": "string", "description": "The interim message."},
        }, "required": ["text"]}),
    ));
    if ctx.contact_collection {
        out.push(spec(
            COLLECT_CONTACT,
            "Save what the user told you about themselves (name, email and other details) to their contact record. Only what they said; never guess.",
            json!({"type": "object", "properties": {
                "name": {"type": "string"},
                "email": {"type": "string"},
                "nick": {"type": "string", "description": "What they like to be called."},
                "description": {"type": "string", "description": "A short note about them."},
                "preferences": {"type": "string", "description": "Their stated preferences."},
                "other": {"type": "object", "description": "Any other details as short key/value strings, such as company or city.", "additionalProperties": {"type": "string"}},
            }}),
        ));
    }
    out
}

fn merge(target: &mut Value, extra: &Value) {
    if let (Some(t), Some(e)) = (target.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            t.insert(k.clone(), v.clone());
        }
    }
}

/// Checks a call and turns it into what it does.
pub fn prepare(call: &ToolCall, ctx: &Context<'_>) -> Result<Action, ToolError> {
    let args = Args::new(&call.arguments)?;
    match call.name.as_str() {
        SEND_BUTTONS => send_buttons(&args),
        SEND_LIST => send_list(&args),
        REQUEST_LOCATION => request_location(&args),
        SEND_LOCATION => send_location(&args),
        SEND_MEDIA => send_media(&args),
        REACT => react(&args, ctx),
        REPORT_PROGRESS => {
            let text = cut(&to_whatsapp(args.text("text")?), WHATSAPP_TEXT_LIMIT);
            Ok(Action::Progress(text))
        }
        COLLECT_CONTACT if ctx.contact_collection => collect_contact(&args),
        COLLECT_CONTACT => Err(ToolError::new(
            "contact collection is off for this WhatsApp number; do not save contact details",
        )),
        other => Err(ToolError::new(format!("there is no tool named {other:?}"))),
    }
}

/// The envelope every Cloud API message shares.
fn envelope(kind: &str, content: Value) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": kind,
    });
    body[kind] = content;
    body
}

fn text_header(header: Option<String>) -> Option<Value> {
    header.map(|h| json!({"type": "text", "text": h}))
}

fn send_buttons(args: &Args<'_>) -> Result<Action, ToolError> {
    let body = cut(&to_whatsapp(args.text("body")?), INTERACTIVE_BODY_MAX);
    let items = args.array("buttons", 1, BUTTONS_MAX)?;
    let mut buttons = Vec::new();
    let mut titles = Vec::new();
    let (mut seen_ids, mut seen_titles) = (HashSet::new(), HashSet::new());
    for (i, item) in items.iter().enumerate() {
        let what = format!("buttons[{i}]");
        let item = Args::nested(item, &what)?;
        let title = cut(item.text("title")?, BUTTON_TITLE_MAX);
        let id = item
            .id("id", BUTTON_ID_MAX)?
            .unwrap_or_else(|| title.clone());
        if id.chars().count() > BUTTON_ID_MAX {
            return Err(ToolError::new(format!(
                "{what}: the title is used as the id and is too long; give an id of at most {BUTTON_ID_MAX} characters"
            )));
        }
        if !seen_titles.insert(title.clone()) {
            return Err(ToolError::new(format!(
                "{what}: button titles must differ within their first {BUTTON_TITLE_MAX} characters; {title:?} is used twice"
            )));
        }
        if !seen_ids.insert(id.clone()) {
            return Err(ToolError::new(format!(
                "{what}: button ids must be unique; {id:?} is used twice"
            )));
        }
        buttons.push(json!({"type": "reply", "reply": {"id": id, "title": title}}));
        titles.push(title);
    }
    let mut interactive = json!({
        "type": "button",
        "body": {"text": body},
        "action": {"buttons": buttons},
    });
    if let Some(h) = text_header(args.opt_text("header")?.map(|h| cut(&h, HEADER_MAX))) {
        interactive["header"] = h;
    }
    if let Some(f) = args.opt_text("footer")? {
        interactive["footer"] = json!({"text": cut(&to_whatsapp(&f), FOOTER_MAX)});
    }
    Ok(Action::Message {
        summary: format!("{body}\n[buttons: {}]", titles.join(" | ")),
        body: envelope("interactive", interactive),
    })
}

fn send_list(args: &Args<'_>) -> Result<Action, ToolError> {
    let body = cut(&to_whatsapp(args.text("body")?), LIST_BODY_MAX);
    let button = cut(args.text("button")?, LIST_BUTTON_MAX);
    let items = args.array("sections", 1, LIST_SECTIONS_MAX)?;
    let several = items.len() > 1;
    let mut sections = Vec::new();
    let mut seen_ids = HashSet::new();
    let mut titles = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let what = format!("sections[{i}]");
        let section = Args::nested(item, &what)?;
        let title = section
            .opt_text("title")?
            .map(|t| cut(&t, SECTION_TITLE_MAX));
        if several && title.is_none() {
            return Err(ToolError::new(format!(
                "{what}.title: with more than one section, every section needs a title"
            )));
        }
        let rows_in = section.array("rows", 1, LIST_ROWS_MAX)?;
        let mut rows = Vec::new();
        for (j, row) in rows_in.iter().enumerate() {
            let what = format!("{what}.rows[{j}]");
            let row = Args::nested(row, &what)?;
            let title = cut(row.text("title")?, ROW_TITLE_MAX);
            let id = row.id("id", ROW_ID_MAX)?.unwrap_or_else(|| title.clone());
            if !seen_ids.insert(id.clone()) {
                return Err(ToolError::new(format!(
                    "{what}: row ids must be unique in the whole list; {id:?} is used twice"
                )));
            }
            let mut r = json!({"id": id, "title": title});
            if let Some(d) = row.opt_text("description")? {
                r["description"] = json!(cut(&d, ROW_DESCRIPTION_MAX));
            }
            rows.push(r);
            titles.push(title);
        }
        let mut s = json!({"rows": rows});
        if let Some(t) = title {
            s["title"] = json!(t);
        }
        sections.push(s);
    }
    if titles.len() > LIST_ROWS_MAX {
        return Err(ToolError::new(format!(
            "sections: a list holds at most {LIST_ROWS_MAX} rows in all sections together, not {}",
            titles.len()
        )));
    }
    let mut interactive = json!({
        "type": "list",
        "body": {"text": body},
        "action": {"button": button, "sections": sections},
    });
    if let Some(h) = text_header(args.opt_text("header")?.map(|h| cut(&h, HEADER_MAX))) {
        interactive["header"] = h;
    }
    if let Some(f) = args.opt_text("footer")? {
        interactive["footer"] = json!({"text": cut(&to_whatsapp(&f), FOOTER_MAX)});
    }
    Ok(Action::Message {
        summary: format!("{body}\n[list \"{button}\": {}]", titles.join(" | ")),
        body: envelope("interactive", interactive),
    })
}

fn request_location(args: &Args<'_>) -> Result<Action, ToolError> {
    let body = cut(&to_whatsapp(args.text("body")?), INTERACTIVE_BODY_MAX);
    Ok(Action::Message {
        summary: format!("{body}\n[location request]"),
        body: envelope(
            "interactive",
            json!({
                "type": "location_request_message",
                "body": {"text": body},
                "action": {"name": "send_location"},
            }),
        ),
    })
}

fn send_location(args: &Args<'_>) -> Result<Action, ToolError> {
    let latitude = args.number("latitude", -90.0, 90.0)?;
    let longitude = args.number("longitude", -180.0, 180.0)?;
    let mut location = json!({"latitude": latitude, "longitude": longitude});
    let name = args.opt_text("name")?.map(|n| cut(&n, LOCATION_TEXT_MAX));
    let address = args
        .opt_text("address")?
        .map(|a| cut(&a, LOCATION_TEXT_MAX));
    if let Some(n) = &name {
        location["name"] = json!(n);
    }
    if let Some(a) = &address {
        location["address"] = json!(a);
    }
    let label: Vec<&str> = [name.as_deref(), address.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{} ", label.join(", "))
    };
    Ok(Action::Message {
        summary: format!("[location: {label}({latitude}, {longitude})]"),
        body: envelope("location", location),
    })
}

fn send_media(args: &Args<'_>) -> Result<Action, ToolError> {
    let kind = match args.text("kind")? {
        "image" => MediaKind::Image,
        "document" => MediaKind::Document,
        other => {
            return Err(ToolError::new(format!(
                "kind: must be \"image\" or \"document\", not {other:?}"
            )));
        }
    };
    let source = match (args.opt_text("url")?, args.opt_text("file_id")?) {
        (Some(url), None) => {
            let parsed = url::Url::parse(url.trim())
                .map_err(|_| ToolError::new(format!("url: {url:?} is not a URL")))?;
            if parsed.scheme() != "https" && parsed.scheme() != "http" {
                return Err(ToolError::new("url: must be an http or https URL"));
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(ToolError::new("url: has no host"));
            }
            MediaSource::Link(parsed.to_string())
        }
        (None, Some(id)) => MediaSource::File(id.trim().to_owned()),
        (Some(_), Some(_)) => return Err(ToolError::new("give either url or file_id, not both")),
        (None, None) => return Err(ToolError::new("give url or file_id")),
    };
    let caption = args
        .opt_text("caption")?
        .map(|c| cut(&to_whatsapp(&c), CAPTION_MAX));
    let filename = match kind {
        MediaKind::Document => args
            .opt_text("filename")?
            .map(|f| cut(&f, FILENAME_MAX))
            .or_else(|| match &source {
                MediaSource::Link(u) => url::Url::parse(u)
                    .ok()
                    .and_then(|u| u.path_segments()?.next_back().map(percent_decode))
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| cut(&s, FILENAME_MAX)),
                MediaSource::File(_) => None,
            }),
        MediaKind::Image => None,
    };
    Ok(Action::Media(MediaRequest {
        kind,
        source,
        caption,
        filename,
    }))
}

/// A URL path segment as the user should see it (`my%20menu.pdf` → `my menu.pdf`).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Cloud API body for a media request whose source is a link or an uploaded media id.
pub fn media_body(req: &MediaRequest, media: MediaRef<'_>) -> (Value, String) {
    let mut content = match media {
        MediaRef::Link(link) => json!({"link": link}),
        MediaRef::Id(id) => json!({"id": id}),
    };
    if let Some(c) = &req.caption {
        content["caption"] = json!(c);
    }
    if let Some(f) = &req.filename {
        content["filename"] = json!(f);
    }
    let kind = req.kind.as_str();
    let label = req
        .filename
        .as_deref()
        .map_or(String::new(), |f| format!(" {f}"));
    let summary = match &req.caption {
        Some(c) => format!("[{kind}{label}] {c}"),
        None => format!("[{kind}{label}]"),
    };
    (envelope(kind, content), summary)
}

/// Where the media of a body comes from.
pub enum MediaRef<'a> {
    Link(&'a str),
    Id(&'a str),
}

fn react(args: &Args<'_>, ctx: &Context<'_>) -> Result<Action, ToolError> {
    let emoji = args.text("emoji")?.trim();
    // One emoji can be several code points (skin tones, families, flags), but never letters,
    // digits or spaces.
    if emoji.chars().count() > 10
        || emoji
            .chars()
            .any(|c| c.is_ascii_alphanumeric() || c.is_whitespace())
    {
        return Err(ToolError::new(format!(
            "emoji: must be a single emoji such as 👍, not {emoji:?}"
        )));
    }
    let Some(wamid) = ctx.reply_to else {
        return Err(ToolError::new("there is no user message to react to"));
    };
    Ok(Action::Message {
        summary: format!("[reaction {emoji}]"),
        body: envelope("reaction", json!({"message_id": wamid, "emoji": emoji})),
    })
}

fn collect_contact(args: &Args<'_>) -> Result<Action, ToolError> {
    let field = |key: &str| -> Result<Option<String>, ToolError> {
        Ok(args
            .opt_text(key)?
            .map(|v| cut(v.trim(), CONTACT_FIELD_MAX)))
    };
    let email = match args.opt_text("email")? {
        None => None,
        Some(e) => Some(valid_email(e.trim()).ok_or_else(|| {
            ToolError::new(format!(
                "email: {e:?} is not an email address; ask the user again"
            ))
        })?),
    };
    let mut other = Map::new();
    if let Some(v) = args.0.get("other").filter(|v| !v.is_null()) {
        let obj = v
            .as_object()
            .ok_or_else(|| ToolError::new("other: must be an object of strings"))?;
        if obj.len() > CONTACT_OTHER_MAX {
            return Err(ToolError::new(format!(
                "other: at most {CONTACT_OTHER_MAX} details at once"
            )));
        }
        for (k, v) in obj {
            let key = k.trim();
            if key.is_empty() || key.chars().count() > 64 {
                return Err(ToolError::new("other: keys must be 1 to 64 characters"));
            }
            let text = match v {
                Value::String(s) => s.trim().to_owned(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(ToolError::new(format!("other.{key}: must be a string")));
                }
            };
            if !text.is_empty() {
                other.insert(key.to_owned(), json!(cut(&text, CONTACT_FIELD_MAX)));
            }
        }
    }
    let fields = ContactFields {
        name: field("name")?,
        email,
        nick: field("nick")?,
        description: field("description")?,
        preferences: field("preferences")?,
        other,
    };
    if fields.saved().is_empty() {
        return Err(ToolError::new("nothing to save: give at least one field"));
    }
    Ok(Action::Contact(fields))
}

/// A plausible address, lower-cased domain; `None` when it cannot be one.
fn valid_email(e: &str) -> Option<String> {
    let (local, domain) = e.rsplit_once('@')?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && e.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && !local.contains('@');
    ok.then(|| format!("{local}@{}", domain.to_lowercase()))
}

/// The contact `meta` key that says where the contact's name came from; [`NAME_COLLECTED`]
/// means the user told it, and the WhatsApp profile name no longer replaces it.
pub const NAME_SOURCE: &str = "nameSource";
pub const NAME_COLLECTED: &str = "collected";

/// Saves `fields` on the turn's contact. The contact exists: the turn's prompt step created it,
/// since `collect_contact` is only offered when the integration collects contacts.
pub async fn save_contact<C: ConnectionTrait>(
    conn: &C,
    tenant_id: &str,
    wa_id: &str,
    fields: &ContactFields,
) -> Result<Result<(), ToolError>, sea_orm::DbErr> {
    let fingerprint = format!("whatsapp:{wa_id}");
    let Some(existing) = contact::Entity::find()
        .filter(contact::Column::TenantId.eq(tenant_id))
        .filter(contact::Column::Fingerprint.eq(fingerprint.as_str()))
        .one(conn)
        .await?
    else {
        return Ok(Err(ToolError::new(
            "there is no contact record for this user yet; nothing was saved",
        )));
    };
    let mut update = contact::Entity::update_many()
        .filter(contact::Column::Id.eq(existing.id.as_str()))
        .col_expr(contact::Column::UpdatedAt, Expr::value(now_ms()));
    for (col, value) in [
        (contact::Column::Name, &fields.name),
        (contact::Column::Email, &fields.email),
        (contact::Column::Nick, &fields.nick),
        (contact::Column::Description, &fields.description),
        (contact::Column::Preferences, &fields.preferences),
    ] {
        if let Some(v) = value {
            update = update.col_expr(col, Expr::value(v.clone()));
        }
    }
    if !fields.other.is_empty() || fields.name.is_some() {
        let mut meta = existing.meta.clone();
        if !meta.is_object() {
            meta = json!({});
        }
        if let Some(m) = meta.as_object_mut() {
            for (k, v) in &fields.other {
                m.insert(k.clone(), v.clone());
            }
            if fields.name.is_some() {
                // The name the user gave beats their WhatsApp profile name from now on.
                m.insert(NAME_SOURCE.to_owned(), json!(NAME_COLLECTED));
            }
        }
        update = update.col_expr(contact::Column::Meta, Expr::value(meta));
    }
    update.exec(conn).await?;
    Ok(Ok(()))
}

/// A stored file's bytes, for `send_media` by file id.
pub struct StoredFile {
    pub mime_type: String,
    pub filename: Option<String>,
    pub bytes: Vec<u8>,
}

/// A stored file of the tenant's, by id. A missing file (or another tenant's) goes back to the
/// model as a tool error naming the id, so it can send a link instead.
async fn stored_file(
    state: &AppState,
    tenant_id: &str,
    file_id: &str,
) -> Result<StoredFile, ToolError> {
    match crate::files::read(state, tenant_id, file_id).await {
        Ok((f, bytes)) => Ok(StoredFile {
            mime_type: f.mime_type,
            filename: f.name,
            bytes,
        }),
        Err(e) => {
            tracing::debug!(error = ?e, file_id, "a tool asked for a file it cannot have");
            Err(ToolError::new(format!(
                "there is no stored file {file_id:?}; send the media by url"
            )))
        }
    }
}

/// Resolves a media request to its Cloud API body: a link goes as is (Meta fetches it); a stored
/// file is checked against WhatsApp's type and size limits and uploaded to Meta's media API.
pub async fn resolve_media(
    state: &AppState,
    graph: &GraphClient,
    tenant_id: &str,
    phone_number_id: &str,
    token: &SecretString,
    req: &MediaRequest,
) -> Result<(Value, String), ToolError> {
    match &req.source {
        MediaSource::Link(link) => Ok(media_body(req, MediaRef::Link(link))),
        MediaSource::File(file_id) => {
            let file = stored_file(state, tenant_id, file_id).await?;
            check_media(&req.kind, &file.mime_type, file.bytes.len())?;
            let filename = req
                .filename
                .clone()
                .or(file.filename.clone())
                .unwrap_or_else(|| "file".to_owned());
            let id = graph
                .upload_media(
                    phone_number_id,
                    token,
                    &file.mime_type,
                    &filename,
                    file.bytes,
                )
                .await
                .map_err(|e| {
                    ToolError::new(format!("uploading the file to WhatsApp failed: {e}"))
                })?;
            let mut req = req.clone();
            if req.kind == MediaKind::Document && req.filename.is_none() {
                req.filename = Some(filename);
            }
            Ok(media_body(&req, MediaRef::Id(&id)))
        }
    }
}

/// WhatsApp's types and sizes for what `send_media` sends (limits.md rows 22 and 23).
pub fn check_media(kind: &MediaKind, mime_type: &str, size: usize) -> Result<(), ToolError> {
    let (types, max): (&[&str], usize) = match kind {
        MediaKind::Image => (&["image/jpeg", "image/png"], IMAGE_BYTES_MAX),
        MediaKind::Document => (
            &[
                "text/plain",
                "application/pdf",
                "application/vnd.ms-excel",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/msword",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.ms-powerpoint",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            ],
            DOCUMENT_BYTES_MAX,
        ),
    };
    let mime = mime_type.split(';').next().unwrap_or_default().trim();
    if !types.contains(&mime) {
        return Err(ToolError::new(format!(
            "WhatsApp does not send {mime:?} files as {}s (allowed: {})",
            kind.as_str(),
            types.join(", ")
        )));
    }
    if size > max {
        return Err(ToolError::new(format!(
            "the file is {size} bytes; WhatsApp takes {}s up to {max} bytes",
            kind.as_str()
        )));
    }
    Ok(())
}

// --- Arguments -------------------------------------------------------------------------------

/// A call's arguments, with lookups that name the field in their errors.
struct Args<'a>(&'a Map<String, Value>, String);

impl<'a> Args<'a> {
    fn new(arguments: &'a Value) -> Result<Self, ToolError> {
        match arguments {
            Value::Object(map) => Ok(Self(map, String::new())),
            Value::String(_) => Err(ToolError::new(
                "the arguments are not valid JSON; send a JSON object",
            )),
            _ => Err(ToolError::new("the arguments must be a JSON object")),
        }
    }

    fn nested(value: &'a Value, path: &str) -> Result<Self, ToolError> {
        match value {
            Value::Object(map) => Ok(Self(map, format!("{path}."))),
            _ => Err(ToolError::new(format!("{path}: must be an object"))),
        }
    }

    fn path(&self, key: &str) -> String {
        format!("{}{key}", self.1)
    }

    /// A required, non-blank string, trimmed.
    fn text(&self, key: &str) -> Result<&'a str, ToolError> {
        match self.0.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
            Some(Value::String(_)) => Err(ToolError::new(format!(
                "{}: must not be empty",
                self.path(key)
            ))),
            None | Some(Value::Null) => {
                Err(ToolError::new(format!("{}: is required", self.path(key))))
            }
            Some(_) => Err(ToolError::new(format!(
                "{}: must be a string",
                self.path(key)
            ))),
        }
    }

    /// An optional string, trimmed; blank counts as absent.
    fn opt_text(&self, key: &str) -> Result<Option<String>, ToolError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(_) => Err(ToolError::new(format!(
                "{}: must be a string",
                self.path(key)
            ))),
        }
    }

    /// An optional id: never cut, since a cut id would not match what the model expects back.
    fn id(&self, key: &str, max: usize) -> Result<Option<String>, ToolError> {
        let Some(id) = self.opt_text(key)? else {
            return Ok(None);
        };
        let id = id.trim().to_owned();
        if id.chars().count() > max {
            return Err(ToolError::new(format!(
                "{}: at most {max} characters",
                self.path(key)
            )));
        }
        Ok(Some(id))
    }

    fn array(&self, key: &str, min: usize, max: usize) -> Result<&'a Vec<Value>, ToolError> {
        match self.0.get(key) {
            Some(Value::Array(items)) if (min..=max).contains(&items.len()) => Ok(items),
            Some(Value::Array(items)) => Err(ToolError::new(format!(
                "{}: needs {min} to {max} items, not {}",
                self.path(key),
                items.len()
            ))),
            None | Some(Value::Null) => {
                Err(ToolError::new(format!("{}: is required", self.path(key))))
            }
            Some(_) => Err(ToolError::new(format!(
                "{}: must be an array",
                self.path(key)
            ))),
        }
    }

    /// A number in `min..=max`; models sometimes write numbers as strings, which is accepted.
    fn number(&self, key: &str, min: f64, max: f64) -> Result<f64, ToolError> {
        let v = match self.0.get(key) {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            None | Some(Value::Null) => {
                return Err(ToolError::new(format!("{}: is required", self.path(key))));
            }
            Some(_) => None,
        };
        match v {
            Some(v) if v.is_finite() && (min..=max).contains(&v) => Ok(v),
            _ => Err(ToolError::new(format!(
                "{}: must be a number from {min} to {max}",
                self.path(key)
            ))),
        }
    }
}

// --- Cutting text ----------------------------------------------------------------------------

/// `text` cut to at most `max` characters, ending in "…" when cut. The cut is on a character
/// boundary, preferably between words, and never inside a WhatsApp formatting span (`*…*`,
/// `_…_`, `~…~`, `` `…` ``, ```` ```…``` ````): a span the cut would open without closing loses
/// its opening marker instead, so the text never ends in half a format.
pub fn cut(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        return text.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let budget = max - 1; // room for the ellipsis
    let spans = format_spans(&chars);
    let splits_span = |p: usize| spans.iter().any(|&(o, c, _)| o < p && p <= c);
    // Between words in the back half of the budget, then between words anywhere, then any
    // place outside a span, then the budget itself.
    let word_break = |p: usize| {
        p > 0
            && (chars.get(p).is_some_and(|c| c.is_whitespace())
                || chars.get(p - 1).is_some_and(|c| c.is_whitespace()))
    };
    let p = (budget / 2..=budget)
        .rev()
        .find(|&p| word_break(p) && !splits_span(p))
        .or_else(|| {
            (1..budget / 2)
                .rev()
                .find(|&p| word_break(p) && !splits_span(p))
        })
        .or_else(|| (1..=budget).rev().find(|&p| !splits_span(p)))
        .unwrap_or(budget);
    // Drop the openers of spans the cut still splits (only when nothing better was found).
    let mut drop = vec![false; p];
    for &(o, c, width) in &spans {
        if o < p && p <= c {
            for d in drop.iter_mut().skip(o).take(width) {
                *d = true;
            }
        }
    }
    let kept: String = chars
        .iter()
        .take(p)
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(c, _)| c)
        .collect();
    format!("{}…", kept.trim_end())
}

/// Formatting spans as `(opener, closer, marker width)`, by character index: code blocks
/// (```` ``` ```` pairs) first, then single-character spans on one line outside them, with
/// WhatsApp's rule of thumb: a marker opens after a non-word character and before a non-space,
/// and closes after a non-space and before a non-word character.
fn format_spans(chars: &[char]) -> Vec<(usize, usize, usize)> {
    let n = chars.len();
    let mut spans = Vec::new();
    let mut in_code = vec![false; n];
    let mut fences = Vec::new();
    let mut i = 0;
    while i + 3 <= n {
        if chars[i..i + 3].iter().all(|&c| c == '`') {
            fences.push(i);
            i += 3;
        } else {
            i += 1;
        }
    }
    for pair in fences.chunks_exact(2) {
        let (open, close) = (pair[0], pair[1]);
        for c in in_code.iter_mut().take(close + 3).skip(open) {
            *c = true;
        }
        // The closer's last backtick is the span's end.
        spans.push((open, close + 2, 3));
    }
    let mut open: [Option<usize>; 4] = [None; 4];
    for (i, &ch) in chars.iter().enumerate() {
        if ch == '\n' || in_code[i] {
            open = [None; 4];
            continue;
        }
        let k = match ch {
            '*' => 0,
            '_' => 1,
            '~' => 2,
            '`' => 3,
            _ => continue,
        };
        let near = |j: Option<usize>| j.and_then(|j| chars.get(j)).copied().filter(|&c| c != '\n');
        let prev = near(i.checked_sub(1));
        let next = near(Some(i + 1));
        match open[k] {
            Some(o)
                if prev.is_some_and(|c| !c.is_whitespace())
                    && next.is_none_or(|c| !c.is_alphanumeric()) =>
            {
                spans.push((o, i, 1));
                open[k] = None;
            }
            _ if prev.is_none_or(|c| !c.is_alphanumeric())
                && next.is_some_and(|c| !c.is_whitespace()) =>
            {
                open[k] = Some(i);
            }
            _ => {}
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: Value) -> ToolCall {
        ToolCall {
            id: "call_1".into(),
            name: name.into(),
            arguments,
        }
    }

    const CTX: Context<'static> = Context {
        contact_collection: true,
        reply_to: Some("wamid.IN"),
    };

    fn run(name: &str, arguments: Value) -> Result<Action, ToolError> {
        prepare(&call(name, arguments), &CTX)
    }

    fn body(name: &str, arguments: Value) -> Value {
        match run(name, arguments) {
            Ok(Action::Message { body, .. }) => body,
            other => panic!("{other:?}"),
        }
    }

    fn error(name: &str, arguments: Value) -> String {
        match run(name, arguments) {
            Err(ToolError(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn cut_table() {
        let cases: &[(&str, usize, &str)] = &[
            ("short", 10, "short"),
            ("exactly ten", 11, "exactly ten"),
            ("hello wonderful world", 12, "hello…"),
            ("abcdefghij", 5, "abcd…"),
            // Multi-byte characters are counted and cut whole.
            ("ñandú ñandú ñandú", 8, "ñandú…"),
            ("👍👍👍👍👍", 3, "👍👍…"),
            // A cut that would split a bold span goes before it...
            ("see *very important* now", 15, "see…"),
            // ...or, when the span fills the budget, drops the unmatched opener.
            ("*abcdefghijklmnop*", 8, "abcdef…"),
            ("~gone~ and _fine_ text here", 16, "~gone~ and…"),
            ("```code block here```", 10, "code b…"),
            ("", 3, ""),
            ("abc", 0, ""),
        ];
        for &(text, max, want) in cases {
            let got = cut(text, max);
            assert_eq!(got, want, "cut({text:?}, {max})");
            assert!(got.chars().count() <= max, "{got:?} fits {max}");
        }
    }

    #[test]
    fn cut_never_leaves_an_unbalanced_marker() {
        let text = "Hi *there* you _lovely_ ~people~ of `the` world, *all of you* indeed";
        for max in 1..text.chars().count() {
            let got = cut(text, max);
            assert!(got.chars().count() <= max, "{max}: {got}");
            let inner: Vec<char> = got.trim_end_matches('…').chars().collect();
            for marker in ['*', '_', '~', '`'] {
                let count = inner.iter().filter(|&&c| c == marker).count();
                assert_eq!(count % 2, 0, "max {max}: {got:?} has an odd {marker}");
            }
        }
    }

    #[test]
    fn buttons_produce_the_cloud_api_body() {
        let got = body(
            SEND_BUTTONS,
            json!({"body": "Which **size**?", "header": "Sizes", "footer": "Prices incl. VAT",
                   "buttons": [{"id": "s", "title": "Small"}, {"title": "Large"}]}),
        );
        assert_eq!(
            got,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "type": "interactive",
                "interactive": {"type": "button",
                    "header": {"type": "text", "text": "Sizes"},
                    "body": {"text": "Which *size*?"},
                    "footer": {"text": "Prices incl. VAT"},
                    "action": {"buttons": [
                        {"type": "reply", "reply": {"id": "s", "title": "Small"}},
                        {"type": "reply", "reply": {"id": "Large", "title": "Large"}}]}}})
        );
    }

    #[test]
    fn button_limits_table() {
        let b = |n: usize| -> Vec<Value> {
            (0..n).map(|i| json!({"title": format!("B{i}")})).collect()
        };
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"body": "x", "buttons": b(0)}),
                "buttons: needs 1 to 3 items, not 0",
            ),
            (
                json!({"body": "x", "buttons": b(4)}),
                "buttons: needs 1 to 3 items, not 4",
            ),
            (json!({"buttons": b(1)}), "body: is required"),
            (
                json!({"body": "  ", "buttons": b(1)}),
                "body: must not be empty",
            ),
            (
                json!({"body": "x", "buttons": "yes"}),
                "buttons: must be an array",
            ),
            (
                json!({"body": "x", "buttons": [{"id": "a"}]}),
                "buttons[0].title: is required",
            ),
            (
                json!({"body": "x", "buttons": [{"id": "i".repeat(257), "title": "A"}]}),
                "buttons[0].id: at most 256 characters",
            ),
            (
                json!({"body": "x", "buttons": [{"title": "Same"}, {"id": "b", "title": "Same"}]}),
                "buttons[1]: button titles must differ",
            ),
            (
                json!({"body": "x", "buttons": [{"title": "A long title number one"}, {"id": "2", "title": "A long title number two"}]}),
                "buttons[1]: button titles must differ within their first 20",
            ),
            (
                json!({"body": "x", "buttons": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]}),
                "buttons[1]: button ids must be unique",
            ),
        ];
        for (args, want) in cases {
            let got = error(SEND_BUTTONS, args.clone());
            assert!(got.starts_with(want), "{args}: {got}");
        }
        // Over-long free text is cut, not refused.
        let got = body(
            SEND_BUTTONS,
            json!({"body": "b".repeat(2000), "header": "h".repeat(100), "footer": "f ".repeat(50),
                   "buttons": [{"id": "x", "title": "Twenty one characters"}]}),
        );
        let i = &got["interactive"];
        assert_eq!(i["body"]["text"].as_str().unwrap().chars().count(), 1024);
        assert_eq!(i["header"]["text"].as_str().unwrap().chars().count(), 60);
        assert!(i["footer"]["text"].as_str().unwrap().chars().count() <= 60);
        assert_eq!(i["action"]["buttons"][0]["reply"]["title"], "Twenty one…");
        assert_eq!(i["action"]["buttons"][0]["reply"]["id"], "x");
    }

    #[test]
    fn lists_produce_the_cloud_api_body() {
        let got = body(
            SEND_LIST,
            json!({"body": "Pick a slot", "button": "Slots", "footer": "Times in CET",
                   "sections": [
                       {"title": "Monday", "rows": [{"id": "mon-9", "title": "9:00", "description": "Morning"}]},
                       {"title": "Tuesday", "rows": [{"id": "tue-9", "title": "9:00"}, {"title": "14:00"}]}]}),
        );
        assert_eq!(
            got,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "type": "interactive",
                "interactive": {"type": "list",
                    "body": {"text": "Pick a slot"},
                    "footer": {"text": "Times in CET"},
                    "action": {"button": "Slots", "sections": [
                        {"title": "Monday", "rows": [{"id": "mon-9", "title": "9:00", "description": "Morning"}]},
                        {"title": "Tuesday", "rows": [{"id": "tue-9", "title": "9:00"}, {"id": "14:00", "title": "14:00"}]}]}}})
        );
    }

    #[test]
    fn list_limits_table() {
        let rows = |n: usize, prefix: &str| -> Vec<Value> {
            (0..n)
                .map(|i| json!({"id": format!("{prefix}{i}"), "title": format!("Row {i}")}))
                .collect()
        };
        let section = |title: &str, n: usize| json!({"title": title, "rows": rows(n, title)});
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"body": "x", "button": "b", "sections": []}),
                "sections: needs 1 to 10 items, not 0",
            ),
            (
                json!({"body": "x", "button": "b", "sections": (0..11).map(|i| section(&format!("s{i}"), 1)).collect::<Vec<_>>()}),
                "sections: needs 1 to 10 items, not 11",
            ),
            (
                json!({"body": "x", "button": "b", "sections": [section("a", 6), section("b", 5)]}),
                "sections: a list holds at most 10 rows",
            ),
            (
                json!({"body": "x", "button": "b", "sections": [{"rows": rows(11, "r")}]}),
                "sections[0].rows: needs 1 to 10 items, not 11",
            ),
            (
                json!({"body": "x", "button": "b", "sections": [{"rows": rows(1, "a")}, {"title": "t", "rows": rows(1, "b")}]}),
                "sections[0].title: with more than one section",
            ),
            (
                json!({"body": "x", "button": "b", "sections": [{"rows": [{"id": "r".repeat(201), "title": "t"}]}]}),
                "sections[0].rows[0].id: at most 200 characters",
            ),
            (
                json!({"body": "x", "button": "b", "sections": [{"title": "a", "rows": rows(1, "x")}, {"title": "b", "rows": rows(1, "x")}]}),
                "sections[1].rows[0]: row ids must be unique",
            ),
            (
                json!({"body": "x", "sections": [{"rows": rows(1, "r")}]}),
                "button: is required",
            ),
        ];
        for (args, want) in cases {
            let got = error(SEND_LIST, args.clone());
            assert!(got.starts_with(want), "{args}: {got}");
        }
        let got = body(
            SEND_LIST,
            json!({"body": "x", "button": "Choose one of these", "sections": [
                {"title": "A section title that is long", "rows": [
                    {"id": "1", "title": "A row title that is too long", "description": "d".repeat(100)}]}]}),
        );
        let a = &got["interactive"]["action"];
        assert_eq!(a["button"], "Choose one of these");
        assert_eq!(a["sections"][0]["title"], "A section title that is…");
        assert_eq!(
            a["sections"][0]["rows"][0]["title"],
            "A row title that is too…"
        );
        assert_eq!(
            a["sections"][0]["rows"][0]["description"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            72
        );
        // Ten rows over ten sections is the maximum, and allowed.
        let ten: Vec<Value> = (0..10).map(|i| section(&format!("s{i}"), 1)).collect();
        body(
            SEND_LIST,
            json!({"body": "x", "button": "b", "sections": ten}),
        );
    }

    #[test]
    fn location_request_location_and_reaction_bodies() {
        assert_eq!(
            body(
                REQUEST_LOCATION,
                json!({"body": "Where should we deliver?"})
            ),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "type": "interactive",
                "interactive": {"type": "location_request_message", "body": {"text": "Where should we deliver?"},
                    "action": {"name": "send_location"}}})
        );
        assert_eq!(
            body(
                SEND_LOCATION,
                json!({"latitude": 52.52, "longitude": "13.405", "name": "Shop", "address": "Unter den Linden 1"})
            ),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "type": "location",
                "location": {"latitude": 52.52, "longitude": 13.405, "name": "Shop", "address": "Unter den Linden 1"}})
        );
        assert_eq!(
            body(REACT, json!({"emoji": "👍🏽"})),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "type": "reaction",
                "reaction": {"message_id": "wamid.IN", "emoji": "👍🏽"}})
        );
        for (args, want) in [
            (
                json!({"latitude": 91, "longitude": 0}),
                "latitude: must be a number from -90 to 90",
            ),
            (
                json!({"latitude": 0, "longitude": -181}),
                "longitude: must be a number from -180 to 180",
            ),
            (
                json!({"latitude": "north", "longitude": 0}),
                "latitude: must be a number",
            ),
            (json!({"longitude": 0}), "latitude: is required"),
        ] {
            assert!(
                error(SEND_LOCATION, args.clone()).starts_with(want),
                "{args}"
            );
        }
        for emoji in ["", "ok", "👍 👍", "🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉"] {
            assert!(run(REACT, json!({"emoji": emoji})).is_err(), "{emoji:?}");
        }
        let none = Context {
            contact_collection: false,
            reply_to: None,
        };
        assert!(prepare(&call(REACT, json!({"emoji": "👍"})), &none).is_err());
        assert!(!specs(&none).iter().any(|s| s.name == REACT));
    }

    #[test]
    fn media_requests_table() {
        let req = |args: Value| match run(SEND_MEDIA, args) {
            Ok(Action::Media(m)) => m,
            other => panic!("{other:?}"),
        };
        let m = req(
            json!({"kind": "document", "url": "https://example.com/files/menu.pdf", "caption": "Our **menu**"}),
        );
        assert_eq!(m.filename.as_deref(), Some("menu.pdf"));
        let (b, summary) = media_body(&m, MediaRef::Link("https://example.com/files/menu.pdf"));
        assert_eq!(
            b,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "type": "document",
                "document": {"link": "https://example.com/files/menu.pdf", "caption": "Our *menu*", "filename": "menu.pdf"}})
        );
        assert_eq!(summary, "[document menu.pdf] Our *menu*");
        let m = req(json!({"kind": "document", "url": "https://e.com/d/Men%C3%BC%202025.pdf?x=1"}));
        assert_eq!(m.filename.as_deref(), Some("Menü 2025.pdf"));
        let m = req(json!({"kind": "document", "url": "https://e.com/d/50%25%zz"}));
        assert_eq!(
            m.filename.as_deref(),
            Some("50%%zz"),
            "bad escapes stay as written"
        );
        let m = req(json!({"kind": "document", "url": "https://e.com/"}));
        assert_eq!(m.filename, None);
        let m = req(json!({"kind": "image", "file_id": "fil_1", "caption": "c".repeat(2000)}));
        assert_eq!(m.source, MediaSource::File("fil_1".into()));
        assert_eq!(m.caption.as_ref().unwrap().chars().count(), 1024);
        let (b, _) = media_body(&m, MediaRef::Id("1234"));
        assert_eq!(b["image"]["id"], "1234");
        for (args, want) in [
            (
                json!({"kind": "video", "url": "https://e.com/a.mp4"}),
                "kind: must be",
            ),
            (json!({"kind": "image"}), "give url or file_id"),
            (
                json!({"kind": "image", "url": "https://e.com/a.png", "file_id": "f"}),
                "give either",
            ),
            (
                json!({"kind": "image", "url": "ftp://e.com/a.png"}),
                "url: must be an http",
            ),
            (
                json!({"kind": "image", "url": "not a url"}),
                "url: \"not a url\" is not a URL",
            ),
        ] {
            assert!(error(SEND_MEDIA, args.clone()).starts_with(want), "{args}");
        }
    }

    #[test]
    fn media_type_and_size_limits_table() {
        let mb = 1024 * 1024;
        let cases = [
            (MediaKind::Image, "image/png", 5 * mb, true),
            (MediaKind::Image, "image/jpeg", 5 * mb + 1, false),
            (MediaKind::Image, "image/gif", 10, false),
            (MediaKind::Document, "application/pdf", 100 * mb, true),
            (MediaKind::Document, "application/pdf", 100 * mb + 1, false),
            (MediaKind::Document, "text/plain; charset=utf-8", 10, true),
            (MediaKind::Document, "application/x-msdownload", 10, false),
        ];
        for (kind, mime, size, ok) in cases {
            assert_eq!(
                check_media(&kind, mime, size).is_ok(),
                ok,
                "{kind:?} {mime} {size}"
            );
        }
    }

    #[test]
    fn progress_and_contacts() {
        assert_eq!(
            run(REPORT_PROGRESS, json!({"text": "Checking **stock**…"})),
            Ok(Action::Progress("Checking *stock*…".into()))
        );
        assert!(run(REPORT_PROGRESS, json!({})).is_err());
        match run(
            COLLECT_CONTACT,
            json!({"name": " Zoë ", "email": "Zoe@Example.COM", "other": {"company": "Acme", "seats": 12}}),
        ) {
            Ok(Action::Contact(f)) => {
                assert_eq!(f.name.as_deref(), Some("Zoë"));
                assert_eq!(f.email.as_deref(), Some("Zoe@example.com"));
                assert_eq!(f.other["seats"], "12");
                assert_eq!(f.saved(), vec!["name", "email", "company", "seats"]);
            }
            other => panic!("{other:?}"),
        }
        for (args, want) in [
            (
                json!({"email": "not-an-email"}),
                "email: \"not-an-email\" is not",
            ),
            (json!({"email": "a b@c.de"}), "email:"),
            (json!({}), "nothing to save"),
            (json!({"other": {"x": [1]}}), "other.x: must be a string"),
            (json!({"name": 5}), "name: must be a string"),
        ] {
            assert!(
                error(COLLECT_CONTACT, args.clone()).starts_with(want),
                "{args}"
            );
        }
        let off = Context {
            contact_collection: false,
            reply_to: Some("w"),
        };
        assert!(prepare(&call(COLLECT_CONTACT, json!({"name": "A"})), &off).is_err());
        assert!(!specs(&off).iter().any(|s| s.name == COLLECT_CONTACT));
        assert!(specs(&CTX).iter().any(|s| s.name == COLLECT_CONTACT));
    }

    #[test]
    fn broken_arguments_and_unknown_tools_are_tool_errors() {
        assert!(error(SEND_BUTTONS, json!("{\"body\": \"x")).contains("not valid JSON"));
        assert!(error(SEND_BUTTONS, json!([1])).contains("JSON object"));
        assert!(error("launch_rockets", json!({})).contains("no tool named"));
    }

    #[test]
    fn every_spec_is_an_object_schema_with_its_required_fields_described() {
        for s in specs(&CTX) {
            assert_eq!(s.parameters["type"], "object", "{}", s.name);
            for r in s.parameters["required"].as_array().into_iter().flatten() {
                let key = r.as_str().unwrap();
                assert!(
                    s.parameters["properties"][key].is_object(),
                    "{}: {key}",
                    s.name
                );
            }
        }
    }
}
