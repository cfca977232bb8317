//! Feeds arbitrary bytes to the webhook parser. It must never panic, must fail only for the
//! reasons `parse` documents, and what it returns must agree with the raw JSON it kept.

#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use parley::channels::whatsapp::webhook::{
    self, ChangeValue, Interactive, Message, MessageContent, Status, Webhook,
};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    match webhook::parse(data) {
        Ok(w) => walk(&w),
        Err(_) => {
            // Only three reasons to refuse a body: not JSON, not an object, `entry` not an array.
            if let Ok(root) = serde_json::from_slice::<Value>(data) {
                let entry_unusable = root
                    .get("entry")
                    .is_some_and(|e| !e.is_array() && !e.is_null());
                assert!(!root.is_object() || entry_unusable, "refused a usable body");
            }
        }
    }
});

fn walk(w: &Webhook) {
    black_box(&w.object);
    for entry in &w.entry {
        black_box(&entry.id);
        for change in &entry.changes {
            black_box(&change.field);
            match &change.value {
                ChangeValue::Messages(v) => {
                    assert_eq!(change.field, "messages");
                    black_box((&v.messaging_product, &v.metadata, &v.contacts, &v.errors));
                    black_box(v.skipped);
                    v.messages.iter().for_each(message);
                    v.statuses.iter().for_each(status);
                }
                ChangeValue::Other(raw) => {
                    black_box(raw);
                }
            }
        }
    }
}

fn message(m: &Message) {
    // The typed fields are read from `raw`, so they must agree with it.
    assert_eq!(m.raw["id"].as_str(), Some(m.id.as_str()));
    assert_eq!(m.raw["type"].as_str().unwrap_or(""), m.kind);
    black_box((
        &m.from,
        m.timestamp,
        &m.context,
        &m.errors,
        m.referral(),
        m.from_user_id(),
    ));
    match &m.content {
        MessageContent::Text { body } => assert_eq!(m.raw["text"]["body"].as_str(), Some(&**body)),
        MessageContent::Image(media)
        | MessageContent::Audio(media)
        | MessageContent::Video(media)
        | MessageContent::Document(media)
        | MessageContent::Sticker(media) => {
            assert!(m.raw[m.kind.as_str()].is_object());
            black_box(media);
        }
        MessageContent::Location(l) => {
            assert!(l.latitude.is_finite() && l.longitude.is_finite());
            black_box(l);
        }
        MessageContent::Contacts(cards) => assert!(m.raw["contacts"].as_array() == Some(cards)),
        MessageContent::Interactive(i) => {
            assert!(m.raw["interactive"].is_object());
            if let Interactive::Other(raw) = i {
                assert_eq!(raw, &m.raw["interactive"]);
            }
            black_box(i);
        }
        MessageContent::Button { payload, text } => {
            black_box((payload, text));
        }
        MessageContent::Reaction { message_id, emoji } => {
            assert_ne!(emoji.as_deref(), Some(""));
            black_box((message_id, emoji));
        }
        MessageContent::Order(v) | MessageContent::System(v) | MessageContent::Referral(v) => {
            assert!(v.is_object());
        }
        MessageContent::Unsupported => assert_eq!(m.kind, "unsupported"),
        MessageContent::Unknown => {}
    }
}

fn status(s: &Status) {
    assert_eq!(s.raw["id"].as_str(), Some(s.id.as_str()));
    black_box((s.status.as_str(), s.timestamp, &s.recipient_id, &s.errors));
    black_box((&s.conversation, &s.pricing));
}
