//! The typed model of a WhatsApp Cloud API webhook POST body.
//!
//! Meta sends one envelope for everything: `object`, then `entry[]` (one per WhatsApp Business
//! Account), each with `changes[]` whose `field` says what `value` holds. Only
//! `field: "messages"` is modelled (inbound messages, statuses of our outbound messages and
//! value-level errors); every other field is kept as raw JSON so nothing Meta sends is lost.
//!
//! Why the model is built by hand from a [`serde_json::Value`] instead of `#[derive(Deserialize)]`:
//! Meta adds message types and fields without notice, test tools send integers where Meta sends
//! strings, and one body can carry a batch of messages. A derived model fails the whole body on
//! the first surprise, which makes Meta retry it for days; here a surprise degrades only the
//! element it is in. The body is parsed once, and the message and status objects are moved, not
//! copied, into their `raw` fields.

use serde_json::{Map, Value};

/// Parses a webhook POST body (verify its signature first, see [`super::signature`]).
///
/// Fails only when the body is not JSON, its root is not an object, or its `entry` is present
/// but not an array. Everything below that degrades instead of failing: see [`MessagesValue`]
/// and [`MessageContent`]. `{}` is a webhook with no entries.
pub fn parse(body: &[u8]) -> Result<Webhook, serde_json::Error> {
    let root: Value = serde_json::from_slice(body)?;
    Webhook::from_value(root)
}

/// The whole POST body.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// `whatsapp_business_account` for the Cloud API; empty when absent.
    pub object: String,
    pub entry: Vec<Entry>,
}

/// One WhatsApp Business Account's share of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The WhatsApp Business Account id; empty when absent or when the entry was not an object.
    pub id: String,
    pub changes: Vec<Change>,
}

/// One change notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The subscribed webhook field (`messages`, `account_update`, `calls`, ...); empty when absent.
    pub field: String,
    pub value: ChangeValue,
}

/// What a change carries.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeValue {
    /// `field == "messages"` with a usable `metadata.phone_number_id`.
    Messages(MessagesValue),
    /// Every other field, and a `messages` value without a phone number id (it cannot be routed
    /// to an integration), kept exactly as received.
    Other(Value),
}

/// The `value` of a `messages` change. Missing arrays are empty.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesValue {
    pub messaging_product: Option<String>,
    pub metadata: Metadata,
    pub contacts: Vec<Contact>,
    pub messages: Vec<Message>,
    pub statuses: Vec<Status>,
    /// Value-level errors: Meta could not deliver something to us (e.g. 130429, 131000).
    pub errors: Vec<WebhookError>,
    /// Elements of `messages` and `statuses` that were dropped because they were not objects or
    /// had no `id` string. Without an id we could neither deduplicate nor answer them, so there
    /// is nothing safe to hand on; the count lets the caller log that it happened.
    pub skipped: usize,
}

/// Which of our phone numbers the change is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub display_phone_number: Option<String>,
    /// The key that routes a webhook to an integration.
    pub phone_number_id: String,
}

/// A WhatsApp user named in the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    /// Empty when Meta omits it (users known only by a business-scoped `user_id`).
    pub wa_id: String,
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: Option<String>,
}

/// One inbound message.
///
/// Fields that cannot be read take their zero value (`from` empty, `timestamp` 0) rather than
/// dropping the message; `raw` always holds what Meta sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The wamid: the key for deduplication, replies, reactions and read receipts.
    pub id: String,
    pub from: String,
    /// Unix seconds. Meta sends a string; some senders an integer; both are accepted.
    pub timestamp: i64,
    /// The raw `type` string, also for types that map to [`MessageContent::Unknown`].
    pub kind: String,
    pub context: Option<MessageContext>,
    pub content: MessageContent,
    /// Message-level errors, e.g. 131051 on an `unsupported` message.
    pub errors: Vec<WebhookError>,
    /// The message object exactly as received.
    pub raw: Value,
}

impl Message {
    /// The click-to-WhatsApp ad or post the user came from. Meta attaches it to an ordinary
    /// message (usually a text), so it lives beside the content instead of replacing it.
    pub fn referral(&self) -> Option<&Value> {
        self.raw.get("referral").filter(|r| r.is_object())
    }

    /// The sender's business-scoped user id (`US.…`), which Meta sends alongside, and for some
    /// users instead of, the phone number in `from`.
    pub fn from_user_id(&self) -> Option<&str> {
        self.raw.get("from_user_id").and_then(Value::as_str)
    }
}

/// What a message replies to, or that it was forwarded.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageContext {
    /// Who sent the message replied to (our display number when the user replies to us).
    pub from: Option<String>,
    /// The wamid of the message replied to.
    pub id: Option<String>,
    pub forwarded: bool,
    pub frequently_forwarded: bool,
    /// Set when the user asks about a catalogue product.
    pub referred_product: Option<Value>,
}

/// The typed content of a message, chosen by its `type`.
///
/// A content object that is missing or does not have the shape of its type becomes
/// [`MessageContent::Unknown`], as does any type not listed here (`edit`, `revoke`,
/// `request_welcome`, ...); [`Message::kind`] and [`Message::raw`] still say what it was.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    Text {
        body: String,
    },
    Image(Media),
    /// A voice note has `voice == Some(true)`.
    Audio(Media),
    Video(Media),
    Document(Media),
    Sticker(Media),
    Location(Location),
    /// Shared contact cards, as received.
    Contacts(Vec<Value>),
    Interactive(Interactive),
    /// A quick-reply button of a template.
    Button {
        payload: Option<String>,
        text: String,
    },
    /// `emoji` is `None` when the user removed their reaction (Meta sends an empty string or no
    /// emoji at all).
    Reaction {
        message_id: String,
        emoji: Option<String>,
    },
    /// The `order` object, as received.
    Order(Value),
    /// The `system` object (number or identity changes), as received.
    System(Value),
    /// `type: "referral"` with its `referral` object. Referrals attached to other types keep
    /// their content; see [`Message::referral`].
    Referral(Value),
    /// `type: "unsupported"`: WhatsApp could not forward the message (error 131051).
    Unsupported,
    Unknown,
}

/// Where to download a media message from; only `id` is needed for that.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    pub id: Option<String>,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    pub caption: Option<String>,
    pub filename: Option<String>,
    pub voice: Option<bool>,
    pub animated: Option<bool>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
    pub address: Option<String>,
    pub url: Option<String>,
}

/// A reply to one of our interactive messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Interactive {
    ButtonReply {
        id: String,
        title: String,
    },
    ListReply {
        id: String,
        title: String,
        description: Option<String>,
    },
    /// A completed WhatsApp Flow. `response_json` is a JSON document inside a string, left
    /// unparsed because only the flow's owner knows its shape.
    NfmReply {
        name: Option<String>,
        body: Option<String>,
        response_json: Option<String>,
    },
    /// Any other or malformed interactive object (e.g. `call_permission_reply`), as received.
    Other(Value),
}

/// A status update about one of OUR outbound messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The wamid Meta returned when we sent the message.
    pub id: String,
    pub status: StatusKind,
    pub timestamp: i64,
    /// The user's wa_id, or a group id for group messages; empty when absent.
    pub recipient_id: String,
    pub errors: Vec<WebhookError>,
    pub conversation: Option<Value>,
    pub pricing: Option<Value>,
    /// The status object exactly as received.
    pub raw: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    Failed,
    /// Any other value (`played`, `deleted`, `warning`, ...); empty when absent.
    Other(String),
}

