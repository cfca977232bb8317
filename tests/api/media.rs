//! Inbound media and structured messages end to end: signed webhooks in, media downloaded from a
//! mock Graph API (its media endpoints and a CDN that expires URLs), files stored, and what the
//! mock model vendors received asserted, with what the database kept.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use parley::store::entities::{file, message};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::engine::{EchoOpenAi, PHONE, eventually, sent_texts, user_texts};
use crate::helpers::{Account, TestApp, fixture, spawn_app_with};
use crate::webhooks::{SECRET, post_signed};

const TOKEN: &str = "EAAG-media-token";

struct Env {
    app: TestApp,
    graph: MockServer,
    llm: MockServer,
    ana: Account,
    integration: String,
}

/// Options of one test's setup.
#[derive(Default)]
struct Setup {
    attachments: bool,
    bot_vision: bool,
    show_reactions: bool,
    vision_model: Option<&'static str>,
    transcription_model: Option<&'static str>,
    anthropic: bool,
}

async fn env(setup: Setup, configure: impl FnOnce(&mut parley::config::Settings)) -> Env {
    let graph = MockServer::start().await;
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PHONE}/messages")))
        .respond_with(move |req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            if body["status"] == "read" {
                return ResponseTemplate::new(200).set_body_json(json!({"success": true}));
            }
            let n = uuid::Uuid::new_v4().simple().to_string();
            ResponseTemplate::new(200).set_body_json(json!({
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": format!("wamid.out.{n}")}]
            }))
        })
        .mount(&graph)
        .await;
    if setup.anthropic {
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": "seen"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 5, "output_tokens": 1}
            })))
            .mount(&llm)
            .await;
    } else {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(EchoOpenAi {
                prefix: "echo: ".into(),
            })
            .mount(&llm)
            .await;
    }
    let uri = graph.uri();
    let app = spawn_app_with(|s| {
        s.whatsapp_graph_url = uri.parse().unwrap();
        s.coalesce_window = Duration::from_millis(30);
        s.llm_timeout = Duration::from_secs(5);
        s.llm_max_retries = 0;
        configure(s);
    })
    .await;
    let ana = app.signup("Ana").await;
    let (kind, base) = if setup.anthropic {
        ("anthropic", llm.uri())
    } else {
        ("openai", format!("{}/v1", llm.uri()))
    };
    let mut provider = json!({"name": "mock", "type": kind, "baseUrl": base, "apiKey": "sk-test"});
    if let Some(m) = setup.vision_model {
        provider["visionModel"] = json!(m);
    }
    if let Some(m) = setup.transcription_model {
        provider["transcriptionModel"] = json!(m);
    }
    let provider: Value = app
        .post("/api/v1/provider/create", &ana.token, &provider)
        .await
        .json()
        .await
        .unwrap();
    let model = if setup.anthropic {
        "claude-sonnet-4-5/maxTokens=256"
    } else {
        "gpt-4o-mini/temperature=0.2"
    };
    let bot: Value = app
        .post(
            "/api/v1/bot/create",
            &ana.token,
            &json!({"name": "Eyes", "model": model, "providerId": provider["id"],
                    "vision": setup.bot_vision, "showReactions": setup.show_reactions}),
        )
        .await
        .json()
        .await
        .unwrap();
    let integration = app
        .create_integration(
            &ana,
            json!({"appSecret": SECRET, "phoneNumberId": PHONE, "accessToken": TOKEN,
                   "botId": bot["id"], "attachments": setup.attachments}),
        )
        .await;
    Env {
        app,
        graph,
        llm,
        ana,
        integration,
    }
}

/// A webhook carrying `message` (a Cloud API message object) from `from`, with its id set.
fn webhook(wamid: &str, from: &str, mut message: Value) -> Vec<u8> {
    message["id"] = json!(wamid);
    message["from"] = json!(from);
    json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "1555", "phone_number_id": PHONE},
        "contacts": [{"wa_id": from, "profile": {"name": "Zoë"}}],
        "messages": [message]
    }}]}]})
    .to_string()
    .into_bytes()
}

/// The first message object of a webhook fixture.
fn fixture_message(name: &str) -> Value {
    let v: Value = serde_json::from_str(&fixture(&format!("webhook/{name}.json"))).unwrap();
    v["entry"][0]["changes"][0]["value"]["messages"][0].clone()
}

/// Mounts Graph's media endpoint for `media_id` and a CDN URL serving `bytes`, both only with
/// the integration's token.
async fn serve_media(graph: &MockServer, media_id: &str, mime: &str, bytes: &[u8]) {
    let url = format!("{}/cdn/{media_id}", graph.uri());
    Mock::given(method("GET"))
        .and(path(format!("/v23.0/{media_id}")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "url": url, "mime_type": mime, "sha256": "ignored", "file_size": bytes.len(),
            "id": media_id, "messaging_product": "whatsapp"
        })))
        .mount(graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/cdn/{media_id}")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", mime)
                .set_body_bytes(bytes.to_vec()),
        )
        .mount(graph)
        .await;
}

/// The model requests, as JSON.
async fn llm_requests(llm: &MockServer) -> Vec<Value> {
    llm.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().ends_with("/chat/completions") || r.url.path() == "/v1/messages")
        .map(|r| serde_json::from_slice(&r.body).unwrap_or_default())
        .collect()
}

async fn wait_for_llm_calls(e: &Env, n: usize) -> Vec<Value> {
    eventually("the model call", || async {
        llm_requests(&e.llm).await.len() >= n
    })
    .await;
    llm_requests(&e.llm).await
}

/// The newest user message's content parts (OpenAI wire format).
fn last_user_parts(body: &Value) -> Vec<Value> {
    let user = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .cloned()
        .unwrap();
    match &user["content"] {
        Value::Array(parts) => parts.clone(),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        _ => Vec::new(),
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn files_of(app: &TestApp, tenant_id: &str) -> Vec<file::Model> {
    file::Entity::find()
        .filter(file::Column::TenantId.eq(tenant_id))
        .order_by_asc(file::Column::Id)
        .all(app.state.store().db())
        .await
        .unwrap()
}

async fn user_message(app: &TestApp, wamid: &str) -> message::Model {
    message::Entity::find()
        .filter(message::Column::Wamid.eq(wamid))
        .one(app.state.store().db())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no message {wamid}"))
}

/// Some bytes that look like a JPEG to nobody but us.
fn photo() -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend((0..2000u32).map(|i| (i * 7 % 251) as u8));
    b
}

#[tokio::test]
async fn a_photo_reaches_a_vision_bot_as_an_image_and_is_stored_as_a_linked_file() {
    let e = env(
        Setup {
            attachments: true,
            bot_vision: true,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let bytes = photo();
    serve_media(&e.graph, "media-photo-1", "image/jpeg", &bytes).await;
    let mut msg = fixture_message("image");
    msg["image"]["id"] = json!("media-photo-1");
    msg["image"]["caption"] = json!("what is this?");
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.photo.1", "447700900001", msg),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let parts = last_user_parts(&calls[0]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    assert_eq!(
        parts[1]["image_url"]["url"],
        format!("data:image/jpeg;base64,{b64}"),
        "{parts:?}"
    );
    assert!(parts[0]["text"].as_str().unwrap().contains("what is this?"));
    assert_eq!(calls[0]["model"], "gpt-4o-mini");

    // Stored once, under its hash, linked to the message and its conversation.
    let files = files_of(&e.app, &e.ana.tenant_id).await;
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!(f.sha256, sha256(&bytes));
    assert_eq!(f.size, bytes.len() as i64);
    assert_eq!(f.mime_type, "image/jpeg");
    let m = user_message(&e.app, "wamid.photo.1").await;
    assert_eq!(f.message_id.as_deref(), Some(m.id.as_str()));
    assert_eq!(
        f.conversation_id.as_deref(),
        Some(m.conversation_id.as_str())
    );
    assert_eq!(m.meta["fileIds"], json!([f.id]));
    let on_disk = e
        .app
        .settings
        .data_dir
        .join("files")
        .join(&f.sha256[..2])
        .join(&f.sha256);
    assert_eq!(std::fs::read(on_disk).unwrap(), bytes);

    // And the API shows it, as ChatBotKit's file resource.
    let listed = e
        .app
        .fetch_json(
            &format!("/api/v1/conversation/{}/attachment/list", m.conversation_id),
            &e.ana.token,
        )
        .await;
    assert_eq!(listed["items"][0]["id"], f.id.as_str());
    assert_eq!(listed["items"][0]["type"], "image/jpeg");
    assert_eq!(listed["items"][0]["size"], bytes.len());
    let fetched = e
        .app
        .fetch_json(&format!("/api/v1/file/{}/fetch", f.id), &e.ana.token)
        .await;
    assert_eq!(fetched["sha256"], f.sha256.as_str());
    let all = e.app.fetch_json("/api/v1/file/list", &e.ana.token).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    let res = e
        .app
        .get(&format!("/api/v1/file/{}/download", f.id), &e.ana.token)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes);
    // Another tenant sees none of it.
    let bob = e.app.signup("Bob").await;
    let res = e
        .app
        .get(&format!("/api/v1/file/{}/download", f.id), &bob.token)
        .await;
    assert_eq!(res.status(), 404);
    assert!(
        parley::files::read(&e.app.state, &bob.tenant_id, &f.id)
            .await
            .is_err()
    );
    let (_, read) = parley::files::read(&e.app.state, &e.ana.tenant_id, &f.id)
        .await
        .unwrap();
    assert_eq!(read, bytes);
}

#[tokio::test]
async fn an_expired_media_url_is_fetched_afresh_once() {
    let e = env(
        Setup {
            attachments: true,
            bot_vision: true,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let bytes = photo();
    // The first URL has expired: the CDN answers 404 once.
    Mock::given(method("GET"))
        .and(path("/cdn/media-old"))
        .respond_with(ResponseTemplate::new(404))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&e.graph)
        .await;
    serve_media(&e.graph, "media-old", "image/png", &bytes).await;
    post_signed(
        &e.app,
        &e.integration,
        &webhook(
            "wamid.expired.1",
            "447700900002",
            json!({"timestamp": "1700000000", "type": "image", "image": {"id": "media-old", "mime_type": "image/png"}}),
        ),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let parts = last_user_parts(&calls[0]);
    assert!(
        parts[1]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    let received = e.graph.received_requests().await.unwrap();
    let lookups = received
        .iter()
        .filter(|r| r.url.path() == "/v23.0/media-old")
        .count();
    let downloads = received
        .iter()
        .filter(|r| r.url.path() == "/cdn/media-old")
        .count();
    assert_eq!((lookups, downloads), (2, 2));
    assert_eq!(
        files_of(&e.app, &e.ana.tenant_id).await[0].sha256,
        sha256(&bytes)
    );
}

#[tokio::test]
async fn without_vision_the_providers_vision_model_answers_turns_with_images() {
    let e = env(
        Setup {
            attachments: true,
            vision_model: Some("gpt-4o"),
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    serve_media(&e.graph, "media-v", "image/jpeg", &photo()).await;
    let mut msg = fixture_message("image");
    msg["image"]["id"] = json!("media-v");
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.v.1", "447700900003", msg),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    assert_eq!(calls[0]["model"], "gpt-4o");
    assert!(
        last_user_parts(&calls[0])
            .iter()
            .any(|p| p["type"] == "image_url")
    );
}

#[tokio::test]
async fn a_bot_that_cannot_see_is_told_an_image_arrived() {
    let e = env(
        Setup {
            attachments: true,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    serve_media(&e.graph, "media-blind", "image/jpeg", &photo()).await;
    let mut msg = fixture_message("image");
    msg["image"]["id"] = json!("media-blind");
    msg["image"]["caption"] = json!("look");
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.b.1", "447700900004", msg),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let parts = last_user_parts(&calls[0]);
    assert!(parts.iter().all(|p| p["type"] != "image_url"), "{parts:?}");
    let text = user_texts(&calls[0]).join("\n");
    assert!(text.contains("cannot see"), "{text}");
    assert!(text.contains("look"), "{text}");
    assert_eq!(calls[0]["model"], "gpt-4o-mini");
    // The file is kept all the same.
    assert_eq!(files_of(&e.app, &e.ana.tenant_id).await.len(), 1);
}

#[tokio::test]
async fn anthropic_gets_the_image_as_a_base64_source() {
    let e = env(
        Setup {
            attachments: true,
            bot_vision: true,
            anthropic: true,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let bytes = photo();
    serve_media(&e.graph, "media-a", "image/webp", &bytes).await;
    post_signed(
        &e.app,
        &e.integration,
        &webhook(
            "wamid.a.1",
            "447700900005",
            fixture_message("sticker").tap(|m| m["sticker"]["id"] = json!("media-a")),
        ),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let user = calls[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .unwrap()
        .clone();
    let image = user["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "image")
        .unwrap()
        .clone();
    assert_eq!(image["source"]["media_type"], "image/webp");
    assert_eq!(
        image["source"]["data"],
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
}

#[tokio::test]
async fn a_voice_note_is_transcribed_and_the_transcript_is_the_users_text() {
    let e = env(
        Setup {
            attachments: true,
            transcription_model: Some("whisper-1"),
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let audio = b"OggS fake opus payload".repeat(20);
    serve_media(
        &e.graph,
        "1234567890987654321",
        "audio/ogg; codecs=opus",
        &audio,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/transcriptions"))
        .and(header("authorization", "Bearer sk-test"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"text": " Book a table for two at eight. "})),
        )
        .expect(1)
        .mount(&e.llm)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.voice.1", "447700900006", fixture_message("voice")),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let text = user_texts(&calls[0]).join("\n");
    assert!(text.contains("Book a table for two at eight."), "{text}");
    assert!(text.contains("voice message"), "{text}");
    // The transcription request was multipart, with the model and the audio itself.
    let req = e
        .llm
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == "/v1/audio/transcriptions")
        .unwrap();
    let ct = req.headers["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("multipart/form-data"), "{ct}");
    let body = String::from_utf8_lossy(&req.body);
    assert!(body.contains("whisper-1"));
    assert!(body.contains("OggS fake opus payload"));
    // Stored with the message and the file.
    let m = user_message(&e.app, "wamid.voice.1").await;
    assert!(m.text.contains("Book a table for two at eight."));
    assert_eq!(m.meta["transcript"], "Book a table for two at eight.");
    let f = &files_of(&e.app, &e.ana.tenant_id).await[0];
    assert_eq!(f.meta["transcript"], "Book a table for two at eight.");
    assert_eq!(f.sha256, sha256(&audio));
}

/// A one-page PDF with `text` on it.
fn pdf_with(text: &str) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let resources_id = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font_id}});
    let content = Content {
        operations: vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 12.into()]),
            Operation::new("Td", vec![72.into(), 700.into()]),
            Operation::new("Tj", vec![Object::string_literal(text)]),
            Operation::new("ET", vec![]),
        ],
    };
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

#[tokio::test]
async fn a_pdf_and_a_text_file_are_read_as_bounded_context() {
    let e = env(
        Setup {
            attachments: true,
            ..Setup::default()
        },
        |s| s.media.document_text_chars = 60,
    )
    .await;
    let pdf = pdf_with("Invoice 4711 total due 99 EUR by Friday");
    serve_media(&e.graph, "media-pdf", "application/pdf", &pdf).await;
    let long = "line of notes\n".repeat(40);
    serve_media(&e.graph, "media-txt", "text/plain", long.as_bytes()).await;
    let mut doc = fixture_message("document");
    doc["document"]["id"] = json!("media-pdf");
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.doc.1", "447700900007", doc),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let text = user_texts(&calls[0]).join("\n");
    assert!(
        text.contains("Invoice 4711 total due 99 EUR by Friday"),
        "{text}"
    );
    assert!(text.contains("filename.pdf"), "{text}");
    assert!(text.contains("caption"), "{text}");

    let txt = json!({"timestamp": "1700000000", "type": "document",
        "document": {"id": "media-txt", "mime_type": "text/plain", "filename": "notes.txt"}});
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.doc.2", "447700900007", txt),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 2).await;
    let last = last_user_parts(&calls[1])[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(last.contains("notes.txt"), "{last}");
    assert!(last.contains("the rest of the document was cut"), "{last}");
    assert!(last.matches("line of notes").count() <= 5, "{last}");
    let files = files_of(&e.app, &e.ana.tenant_id).await;
    assert_eq!(
        files.iter().map(|f| f.sha256.clone()).collect::<Vec<_>>(),
        vec![sha256(&pdf), sha256(long.as_bytes())]
    );
}

#[tokio::test]
async fn with_attachments_off_the_model_is_told_media_arrived_and_nothing_is_downloaded() {
    let e = env(Setup::default(), |_| {}).await;
    let mut msg = fixture_message("video");
    msg["video"]["caption"] = json!("my cat");
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.off.1", "447700900008", msg),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let text = user_texts(&calls[0]).join("\n");
    assert!(
        text.contains("sent a video, which you cannot see"),
        "{text}"
    );
    assert!(text.contains("my cat"), "{text}");
    let media_calls = e
        .graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(media_calls, 0);
    assert!(files_of(&e.app, &e.ana.tenant_id).await.is_empty());
}

#[tokio::test]
async fn a_failed_download_still_answers_the_caption_and_logs_an_event() {
    let e = env(
        Setup {
            attachments: true,
            bot_vision: true,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/v23.0/media-gone"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string(fixture("graph/error_100_invalid_parameter.json")),
        )
        .mount(&e.graph)
        .await;
    let mut msg = fixture_message("image");
    msg["image"]["id"] = json!("media-gone");
    msg["image"]["caption"] = json!("is this broken?");
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.fail.1", "447700900009", msg),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let text = user_texts(&calls[0]).join("\n");
    assert!(text.contains("is this broken?"), "{text}");
    assert!(text.contains("could not be downloaded"), "{text}");
    eventually("the reply", || async {
        !sent_texts(&e.graph).await.is_empty()
    })
    .await;
    let events = e
        .app
        .fetch_json("/api/v1/event/log/list?take=100", &e.ana.token)
        .await;
    let failed: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ev| ev["type"] == "whatsapp.media.failed")
        .collect();
    assert_eq!(failed.len(), 1, "{events}");
    assert!(!failed[0].to_string().contains(TOKEN));
    assert!(files_of(&e.app, &e.ana.tenant_id).await.is_empty());
}

/// Each structured kind, one turn each, and the text the model got for it.
#[tokio::test]
async fn structured_messages_reach_the_model_as_text_with_ids_and_titles() {
    let e = env(Setup::default(), |_| {}).await;
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "interactive_button_reply",
            vec!["tapped the button", "(id: "],
        ),
        (
            "interactive_list_reply_description",
            vec!["chose \"title\" (id: callback_data)", "description"],
        ),
        (
            "interactive_nfm_reply",
            vec!["filled in the form", "Comment Text", "delivery_rating"],
        ),
        ("button_quick_reply", vec!["\"title\" (id: callback_data)"]),
        (
            "location_named",
            vec!["Facebook HQ", "1 Hacker Way", "37.4611978", "-122.2164385"],
        ),
        (
            "contacts",
            vec![
                "Chandler Bing",
                "+1 555-555-5555",
                "Monica",
                "+1 666-666-6666",
            ],
        ),
        (
            "order",
            vec![
                "3 × HAMBURGER at 30 ILS",
                "2 × FRENCH_FRIES at 35 ILS",
                "total 180 ILS",
            ],
        ),
    ];
    for (i, (name, wanted)) in cases.iter().enumerate() {
        let mut msg = fixture_message(name);
        // Replies to messages we never stored: the model hears that, without a quote.
        msg.as_object_mut().unwrap().remove("context");
        post_signed(
            &e.app,
            &e.integration,
            &webhook(&format!("wamid.s.{i}"), "447700900010", msg),
        )
        .await;
        let calls = wait_for_llm_calls(&e, i + 1).await;
        let text = last_user_parts(&calls[i])[0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        for w in wanted {
            assert!(text.contains(w), "{name}: {w:?} not in {text:?}");
        }
    }
}

#[tokio::test]
async fn a_reply_includes_the_quoted_message() {
    let e = env(Setup::default(), |_| {}).await;
    post_signed(
        &e.app,
        &e.integration,
        &webhook(
            "wamid.q.1",
            "447700900011",
            json!({"timestamp": "1700000000", "type": "text", "text": {"body": "Do you deliver to Haifa?"}}),
        ),
    )
    .await;
    wait_for_llm_calls(&e, 1).await;
    let mut reply = fixture_message("text_reply_context");
    reply["context"]["id"] = json!("wamid.q.1");
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.q.2", "447700900011", reply),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 2).await;
    let text = last_user_parts(&calls[1])[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains("[replying to: \"Do you deliver to Haifa?\"]"),
        "{text}"
    );
    assert!(text.contains("replied text"), "{text}");
}

/// The wamid Graph gave the bot's first reply.
async fn first_bot_wamid(e: &Env) -> String {
    for _ in 0..600 {
        let sent = message::Entity::find()
            .filter(message::Column::Kind.eq("bot"))
            .filter(message::Column::Wamid.is_not_null())
            .order_by_asc(message::Column::Id)
            .one(e.app.state.store().db())
            .await
            .unwrap()
            .and_then(|m| m.wamid);
        if let Some(w) = sent {
            return w;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the bot's reply was never sent");
}

async fn reaction_flow(show_reactions: bool) -> (Env, Vec<Value>) {
    let e = env(
        Setup {
            show_reactions,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let text =
        |body: &str| json!({"timestamp": "1700000000", "type": "text", "text": {"body": body}});
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.r.1", "447700900012", text("hello")),
    )
    .await;
    wait_for_llm_calls(&e, 1).await;
    let target = first_bot_wamid(&e).await;
    let mut reaction = fixture_message("reaction");
    reaction["reaction"]["message_id"] = json!(target);
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.r.2", "447700900012", reaction),
    )
    .await;
    // Recorded against the bot's message, and no turn: no model call, no reply.
    eventually("the reaction to be recorded", || async {
        message::Entity::find()
            .filter(message::Column::Wamid.eq(target.as_str()))
            .one(e.app.state.store().db())
            .await
            .unwrap()
            .is_some_and(|m| m.meta["reaction"]["emoji"] == "😮")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(llm_requests(&e.llm).await.len(), 1);
    assert_eq!(sent_texts(&e.graph).await["447700900012"].len(), 1);
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.r.3", "447700900012", text("thanks")),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 2).await;
    (e, calls)
}

#[tokio::test]
async fn a_reaction_is_recorded_on_its_message_and_starts_no_turn() {
    let (e, calls) = reaction_flow(false).await;
    let all = user_texts(&calls[1]).join("\n");
    assert!(!all.contains("reacted"), "{all}");
    // Taking the reaction back clears it, again without a turn.
    let target = first_bot_wamid(&e).await;
    let mut removed = fixture_message("reaction_removed_empty");
    removed["reaction"]["message_id"] = json!(target);
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.r.4", "447700900012", removed),
    )
    .await;
    eventually("the reaction to be cleared", || async {
        message::Entity::find()
            .filter(message::Column::Wamid.eq(target.as_str()))
            .one(e.app.state.store().db())
            .await
            .unwrap()
            .is_some_and(|m| m.meta.get("reaction").is_none())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(llm_requests(&e.llm).await.len(), 2);
}

#[tokio::test]
async fn a_bot_with_show_reactions_sees_them_in_the_history() {
    let (_e, calls) = reaction_flow(true).await;
    let all = user_texts(&calls[1]).join("\n");
    assert!(all.contains("[reacted 😮 to: \"echo: hello\"]"), "{all}");
}

#[tokio::test]
async fn an_unsupported_message_gets_a_polite_reply_without_the_model() {
    let e = env(Setup::default(), |_| {}).await;
    post_signed(
        &e.app,
        &e.integration,
        &webhook(
            "wamid.u.1",
            "447700900013",
            fixture_message("unsupported_with_type"),
        ),
    )
    .await;
    eventually("the reply", || async {
        !sent_texts(&e.graph).await.is_empty()
    })
    .await;
    let reply = &sent_texts(&e.graph).await["447700900013"][0];
    assert!(reply.contains("can't read that kind of message"), "{reply}");
    assert!(reply.contains("locations"), "{reply}");
    assert!(llm_requests(&e.llm).await.is_empty());
}

/// Download limits, straight against the Graph client: the declared size, `Content-Length`
/// and the streamed body are each enough to refuse, and types outside the list are refused.
#[tokio::test]
async fn media_size_and_type_limits() {
    struct Case {
        name: &'static str,
        declared: Option<u64>,
        body: usize,
        chunked: bool,
        mime: &'static str,
        limit: u64,
        ok: bool,
    }
    let cases = [
        Case {
            name: "under the limit",
            declared: Some(100),
            body: 100,
            chunked: false,
            mime: "image/jpeg",
            limit: 1000,
            ok: true,
        },
        Case {
            name: "exactly the limit",
            declared: Some(1000),
            body: 1000,
            chunked: false,
            mime: "image/jpeg",
            limit: 1000,
            ok: true,
        },
        Case {
            name: "declared too large",
            declared: Some(5000),
            body: 100,
            chunked: false,
            mime: "image/jpeg",
            limit: 1000,
            ok: false,
        },
        Case {
            name: "content-length too large",
            declared: None,
            body: 1001,
            chunked: false,
            mime: "image/jpeg",
            limit: 1000,
            ok: false,
        },
        Case {
            name: "streamed past the limit",
            declared: None,
            body: 4000,
            chunked: true,
            mime: "image/jpeg",
            limit: 1000,
            ok: false,
        },
        Case {
            name: "streamed under the limit",
            declared: None,
            body: 900,
            chunked: true,
            mime: "image/jpeg",
            limit: 1000,
            ok: true,
        },
        Case {
            name: "type not allowed",
            declared: Some(10),
            body: 10,
            chunked: false,
            mime: "application/x-msdownload",
            limit: 1000,
            ok: false,
        },
    ];
    for case in cases {
        let graph = MockServer::start().await;
        let cdn = if case.chunked {
            chunked_server(vec![7u8; case.body]).await
        } else {
            let cdn = MockServer::start().await;
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![7u8; case.body]))
                .mount(&cdn)
                .await;
            cdn.uri()
        };
        let mut info = json!({"url": format!("{cdn}/file"), "mime_type": case.mime, "id": "m"});
        if let Some(d) = case.declared {
            info["file_size"] = json!(d);
        }
        Mock::given(method("GET"))
            .and(path("/v23.0/m"))
            .respond_with(ResponseTemplate::new(200).set_body_json(info))
            .mount(&graph)
            .await;
        let client = parley::channels::whatsapp::graph::GraphClient::new(
            graph.uri().parse().unwrap(),
            "v23.0".into(),
            Duration::from_secs(5),
        )
        .unwrap();
        let types = vec!["image/*".to_owned()];
        let allowed = |m: &str| parley::media::type_allowed(&types, m);
        let got = client
            .download_media(
                "m",
                &secrecy::SecretString::from(TOKEN),
                case.limit,
                &allowed,
            )
            .await;
        match (&got, case.ok) {
            (Ok(d), true) => assert_eq!(d.bytes.len(), case.body, "{}", case.name),
            (Err(_), false) => {}
            _ => panic!("{}: {got:?}", case.name),
        }
    }
}

/// A server answering every request with `body` in chunked encoding (no Content-Length), so
/// only counting while streaming can catch an oversized body. Serves until the test ends.
async fn chunked_server(body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
                for chunk in body.chunks(256) {
                    out.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend(chunk);
                    out.extend(b"\r\n");
                }
                out.extend(b"0\r\n\r\n");
                let _ = sock.write_all(&out).await;
            });
        }
    });
    format!("http://{addr}")
}

/// In the pipeline, an image over the limit is not stored and the model is told so.
#[tokio::test]
async fn an_image_over_the_limit_is_refused_in_the_pipeline() {
    let e = env(
        Setup {
            attachments: true,
            bot_vision: true,
            ..Setup::default()
        },
        |s| s.media.image_max_bytes = 100,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/cdn/big"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![1u8; 5000]))
        .mount(&e.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v23.0/big"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"url": format!("{}/cdn/big", e.graph.uri()), "mime_type": "image/jpeg", "id": "big"}),
        ))
        .mount(&e.graph)
        .await;
    let mut msg = fixture_message("image");
    msg["image"]["id"] = json!("big");
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.big.1", "447700900014", msg),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let text = user_texts(&calls[0]).join("\n");
    assert!(text.contains("could not be downloaded"), "{text}");
    assert!(files_of(&e.app, &e.ana.tenant_id).await.is_empty());
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for Value {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[tokio::test]
async fn a_video_is_stored_and_the_model_is_told_it_cannot_watch_it() {
    let e = env(
        Setup {
            attachments: true,
            bot_vision: true,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let clip = b"\x00\x00\x00\x18ftypmp42 not a real movie".to_vec();
    serve_media(&e.graph, "media-clip", "video/mp4", &clip).await;
    let mut msg = fixture_message("video");
    msg["video"]["id"] = json!("media-clip");
    msg["video"]["caption"] = json!("our new shop");
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.vid.1", "447700900015", msg),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let parts = last_user_parts(&calls[0]);
    assert!(parts.iter().all(|p| p["type"] != "image_url"), "{parts:?}");
    let text = user_texts(&calls[0]).join("\n");
    assert!(
        text.contains("[video, which you cannot watch] our new shop"),
        "{text}"
    );
    let files = files_of(&e.app, &e.ana.tenant_id).await;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].sha256, sha256(&clip));
    assert_eq!(files[0].mime_type, "video/mp4");
    let m = user_message(&e.app, "wamid.vid.1").await;
    assert_eq!(files[0].message_id.as_deref(), Some(m.id.as_str()));
}

#[tokio::test]
async fn a_failed_transcription_tells_the_model_and_logs_an_event() {
    let e = env(
        Setup {
            attachments: true,
            transcription_model: Some("whisper-1"),
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    serve_media(&e.graph, "1234567890987654321", "audio/ogg", b"OggS...").await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/transcriptions"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&e.llm)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &webhook("wamid.voice.2", "447700900016", fixture_message("voice")),
    )
    .await;
    let calls = wait_for_llm_calls(&e, 1).await;
    let text = user_texts(&calls[0]).join("\n");
    assert!(
        text.contains("voice message, which cannot be transcribed"),
        "{text}"
    );
    let events = e
        .app
        .fetch_json("/api/v1/event/log/list?take=100", &e.ana.token)
        .await;
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ev| ev["type"] == "bot.transcription.failed"),
        "{events}"
    );
    // The audio is kept, so the transcript can be made later.
    assert_eq!(files_of(&e.app, &e.ana.tenant_id).await.len(), 1);
}

#[tokio::test]
async fn a_url_that_stays_expired_is_asked_for_only_twice() {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v23.0/stale"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"url": format!("{}/cdn/stale", graph.uri()), "mime_type": "image/jpeg", "id": "stale"}),
        ))
        .expect(2)
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/stale"))
        .respond_with(ResponseTemplate::new(403))
        .expect(2)
        .mount(&graph)
        .await;
    let client = parley::channels::whatsapp::graph::GraphClient::new(
        graph.uri().parse().unwrap(),
        "v23.0".into(),
        Duration::from_secs(5),
    )
    .unwrap();
    let got = client
        .download_media("stale", &secrecy::SecretString::from(TOKEN), 1000, &|_| {
            true
        })
        .await;
    assert!(
        matches!(
            got,
            Err(parley::channels::whatsapp::graph::MediaError::Download(403))
        ),
        "{got:?}"
    );
}

/// A turn resumed after a crash prepares its messages again: the stored file (and its
/// transcript) is reused, nothing is downloaded or transcribed twice.
#[tokio::test]
async fn preparing_a_message_again_reuses_its_file_and_transcript() {
    use parley::store::entities::{inbound_message, whatsapp_integration};
    let e = env(
        Setup {
            attachments: true,
            transcription_model: Some("whisper-1"),
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    serve_media(&e.graph, "media-once", "audio/ogg", b"OggS once").await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/transcriptions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"text": "only once"})))
        .expect(1)
        .mount(&e.llm)
        .await;
    let integration = whatsapp_integration::Entity::find_by_id(e.integration.clone())
        .one(e.app.state.store().db())
        .await
        .unwrap()
        .unwrap();
    let mut voice = fixture_message("voice");
    voice["audio"]["id"] = json!("media-once");
    let row = inbound_message::Model {
        id: "inb_resumed".into(),
        tenant_id: e.ana.tenant_id.clone(),
        integration_id: e.integration.clone(),
        wamid: "wamid.resumed".into(),
        wa_id: "447700900017".into(),
        kind: "audio".into(),
        payload: json!({"message": voice}).to_string(),
        state: "queued".into(),
        sent_at: 0,
        received_at: 0,
        updated_at: 0,
        turn_id: None,
    };
    let first =
        parley::engine::input::prepare_turn(&e.app.state, &integration, std::slice::from_ref(&row))
            .await
            .unwrap();
    let again = parley::engine::input::prepare_turn(&e.app.state, &integration, &[row])
        .await
        .unwrap();
    assert_eq!(first, again);
    assert!(first[0].text.contains("only once"), "{:?}", first[0]);
    let lookups = e
        .graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v23.0/media-once")
        .count();
    assert_eq!(lookups, 1);
    assert_eq!(files_of(&e.app, &e.ana.tenant_id).await.len(), 1);
}