impl StatusKind {
    /// The status as Meta spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Other(s) => s,
        }
    }
}

impl From<&str> for StatusKind {
    fn from(s: &str) -> Self {
        match s {
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "failed" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// An entry of an `errors` array (value-, message- or status-level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookError {
    /// 0 when Meta's code is missing or not an integer.
    pub code: i64,
    pub title: Option<String>,
    pub message: Option<String>,
    /// `error_data.details`, Meta's most specific explanation.
    pub details: Option<String>,
}

impl Webhook {
    /// Builds the model from an already parsed body, with the rules of [`parse`].
    pub fn from_value(root: Value) -> Result<Self, serde_json::Error> {
        let Value::Object(mut root) = root else {
            return Err(structural("the webhook body is not a JSON object"));
        };
        let object = take_string(&mut root, "object").unwrap_or_default();
        let entry = match root.remove("entry") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(entries)) => entries.into_iter().map(Entry::from_value).collect(),
            Some(_) => return Err(structural("the webhook `entry` is not an array")),
        };
        Ok(Self { object, entry })
    }
}

/// A `serde_json::Error` for a body that is JSON but not a webhook, so `parse` keeps one error
/// type for callers.
fn structural(msg: &'static str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(msg)
}

impl Entry {
    fn from_value(value: Value) -> Self {
        let Value::Object(mut entry) = value else {
            return Self {
                id: String::new(),
                changes: Vec::new(),
            };
        };
        let id = entry.get("id").and_then(id_string).unwrap_or_default();
        let changes = match entry.remove("changes") {
            Some(Value::Array(changes)) => changes.into_iter().map(Change::from_value).collect(),
            _ => Vec::new(),
        };
        Self { id, changes }
    }
}

impl Change {
    fn from_value(value: Value) -> Self {
        let mut change = match value {
            Value::Object(change) => change,
            // Kept whole so that a malformed change is still visible to the caller.
            other => {
                return Self {
                    field: String::new(),
                    value: ChangeValue::Other(other),
                };
            }
        };
        let field = take_string(&mut change, "field").unwrap_or_default();
        let value = change.remove("value").unwrap_or(Value::Null);
        let value = if field == "messages" {
            MessagesValue::from_value(value).map_or_else(ChangeValue::Other, ChangeValue::Messages)
        } else {
            ChangeValue::Other(value)
        };
        Self { field, value }
    }
}

impl MessagesValue {
    /// `Err` hands the value back untouched when it cannot be a messages value.
    fn from_value(value: Value) -> Result<Self, Value> {
        let mut map = match value {
            Value::Object(map) => map,
            other => return Err(other),
        };
        let Some(metadata) = map.get("metadata").and_then(Metadata::from_value) else {
            return Err(Value::Object(map));
        };
        let messaging_product = map.get("messaging_product").and_then(owned_str);
        let contacts = map
            .get("contacts")
            .and_then(Value::as_array)
            .map(|c| c.iter().filter_map(Contact::from_value).collect())
            .unwrap_or_default();
        let errors = map.get("errors").map(errors_from).unwrap_or_default();

        let mut skipped = 0;
        let messages = take_array(&mut map, "messages")
            .into_iter()
            .filter_map(|m| {
                let message = Message::from_value(m);
                skipped += usize::from(message.is_none());
                message
            })
            .collect();
        let statuses = take_array(&mut map, "statuses")
            .into_iter()
            .filter_map(|s| {
                let status = Status::from_value(s);
                skipped += usize::from(status.is_none());
                status
            })
            .collect();

        Ok(Self {
            messaging_product,
            metadata,
            contacts,
            messages,
            statuses,
            errors,
            skipped,
        })
    }
}

impl Metadata {
    fn from_value(value: &Value) -> Option<Self> {
        Some(Self {
            phone_number_id: value.get("phone_number_id").and_then(id_string)?,
            display_phone_number: value.get("display_phone_number").and_then(id_string),
        })
    }
}

impl Contact {
    fn from_value(value: &Value) -> Option<Self> {
        value.as_object()?;
        Some(Self {
            wa_id: value.get("wa_id").and_then(id_string).unwrap_or_default(),
            profile: value
                .get("profile")
                .filter(|p| p.is_object())
                .map(|p| Profile {
                    name: p.get("name").and_then(owned_str),
                }),
        })
    }
}

impl Message {
    /// `None` when the element has no `id` string (counted in [`MessagesValue::skipped`]).
    /// Public so that a stored message can be read back with the same rules.
    pub fn from_value(raw: Value) -> Option<Self> {
        let id = raw.get("id")?.as_str()?.to_owned();
        let kind = raw.get("type").and_then(owned_str).unwrap_or_default();
        let content = MessageContent::from_message(&kind, &raw);
        Some(Self {
            id,
            from: raw.get("from").and_then(owned_str).unwrap_or_default(),
            timestamp: raw.get("timestamp").and_then(timestamp).unwrap_or(0),
            context: raw.get("context").and_then(MessageContext::from_value),
            errors: raw.get("errors").map(errors_from).unwrap_or_default(),
            kind,
            content,
            raw,
        })
    }
}

impl MessageContext {
    fn from_value(value: &Value) -> Option<Self> {
        value.as_object()?;
        let flag = |key: &str| value.get(key).and_then(Value::as_bool).unwrap_or(false);
        Some(Self {
            from: value.get("from").and_then(owned_str),
            id: value.get("id").and_then(owned_str),
            forwarded: flag("forwarded"),
            frequently_forwarded: flag("frequently_forwarded"),
            referred_product: value
                .get("referred_product")
                .filter(|p| !p.is_null())
                .cloned(),
        })
    }
}

impl MessageContent {
    fn from_message(kind: &str, message: &Value) -> Self {
        // Meta keys the content object by the type's name: `{"type": "image", "image": {...}}`.
        let part = message.get(kind).filter(|p| !p.is_null());
        let object = part.filter(|p| p.is_object());
        let content = match kind {
            "text" => object
                .and_then(|t| t.get("body"))
                .and_then(owned_str)
                .map(|body| Self::Text { body }),
            "image" => object.map(Media::from_value).map(Self::Image),
            "audio" => object.map(Media::from_value).map(Self::Audio),
            "video" => object.map(Media::from_value).map(Self::Video),
            "document" => object.map(Media::from_value).map(Self::Document),
            "sticker" => object.map(Media::from_value).map(Self::Sticker),
            "location" => object.and_then(Location::from_value).map(Self::Location),
            "contacts" => part
                .and_then(Value::as_array)
                .map(|cards| Self::Contacts(cards.clone())),
            "interactive" => object.map(Interactive::from_value).map(Self::Interactive),
            "button" => object.and_then(|b| {
                Some(Self::Button {
                    text: b.get("text").and_then(owned_str)?,
                    payload: b.get("payload").and_then(owned_str),
                })
            }),
            "reaction" => object.and_then(|r| {
                Some(Self::Reaction {
                    message_id: r.get("message_id").and_then(owned_str)?,
                    emoji: r
                        .get("emoji")
                        .and_then(Value::as_str)
                        .filter(|e| !e.is_empty())
                        .map(str::to_owned),
                })
            }),
            "order" => object.cloned().map(Self::Order),
            "system" => object.cloned().map(Self::System),
            "referral" => object.cloned().map(Self::Referral),
            "unsupported" => Some(Self::Unsupported),
            _ => None,
        };
        content.unwrap_or(Self::Unknown)
    }
}

impl Media {
    fn from_value(value: &Value) -> Self {
        let text = |key: &str| value.get(key).and_then(owned_str);
        let flag = |key: &str| value.get(key).and_then(Value::as_bool);
        Self {
            id: value.get("id").and_then(id_string),
            mime_type: text("mime_type"),
            sha256: text("sha256"),
            caption: text("caption"),
            filename: text("filename"),
            voice: flag("voice"),
            animated: flag("animated"),
            url: text("url"),
        }
    }
}

impl Location {
    fn from_value(value: &Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(owned_str);
        Some(Self {
            latitude: value.get("latitude").and_then(coordinate)?,
            longitude: value.get("longitude").and_then(coordinate)?,
            name: text("name"),
            address: text("address"),
            url: text("url"),
        })
    }
}

impl Interactive {
    fn from_value(value: &Value) -> Self {
        let reply = |key: &str| value.get(key).filter(|r| r.is_object());
        let text = |reply: &Value, key: &str| reply.get(key).and_then(owned_str);
        let typed = match value.get("type").and_then(Value::as_str) {
            Some("button_reply") => reply("button_reply").and_then(|r| {
                Some(Self::ButtonReply {
                    id: text(r, "id")?,
                    title: text(r, "title")?,
                })
            }),
            Some("list_reply") => reply("list_reply").and_then(|r| {
                Some(Self::ListReply {
                    id: text(r, "id")?,
                    title: text(r, "title")?,
                    description: text(r, "description"),
                })
            }),
            Some("nfm_reply") => reply("nfm_reply").map(|r| Self::NfmReply {
                name: text(r, "name"),
                body: text(r, "body"),
                response_json: text(r, "response_json"),
            }),
            _ => None,
        };
        typed.unwrap_or_else(|| Self::Other(value.clone()))
    }
}

impl Status {
    /// `None` when the element has no `id` string (counted in [`MessagesValue::skipped`]).
    fn from_value(raw: Value) -> Option<Self> {
        let id = raw.get("id")?.as_str()?.to_owned();
        let present = |key: &str| raw.get(key).filter(|v| !v.is_null()).cloned();
        Some(Self {
            id,
            status: raw
                .get("status")
                .and_then(Value::as_str)
                .map_or_else(|| StatusKind::Other(String::new()), StatusKind::from),
            timestamp: raw.get("timestamp").and_then(timestamp).unwrap_or(0),
            recipient_id: raw
                .get("recipient_id")
                .and_then(id_string)
                .unwrap_or_default(),
            errors: raw.get("errors").map(errors_from).unwrap_or_default(),
            conversation: present("conversation"),
            pricing: present("pricing"),
            raw,
        })
    }
}

/// Reads an `errors` array, skipping entries that are not objects.
fn errors_from(value: &Value) -> Vec<WebhookError> {
    let Some(errors) = value.as_array() else {
        return Vec::new();
    };
    errors
        .iter()
        .filter(|e| e.is_object())
        .map(|e| WebhookError {
            code: e.get("code").and_then(integer).unwrap_or(0),
            title: e.get("title").and_then(owned_str),
            message: e.get("message").and_then(owned_str),
            details: e
                .get("error_data")
                .and_then(|d| d.get("details"))
                .and_then(owned_str),
        })
        .collect()
}

fn owned_str(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// Ids and phone numbers are strings from Meta, but numeric ids show up from test tools and
/// hand-written payloads; an integer is as good an id as its decimal string.
fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// An integer sent either as a JSON integer or as a decimal string.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Unix seconds; Meta sends `"1700000000"`, some senders `1700000000`.
fn timestamp(value: &Value) -> Option<i64> {
    integer(value)
}

/// A coordinate sent as a number or a numeric string. Non-finite values ("nan", "inf") are
/// refused: they are not places and would poison any distance computed from them.
fn coordinate(value: &Value) -> Option<f64> {
    let c = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }?;
    c.is_finite().then_some(c)
}

fn take_string(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    match map.remove(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn take_array(map: &mut Map<String, Value>, key: &str) -> Vec<Value> {
    match map.remove(key) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::json;

    use super::*;

    fn fixtures_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/webhook")
    }

    fn parse_json(value: &Value) -> Webhook {
        parse(value.to_string().as_bytes()).unwrap()
    }

    /// The `messages` value of a webhook with exactly one entry and one change.
    fn only_value(w: &Webhook) -> &MessagesValue {
        assert_eq!(w.entry.len(), 1, "{w:?}");
        assert_eq!(w.entry[0].changes.len(), 1, "{w:?}");
        let change = &w.entry[0].changes[0];
        assert_eq!(change.field, "messages");
        match &change.value {
            ChangeValue::Messages(v) => v,
            other => panic!("expected a messages value, got {other:?}"),
        }
    }

    fn only_message(w: &Webhook) -> &Message {
        let v = only_value(w);
        assert_eq!(v.messages.len(), 1, "{v:?}");
        assert!(v.statuses.is_empty());
        &v.messages[0]
    }

    fn only_status(w: &Webhook) -> &Status {
        let v = only_value(w);
        assert_eq!(v.statuses.len(), 1, "{v:?}");
        assert!(v.messages.is_empty());
        &v.statuses[0]
    }

    /// The field and raw value of a webhook with one non-`messages` change.
    fn only_other(w: &Webhook) -> (&str, &Value) {
        assert_eq!(w.entry.len(), 1);
        assert_eq!(w.entry[0].changes.len(), 1);
        let change = &w.entry[0].changes[0];
        match &change.value {
            ChangeValue::Other(v) => (change.field.as_str(), v),
            other => panic!("expected a raw value, got {other:?}"),
        }
    }

    fn media(m: &Message) -> &Media {
        match &m.content {
            MessageContent::Image(x)
            | MessageContent::Audio(x)
            | MessageContent::Video(x)
            | MessageContent::Document(x)
            | MessageContent::Sticker(x) => x,
            other => panic!("expected media, got {other:?}"),
        }
    }

    fn interactive(m: &Message) -> &Interactive {
        match &m.content {
            MessageContent::Interactive(i) => i,
            other => panic!("expected interactive, got {other:?}"),
        }
    }

    fn text(m: &Message) -> &str {
        match &m.content {
            MessageContent::Text { body } => body,
            other => panic!("expected text, got {other:?}"),
        }
    }

    fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                json_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }

    /// One specific assertion per fixture. Returns false for a fixture it does not know, so a
    /// new fixture cannot slip in without someone saying what it must parse to.
    fn check_fixture(name: &str, w: &Webhook) -> bool {
        match name {
            "text.json" => {
                assert_eq!(w.object, "whatsapp_business_account");
                assert_eq!(w.entry[0].id, "1234567890987654321");
                let v = only_value(w);
                assert_eq!(v.messaging_product.as_deref(), Some("whatsapp"));
                assert_eq!(v.metadata.phone_number_id, "1122334455667");
                assert_eq!(
                    v.metadata.display_phone_number.as_deref(),
                    Some("972123456789")
                );
                assert_eq!(v.contacts[0].wa_id, "972987654321");
                let profile = v.contacts[0].profile.as_ref().unwrap();
                assert_eq!(profile.name.as_deref(), Some("Test Name"));
                let m = only_message(w);
                assert_eq!(m.id, "wamid.xyzxyz");
                assert_eq!(m.from, "972987654321");
                assert_eq!(m.timestamp, 1_697_043_223);
                assert_eq!(m.kind, "text");
                assert_eq!(text(m), "Body Text");
                assert_eq!(m.context, None);
                assert!(m.errors.is_empty());
                assert_eq!(m.referral(), None);
            }
            "text_forwarded.json" => {
                let m = only_message(w);
                assert_eq!(text(m), "forwarded text");
                let ctx = m.context.as_ref().unwrap();
                assert!(ctx.forwarded && !ctx.frequently_forwarded);
                assert_eq!((ctx.from.as_deref(), ctx.id.as_deref()), (None, None));
            }
            "text_frequently_forwarded.json" => {
                let ctx = only_message(w).context.clone().unwrap();
                assert!(ctx.frequently_forwarded && !ctx.forwarded);
            }
            "text_reply_context.json" => {
                let m = only_message(w);
                assert_eq!(text(m), "replied text");
                let ctx = m.context.as_ref().unwrap();
                assert_eq!(ctx.id.as_deref(), Some("wamid.xyzxyz=="));
                assert_eq!(ctx.from.as_deref(), Some("972123456789"));
                assert!(!ctx.forwarded && !ctx.frequently_forwarded);
                assert_eq!(ctx.referred_product, None);
            }
            "referral.json" => {
                let m = only_message(w);
                // A click-to-WhatsApp message keeps its text; the ad is beside it.
                assert_eq!(text(m), "BODY");
                let referral = m.referral().unwrap();
                assert_eq!(referral["ctwa_clid"], "CTWA_CLID");
                assert_eq!(referral["source_type"], "ad or post");
            }
            "image.json" => {
                let m = only_message(w);
                assert!(matches!(m.content, MessageContent::Image(_)));
                let media = media(m);
                assert_eq!(media.id.as_deref(), Some("65463453"));
                assert_eq!(media.mime_type.as_deref(), Some("image/jpeg"));
                assert_eq!(media.sha256.as_deref(), Some("4654+8g="));
                assert_eq!((media.caption.as_ref(), media.url.as_ref()), (None, None));
                assert_eq!(m.timestamp, 1_697_043_379);
            }
            "image_with_url.json" => {
                let media = media(only_message(w));
                let url = media.url.as_deref().unwrap();
                assert!(url.starts_with("https://lookaside.fbsbx.com/"), "{url}");
            }
            "video.json" => {
                let m = only_message(w);
                assert!(matches!(m.content, MessageContent::Video(_)));
                let media = media(m);
                assert_eq!(media.id.as_deref(), Some("765756756"));
                assert_eq!(media.caption.as_deref(), Some("caption"));
                assert_eq!(media.mime_type.as_deref(), Some("video/mp4"));
                assert!(m.context.as_ref().unwrap().forwarded);
            }
            "document.json" => {
                let m = only_message(w);
                assert!(matches!(m.content, MessageContent::Document(_)));
                let media = media(m);
                assert_eq!(media.filename.as_deref(), Some("filename.pdf"));
                assert_eq!(media.caption.as_deref(), Some("caption"));
                assert_eq!(media.mime_type.as_deref(), Some("application/pdf"));
            }
            "audio.json" => {
                let m = only_message(w);
                assert!(matches!(m.content, MessageContent::Audio(_)));
                let media = media(m);
                assert_eq!(media.voice, Some(false));
                assert_eq!(media.mime_type.as_deref(), Some("audio/ogg; codecs=opus"));
                assert_eq!(media.id.as_deref(), Some("1234567890987654321"));
            }
            "voice.json" => {
                let m = only_message(w);
                assert!(matches!(m.content, MessageContent::Audio(_)));
                assert_eq!(media(m).voice, Some(true));
            }
            "sticker.json" => {
                let m = only_message(w);
                assert!(matches!(m.content, MessageContent::Sticker(_)));
                assert_eq!(media(m).animated, Some(false));
                assert_eq!(media(m).mime_type.as_deref(), Some("image/webp"));
            }
            "sticker_animated.json" => {
                assert_eq!(media(only_message(w)).animated, Some(true));
            }
            "location.json" => {
                let MessageContent::Location(l) = &only_message(w).content else {
                    panic!("not a location");
                };
                assert_eq!((l.latitude, l.longitude), (12.25089, 43.90539));
                assert_eq!((&l.name, &l.address, &l.url), (&None, &None, &None));
            }
            "location_named.json" => {
                let MessageContent::Location(l) = &only_message(w).content else {
                    panic!("not a location");
                };
                assert_eq!((l.latitude, l.longitude), (37.4611978, -122.2164385));
                assert_eq!(l.name.as_deref(), Some("Facebook HQ"));
                assert_eq!(
                    l.address.as_deref(),
                    Some("1 Hacker Way, Menlo Park, CA 94025")
                );
                assert!(
                    l.url
                        .as_deref()
                        .unwrap()
                        .starts_with("https://maps.google.com/")
                );
            }
            "contacts.json" => {
                let MessageContent::Contacts(cards) = &only_message(w).content else {
                    panic!("not contacts");
                };
                assert_eq!(cards.len(), 3);
                assert_eq!(cards[0]["name"]["formatted_name"], "Chandler Bing");
                assert_eq!(cards[2]["phones"][0]["type"], "WORK");
            }
            "interactive_button_reply.json" => {
                assert_eq!(
                    interactive(only_message(w)),
                    &Interactive::ButtonReply {
                        id: "callback_data".into(),
                        title: "title".into()
                    }
                );
            }
            "interactive_list_reply.json" => {
                assert_eq!(
                    interactive(only_message(w)),
                    &Interactive::ListReply {
                        id: "callback_data".into(),
                        title: "title".into(),
                        description: None
                    }
                );
            }
            "interactive_list_reply_description.json" => {
                let Interactive::ListReply { description, .. } = interactive(only_message(w))
                else {
                    panic!("not a list reply");
                };
                assert_eq!(description.as_deref(), Some("description"));
            }
            "interactive_nfm_reply.json" | "interactive_nfm_reply_no_flow_token.json" => {
                let m = only_message(w);
                let Interactive::NfmReply {
                    name: flow,
                    body,
                    response_json,
                } = interactive(m)
                else {
                    panic!("not an nfm_reply");
                };
                assert_eq!(
                    (flow.as_deref(), body.as_deref()),
                    (Some("flow"), Some("Sent"))
                );
                let response: Value =
                    serde_json::from_str(response_json.as_deref().unwrap()).unwrap();
                assert_eq!(response["delivery_rating"], "4");
                let has_token = name == "interactive_nfm_reply.json";
                assert_eq!(response.get("flow_token").is_some(), has_token);
                assert_eq!(
                    m.context.as_ref().unwrap().id.as_deref(),
                    Some("wamid.gvwegfretge==")
                );
            }
            "interactive_call_permission_reply_accept.json"
            | "interactive_call_permission_reply_reject.json" => {
                let Interactive::Other(raw) = interactive(only_message(w)) else {
                    panic!("a call permission reply is not modelled");
                };
                assert_eq!(raw["type"], "call_permission_reply");
                let expected = if name.ends_with("accept.json") {
                    "accept"
                } else {
                    "reject"
                };
                assert_eq!(raw["call_permission_reply"]["response"], expected);
            }
            "interactive_no_body.json" => {
                // `type: "interactive"` without its object: the message degrades, the body parses.
                let v = only_value(w);
                let m = only_message(w);
                assert_eq!(
                    (m.kind.as_str(), &m.content),
                    ("interactive", &MessageContent::Unknown)
                );
                assert_eq!(m.id, "wamid.wegrchytvwcggt=");
                assert_eq!(v.errors.len(), 1);
                assert_eq!(v.errors[0].code, 131_000);
                assert_eq!(
                    v.errors[0].details.as_deref(),
                    Some("Unsupported webhook payload")
                );
            }
            "button_quick_reply.json" | "button_quick_reply_no_context.json" => {
                let m = only_message(w);
                assert_eq!(
                    m.content,
                    MessageContent::Button {
                        payload: Some("callback_data".into()),
                        text: "title".into()
                    }
                );
                if name == "button_quick_reply.json" {
                    assert_eq!(
                        m.context.as_ref().unwrap().id.as_deref(),
                        Some("wamid.xyzxyz==")
                    );
                } else {
                    assert_eq!(m.context, None);
                    assert_eq!(m.from_user_id(), Some("US.13491208655302741918"));
                }
            }
            "reaction.json" => {
                assert_eq!(
                    only_message(w).content,
                    MessageContent::Reaction {
                        message_id: "wamid.yzxyzx=".into(),
                        emoji: Some("😮".into())
                    }
                );
            }
            "reaction_removed_empty.json" | "reaction_removed_no_emoji.json" => {
                assert_eq!(
                    only_message(w).content,
                    MessageContent::Reaction {
                        message_id: "wamid.yzxyzx=".into(),
                        emoji: None
                    }
                );
            }
            "order.json" => {
                let MessageContent::Order(order) = &only_message(w).content else {
                    panic!("not an order");
                };
                assert_eq!(order["catalog_id"], "354160437058781");
                assert_eq!(order["product_items"].as_array().unwrap().len(), 3);
                assert_eq!(
                    order["product_items"][0]["product_retailer_id"],
                    "HAMBURGER"
                );
            }
            "system_identity_change.json" => {
                let m = only_message(w);
                let MessageContent::System(system) = &m.content else {
                    panic!("not a system message");
                };
                assert_eq!(system["type"], "customer_identity_changed");
                assert_eq!(m.raw["identity"]["acknowledged"], true);
            }
            "system_phone_number_change.json" => {
                let MessageContent::System(system) = &only_message(w).content else {
                    panic!("not a system message");
                };
                assert_eq!(system["type"], "user_changed_number");
                assert_eq!(system["wa_id"], "972912345678");
                assert!(
                    only_value(w).contacts.is_empty(),
                    "this fixture has no contacts"
                );
            }
            "message_edited.json" => {
                let m = only_message(w);
                assert_eq!(
                    (m.kind.as_str(), &m.content),
                    ("edit", &MessageContent::Unknown)
                );
                let original = m.raw["edit"]["original_message_id"].as_str().unwrap();
                assert!(original.starts_with("wamid."));
            }
            "message_revoked.json" => {
                let m = only_message(w);
                assert_eq!(
                    (m.kind.as_str(), &m.content),
                    ("revoke", &MessageContent::Unknown)
                );
                assert_eq!(
                    m.raw["revoke"]["original_message_id"],
                    "<ORIGINAL_WHATSAPP_MESSAGE_ID>"
                );
            }
            "unsupported.json" | "unsupported_with_type.json" => {
                let m = only_message(w);
                assert_eq!(m.content, MessageContent::Unsupported);
                assert_eq!(m.errors.len(), 1);
                assert_eq!(m.errors[0].code, 131_051);
                assert_eq!(m.errors[0].title.as_deref(), Some("Message type unknown"));
                let details = m.errors[0].details.as_deref();
                assert_eq!(details, Some("Message type is currently not supported."));
                if name == "unsupported_with_type.json" {
                    assert_eq!(m.raw["unsupported"]["type"], "pool");
                }
            }
            "status_sent.json" => {
                let s = only_status(w);
                assert_eq!(s.status, StatusKind::Sent);
                assert_eq!(
                    (s.id.as_str(), s.recipient_id.as_str()),
                    ("wamid.xyzxyz", "972987654321")
                );
                assert_eq!(s.timestamp, 1_698_266_945);
                let conversation = s.conversation.as_ref().unwrap();
                assert_eq!(conversation["expiration_timestamp"], "1698339900");
                assert_eq!(conversation["origin"]["type"], "service");
                let pricing = s.pricing.as_ref().unwrap();
                assert_eq!(
                    (&pricing["billable"], &pricing["pricing_model"]),
                    (&json!(true), &json!("CBP"))
                );
                assert!(s.errors.is_empty());
            }
            "status_delivered.json" => {
                let s = only_status(w);
                assert_eq!(s.status, StatusKind::Delivered);
                assert_eq!(s.pricing.as_ref().unwrap()["category"], "service");
                assert_eq!(
                    s.conversation.as_ref().unwrap()["id"],
                    "7270432eae37498234f4444b35ffc5"
                );
            }
            "status_read.json" => {
                let s = only_status(w);
                assert_eq!((&s.status, s.timestamp), (&StatusKind::Read, 1_689_380_458));
            }
            "status_played.json" => {
                let s = only_status(w);
                assert_eq!(s.status, StatusKind::Other("played".into()));
                assert_eq!(s.status.as_str(), "played");
            }
            "status_failed.json" => {
                let s = only_status(w);
                assert_eq!(s.status, StatusKind::Failed);
                assert_eq!(s.errors[0].code, 130_472);
                assert!(
                    s.errors[0]
                        .details
                        .as_deref()
                        .unwrap()
                        .contains("experiment")
                );
                assert_eq!((&s.conversation, &s.pricing), (&None, &None));
            }
            "status_failed_131047_reengagement.json" => {
                let v = only_value(w);
                assert!(
                    v.contacts.is_empty(),
                    "Meta sends no contacts with this status"
                );
                let s = only_status(w);
                assert_eq!(s.status, StatusKind::Failed);
                assert_eq!(s.recipient_id, "86501452171734");
                assert_eq!(s.timestamp, 1_744_609_253);
                let error = &s.errors[0];
                assert_eq!(error.code, 131_047);
                assert_eq!(error.title.as_deref(), Some("Re-engagement message"));
                assert_eq!(error.message.as_deref(), Some("Re-engagement message"));
                assert!(error.details.as_deref().unwrap().contains("24 hours"));
            }
            "status_with_tracker.json" => {
                let s = only_status(w);
                assert_eq!(s.status, StatusKind::Sent);
                assert_eq!(s.raw["biz_opaque_callback_data"], "some data");
            }
            "status_read_group.json" => {
                let s = only_status(w);
                assert_eq!(s.status, StatusKind::Read);
                assert_eq!(s.recipient_id, "fowefinoewcnw");
                assert_eq!(s.raw["recipient_type"], "group");
                assert_eq!((&s.conversation, &s.pricing), (&None, &None));
            }
            "meta_docs/text.json" => {
                let m = only_message(w);
                assert_eq!(text(m), "Does it come in another color?");
                let contact = &only_value(w).contacts[0];
                let name = contact.profile.as_ref().and_then(|p| p.name.as_deref());
                assert_eq!(name, Some("Sheena Nelson"));
                assert_eq!(m.timestamp, 1_749_416_383);
            }
            "meta_docs/text_app_dashboard_test_sample.json" => {
                assert_eq!(w.entry[0].id, "0");
                let m = only_message(w);
                assert_eq!(
                    (m.id.as_str(), text(m)),
                    ("ABGGFlA5Fpa", "this is a text message")
                );
                assert_eq!(only_value(w).metadata.phone_number_id, "123456123");
            }
            "meta_docs/value_errors_130429_rate_limit.json" => {
                let v = only_value(w);
                assert!(v.messages.is_empty() && v.statuses.is_empty() && v.contacts.is_empty());
                assert_eq!(v.errors[0].code, 130_429);
                assert_eq!(v.errors[0].title.as_deref(), Some("Rate limit hit"));
                assert!(
                    v.errors[0]
                        .details
                        .as_deref()
                        .unwrap()
                        .contains("too many messages")
                );
            }
            _ => return check_field_fixture(name, w),
        }
        true
    }

    /// `fields/`: every non-`messages` field is kept raw, whatever it looks like.
    fn check_field_fixture(name: &str, w: &Webhook) -> bool {
        let Some(file) = name.strip_prefix("fields/") else {
            return false;
        };
        let (field, value) = only_other(w);
        if let Some(rest) = file.strip_prefix("account_update_") {
            assert_eq!(field, "account_update");
            let event = match rest {
                "account_deleted.json" => "ACCOUNT_DELETED",
                "account_disabled.json" => "DISABLED_UPDATE",
                "account_offboarded.json" => "ACCOUNT_OFFBOARDED",
                "account_reconnected.json" => "ACCOUNT_RECONNECTED",
                "account_restriction.json" => "ACCOUNT_RESTRICTION",
                "account_violation.json" => "ACCOUNT_VIOLATION",
                "ad_account_linked.json" => "AD_ACCOUNT_LINKED",
                "authentication_international_eligibility.json" => {
                    "AUTH_INTL_PRICE_ELIGIBILITY_UPDATE"
                }
                "mm_api_for_wa_terms_of_service.json" => "MM_LITE_TERMS_SIGNED",
                "partner_added.json" => "PARTNER_ADDED",
                "partner_app_installed.json" => "PARTNER_APP_INSTALLED",
                "partner_app_uninstalled.json" => "PARTNER_APP_UNINSTALLED",
                "partner_led_business_verification_status.json" => {
                    "PARTNER_CLIENT_CERTIFICATION_STATUS_UPDATE"
                }
                "partner_removed.json" | "partner_removed_wa_app_disconnection.json" => {
                    "PARTNER_REMOVED"
                }
                "pricing_tiering_update.json" => "VOLUME_BASED_PRICING_TIER_UPDATE",
                "primary_business_location_set.json" => "BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE",
                _ => return false,
            };
            assert_eq!(value["event"], event, "{name}");
            return true;
        }
        match file {
            "calls_connect_business_initiated.json" | "calls_connect_user_initiated.json" => {
                assert_eq!(field, "calls");
                assert_eq!(value["calls"][0]["event"], "connect");
            }
            "calls_terminate.json" => {
                assert_eq!(field, "calls");
                assert_eq!(value["calls"][0]["status"], "COMPLETED");
            }
            "calls_status.json" => {
                // Call statuses share the `statuses` key with message statuses; the field keeps
                // them apart.
                assert_eq!(field, "calls");
                assert_eq!(value["statuses"][0]["status"], "RINGING");
            }
            "message_template_components_update.json" => {
                assert_eq!(field, "message_template_components_update");
                assert_eq!(value["message_template_name"], "my_message_template");
            }
            "message_template_quality_update.json" => {
                assert_eq!(field, "message_template_quality_update");
                assert_eq!(value["new_quality_score"], "YELLOW");
            }
            "message_template_status_update_approved.json" => {
                assert_eq!(field, "message_template_status_update");
                assert_eq!(value["event"], "APPROVED");
            }
            "message_template_status_update_rejected.json" => {
                assert_eq!(field, "message_template_status_update");
                assert_eq!(value["event"], "REJECTED");
                assert_eq!(value["reason"], "INVALID_FORMAT");
            }
            "template_category_update.json" => {
                assert_eq!(field, "template_category_update");
                assert_eq!(value["new_category"], "MARKETING");
            }
            "smb_message_echoes_text.json" => {
                assert_eq!(field, "smb_message_echoes");
                assert_eq!(value["message_echoes"][0]["text"]["body"], "Test message");
            }
            "smb_message_echoes_delete.json" | "smb_message_echoes_edit.json" => {
                assert_eq!(field, "smb_message_echoes");
                let kind = if file.contains("delete") {
                    "revoke"
                } else {
                    "edit"
                };
                assert_eq!(value["message_echoes"][0]["type"], kind);
            }
            "user_preferences_resume.json" | "user_preferences_signup.json" => {
                assert_eq!(field, "user_preferences");
                let expected = if file.contains("resume") {
                    "resume"
                } else {
                    "signup"
                };
                assert_eq!(value["user_preferences"][0]["value"], expected);
            }
            _ => return false,
        }
        true
    }

    #[test]
    fn every_webhook_fixture_parses_to_what_it_holds() {
        let dir = fixtures_dir();
        let mut files = Vec::new();
        json_files(&dir, &mut files);
        files.sort();
        assert!(files.len() >= 80, "fixtures missing from {}", dir.display());

        let (mut checked, mut unchecked, mut not_bodies) = (0, Vec::new(), Vec::new());
        for path in &files {
            let name = path
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let bytes = std::fs::read(path).unwrap();
            let value: Value = serde_json::from_slice(&bytes).unwrap();
            if value.get("entry").is_none() {
                // The GET handshake cases, which are not POST bodies.
                not_bodies.push(name);
                continue;
            }
            let w = parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(w.object, "whatsapp_business_account", "{name}");
            for change in w.entry.iter().flat_map(|e| &e.changes) {
                if let ChangeValue::Messages(v) = &change.value {
                    assert_eq!(v.skipped, 0, "{name}");
                    for m in &v.messages {
                        assert_eq!(m.raw["id"], m.id.as_str(), "{name}");
                        assert_eq!(m.raw["type"], m.kind.as_str(), "{name}");
                    }
                }
            }
            if check_fixture(&name, &w) {
                checked += 1;
            } else {
                unchecked.push(name);
            }
        }
        assert!(
            unchecked.is_empty(),
            "add an assertion for the new fixture(s) {unchecked:?}"
        );
        assert!(
            not_bodies.iter().all(|n| n.starts_with("verification/")),
            "{not_bodies:?}"
        );
        assert_eq!(checked + not_bodies.len(), files.len());
    }

    #[test]
    fn raw_holds_the_message_exactly_as_received() {
        let message = json!({
            "from": "1", "id": "wamid.A", "timestamp": "5", "type": "text",
            "text": {"body": "hi", "future_field": [1, 2]}, "brand_new": {"x": null}
        });
        let w = parse_json(
            &json!({"object": "whatsapp_business_account", "entry": [{"id": "1",
            "changes": [{"field": "messages", "value": {"metadata": {"phone_number_id": "9"},
            "messages": [message.clone()]}}]}]}),
        );
        assert_eq!(only_message(&w).raw, message);
    }

    #[test]
    fn a_batch_keeps_every_entry_change_message_and_status_in_order() {
        let text_message = |id: &str, body: &str| {
            json!({"from": "111", "id": id, "timestamp": "1700000000", "type": "text",
                   "text": {"body": body}})
        };
        let status = |id: &str, s: &str| json!({"id": id, "status": s, "timestamp": "1700000001", "recipient_id": "111"});
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [
                {"id": "waba-1", "changes": [
                    {"field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "1555", "phone_number_id": "pn-1"},
                        "contacts": [{"wa_id": "111", "profile": {"name": "A"}},
                                     {"wa_id": "222", "profile": {"name": "B"}}],
                        "messages": [text_message("wamid.1", "one"),
                                     text_message("wamid.2", "two"),
                                     text_message("wamid.3", "three")],
                        "statuses": [status("wamid.out1", "delivered"), status("wamid.out2", "read")]
                    }},
                    {"field": "account_update", "value": {"event": "ACCOUNT_DELETED"}}
                ]},
                {"id": "waba-2", "changes": [
                    {"field": "messages", "value": {
                        "metadata": {"phone_number_id": "pn-2"},
                        "statuses": [status("wamid.out3", "failed")]
                    }},
                    {"field": "messages", "value": {
                        "metadata": {"phone_number_id": "pn-3"},
                        "messages": [text_message("wamid.4", "four")]
                    }}
                ]}
            ]
        });
        let w = parse_json(&body);
        assert_eq!(w.entry.len(), 2);
        assert_eq!(
            (w.entry[0].id.as_str(), w.entry[1].id.as_str()),
            ("waba-1", "waba-2")
        );
        let values: Vec<&MessagesValue> = w
            .entry
            .iter()
            .flat_map(|e| &e.changes)
            .filter_map(|c| match &c.value {
                ChangeValue::Messages(v) => Some(v),
                ChangeValue::Other(_) => None,
            })
            .collect();
        assert_eq!(values.len(), 3);
        let ids: Vec<&str> = values
            .iter()
            .map(|v| v.metadata.phone_number_id.as_str())
            .collect();
        assert_eq!(ids, ["pn-1", "pn-2", "pn-3"]);

        let first = values[0];
        assert_eq!(first.contacts.len(), 2);
        let bodies: Vec<&str> = first.messages.iter().map(text).collect();
        assert_eq!(bodies, ["one", "two", "three"]);
        let statuses: Vec<&StatusKind> = first.statuses.iter().map(|s| &s.status).collect();
        assert_eq!(statuses, [&StatusKind::Delivered, &StatusKind::Read]);
        assert_eq!(values[1].statuses[0].status, StatusKind::Failed);
        assert!(values[1].messages.is_empty() && values[1].contacts.is_empty());
        assert_eq!(text(&values[2].messages[0]), "four");

        let other = &w.entry[0].changes[1];
        assert_eq!(other.field, "account_update");
        assert_eq!(
            other.value,
            ChangeValue::Other(json!({"event": "ACCOUNT_DELETED"}))
        );
    }

    #[test]
    fn empty_and_missing_arrays_are_empty_not_errors() {
        let w = parse_json(&json!({"object": "whatsapp_business_account", "entry": []}));
        assert!(w.entry.is_empty());

        let w = parse_json(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1"}]}));
        assert!(w.entry[0].changes.is_empty());

        let w = parse_json(&json!({"entry": [{"id": "1", "changes": []}]}));
        assert!(w.entry[0].changes.is_empty());
        assert_eq!(w.object, "");

        for value in [
            json!({"metadata": {"phone_number_id": "9"}, "contacts": [], "messages": [],
                   "statuses": [], "errors": []}),
            json!({"metadata": {"phone_number_id": "9"}}),
            json!({"metadata": {"phone_number_id": "9"}, "contacts": null, "messages": null,
                   "statuses": null, "errors": null}),
        ] {
            let w = parse_json(
                &json!({"entry": [{"changes": [{"field": "messages", "value": value}]}]}),
            );
            let v = only_value(&w);
            assert!(v.contacts.is_empty() && v.messages.is_empty());
            assert!(v.statuses.is_empty() && v.errors.is_empty());
            assert_eq!((v.skipped, v.messaging_product.as_deref()), (0, None));
            assert_eq!(v.metadata.display_phone_number, None);
        }
    }

    #[test]
    fn missing_contacts_and_profiles_are_fine() {
        let message = json!({"from": "1", "id": "wamid.A", "timestamp": "5", "type": "text",
                             "text": {"body": "hi"}});
        let with = |contacts: Value| {
            let value = json!({"metadata": {"phone_number_id": "9"}, "contacts": contacts,
                               "messages": [message.clone()]});
            parse_json(&json!({"entry": [{"changes": [{"field": "messages", "value": value}]}]}))
        };
        let w = with(json!([{"wa_id": "1"}]));
        assert_eq!(
            only_value(&w).contacts,
            [Contact {
                wa_id: "1".into(),
                profile: None
            }]
        );

        let w = with(json!([{"wa_id": "1", "profile": {}}]));
        assert_eq!(
            only_value(&w).contacts[0].profile,
            Some(Profile { name: None })
        );

        // A contact known only by its business-scoped id still counts as a contact.
        let w = with(json!([{"user_id": "US.1", "profile": {"name": "N"}}]));
        assert_eq!(only_value(&w).contacts[0].wa_id, "");

        let w = with(json!(["not a contact", 7]));
        assert!(only_value(&w).contacts.is_empty());
        assert_eq!(text(only_message(&w)), "hi");
    }

    #[test]
    fn timestamps_may_be_strings_or_integers() {
        let message = |ts: Value| {
            let m = json!({"from": "1", "id": "wamid.A", "timestamp": ts, "type": "text",
                           "text": {"body": "hi"}});
            let status = json!({"id": "wamid.B", "status": "sent", "timestamp": ts});
            let value = json!({"metadata": {"phone_number_id": "9"}, "messages": [m],
                               "statuses": [status]});
            let w = parse_json(
                &json!({"entry": [{"changes": [{"field": "messages", "value": value}]}]}),
            );
            let v = only_value(&w);
            (v.messages[0].timestamp, v.statuses[0].timestamp)
        };
        assert_eq!(message(json!("1700000000")), (1_700_000_000, 1_700_000_000));
        assert_eq!(
            message(json!(1_700_000_000)),
            (1_700_000_000, 1_700_000_000)
        );
        // Unreadable timestamps degrade to 0 instead of dropping the message.
        assert_eq!(message(json!("yesterday")), (0, 0));
        assert_eq!(message(json!(1.5)), (0, 0));
        assert_eq!(message(json!(null)), (0, 0));
        assert_eq!(message(json!(u64::MAX)), (0, 0));
    }

    #[test]
    fn unknown_message_types_become_unknown_with_their_raw_object() {
        let m = json!({"from": "1", "id": "wamid.A", "timestamp": "5", "type": "hologram",
                       "hologram": {"frames": 3}});
        let value = json!({"metadata": {"phone_number_id": "9"}, "messages": [m.clone()]});
        let w =
            parse_json(&json!({"entry": [{"changes": [{"field": "messages", "value": value}]}]}));
        let message = only_message(&w);
        assert_eq!(message.content, MessageContent::Unknown);
        assert_eq!(message.kind, "hologram");
        assert_eq!(message.raw, m);
        assert_eq!(message.from, "1");
    }

    #[test]
    fn malformed_elements_degrade_without_failing_the_body() {
        let messages = json!([
            42,
            "wamid.string",
            {"from": "1", "timestamp": "5", "type": "text", "text": {"body": "no id"}},
            {"id": 123, "from": "1", "type": "text", "text": {"body": "numeric id"}},
            {"id": "wamid.image", "from": "1", "timestamp": "5", "type": "image"},
            {"id": "wamid.image-str", "type": "image", "image": "not an object"},
            {"id": "wamid.text", "type": "text", "text": {"body": 5}},
            {"id": "wamid.loc", "type": "location", "location": {"latitude": 1.0}},
            {"id": "wamid.loc-nan", "type": "location", "location": {"latitude": "nan", "longitude": 1}},
            {"id": "wamid.button", "type": "interactive",
             "interactive": {"type": "button_reply", "button_reply": {"id": "x"}}},
            {"id": "wamid.reaction", "type": "reaction", "reaction": {"emoji": "x"}},
            {"id": "wamid.contacts", "type": "contacts", "contacts": {"not": "a list"}},
            {"id": "wamid.no-type", "from": 5, "context": "not an object", "errors": "nope"},
            {"id": "wamid.good", "from": "1", "timestamp": "5", "type": "text", "text": {"body": "ok"}}
        ]);
        let statuses = json!([
            {"status": "read"},
            null,
            {"id": "wamid.s", "status": 3, "errors": [{"code": "131047"}, {"title": "no code"}, 1]}
        ]);
        let value = json!({"metadata": {"phone_number_id": "9"}, "messages": messages,
                           "statuses": statuses});
        let w =
            parse_json(&json!({"entry": [{"changes": [{"field": "messages", "value": value}]}]}));
        let v = only_value(&w);
        // 42, the string, the id-less and the numeric-id messages, the id-less and null statuses.
        assert_eq!(v.skipped, 6);

        let got: Vec<(&str, &MessageContent)> = v
            .messages
            .iter()
            .map(|m| (m.id.as_str(), &m.content))
            .collect();
        let unknown = &MessageContent::Unknown;
        let button = MessageContent::Interactive(Interactive::Other(
            json!({"type": "button_reply", "button_reply": {"id": "x"}}),
        ));
        let ok = MessageContent::Text { body: "ok".into() };
        assert_eq!(
            got,
            [
                ("wamid.image", unknown),
                ("wamid.image-str", unknown),
                ("wamid.text", unknown),
                ("wamid.loc", unknown),
                ("wamid.loc-nan", unknown),
                ("wamid.button", &button),
                ("wamid.reaction", unknown),
                ("wamid.contacts", unknown),
                ("wamid.no-type", unknown),
                ("wamid.good", &ok),
            ]
        );
        // Whatever could be read is kept.
        assert_eq!(
            (v.messages[0].from.as_str(), v.messages[0].timestamp),
            ("1", 5)
        );
        assert_eq!(v.messages[0].kind, "image");
        let no_type = &v.messages[8];
        assert_eq!((no_type.kind.as_str(), no_type.from.as_str()), ("", ""));
        assert_eq!((&no_type.context, no_type.errors.len()), (&None, 0));

        assert_eq!(v.statuses.len(), 1);
        let status = &v.statuses[0];
        assert_eq!(status.status, StatusKind::Other(String::new()));
        let codes: Vec<i64> = status.errors.iter().map(|e| e.code).collect();
        assert_eq!(codes, [131_047, 0]);
    }

    #[test]
    fn malformed_changes_and_entries_are_kept_or_emptied_not_fatal() {
        let w = parse_json(&json!({"entry": [
            "not an entry",
            {"id": 42, "changes": "not a list"},
            {"id": "1", "changes": [
                7,
                {"value": {"a": 1}},
                {"field": "messages"},
                {"field": "messages", "value": []},
                {"field": "messages", "value": {"messages": []}},
                {"field": "messages", "value": {"metadata": {"phone_number_id": 106_540_352_242_922_u64}}}
            ]}
        ]}));
        assert_eq!(w.entry.len(), 3);
        assert_eq!((w.entry[0].id.as_str(), w.entry[0].changes.len()), ("", 0));
        assert_eq!(
            (w.entry[1].id.as_str(), w.entry[1].changes.len()),
            ("42", 0)
        );
        let changes = &w.entry[2].changes;
        assert_eq!(
            changes[0],
            Change {
                field: String::new(),
                value: ChangeValue::Other(json!(7))
            }
        );
        assert_eq!(changes[1].value, ChangeValue::Other(json!({"a": 1})));
        assert_eq!(changes[2].value, ChangeValue::Other(Value::Null));
        assert_eq!(changes[3].value, ChangeValue::Other(json!([])));
        // No phone number id: it cannot be routed, so it stays raw.
        assert_eq!(
            changes[4].value,
            ChangeValue::Other(json!({"messages": []}))
        );
        let ChangeValue::Messages(v) = &changes[5].value else {
            panic!("a numeric phone number id is still an id");
        };
        assert_eq!(v.metadata.phone_number_id, "106540352242922");
    }

    #[test]
    fn a_body_that_is_not_json_fails() {
        for body in [
            &b""[..],
            b"not json",
            b"{\"entry\": [",
            b"\xff\xfe",
            b"{} trailing",
        ] {
            assert!(parse(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn a_root_that_is_not_a_webhook_fails() {
        for body in [
            "[]",
            "null",
            "42",
            "\"entry\"",
            r#"{"entry": {}}"#,
            r#"{"entry": "x"}"#,
        ] {
            assert!(parse(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn an_empty_object_is_a_webhook_with_no_entries() {
        let w = parse(b"{}").unwrap();
        assert_eq!(
            w,
            Webhook {
                object: String::new(),
                entry: Vec::new()
            }
        );
        let w = parse(br#"{"object": "whatsapp_business_account", "entry": null}"#).unwrap();
        assert!(w.entry.is_empty());
    }

    #[test]
    fn status_kinds_round_trip_through_their_names() {
        for name in [
            "sent",
            "delivered",
            "read",
            "failed",
            "played",
            "deleted",
            "warning",
            "",
        ] {
            assert_eq!(StatusKind::from(name).as_str(), name);
        }
        assert_eq!(StatusKind::from("Read"), StatusKind::Other("Read".into()));
    }
}
