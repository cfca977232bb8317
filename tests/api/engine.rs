//! The conversation engine end to end: signed webhooks in, model calls to mock vendors speaking
//! the real wire formats, replies out through a mock Graph API.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{Account, TestApp, fixture, spawn_app_with};
use crate::webhooks::{SECRET, post_signed};

pub const PHONE: &str = "1065";

/// An OpenAI-compatible server that streams back "echo: " + the user messages of the request,
/// joined with " | ", in Chat Completions SSE chunks.
pub struct EchoOpenAi {
    pub prefix: String,
}

pub fn user_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        })
        .collect()
}

impl Respond for EchoOpenAi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        // Only the newest user messages: those after the last assistant message.
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last_assistant = messages.iter().rposition(|m| m["role"] == "assistant");
        let current: Vec<String> = messages
            .iter()
            .skip(last_assistant.map_or(0, |i| i + 1))
            .filter(|m| m["role"] == "user")
            .map(|m| user_texts(&json!({"messages": [m]})).join(""))
            .collect();
        let reply = format!("{}{}", self.prefix, current.join(" | "));
        let mut sse = String::new();
        // Two deltas, so the provider has to put the reply back together.
        let cut = reply
            .char_indices()
            .nth(reply.chars().count() / 2)
            .map_or(reply.len(), |(i, _)| i);
        for piece in [&reply[..cut], &reply[cut..]] {
            let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": null}]});
            sse.push_str(&format!("data: {chunk}\n\n"));
        }
        let done = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}});
        sse.push_str(&format!("data: {done}\n\ndata: [DONE]\n\n"));
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/event-stream")
            .set_body_string(sse)
    }
}

pub struct Env {
    pub app: TestApp,
    pub graph: MockServer,
    pub llm: MockServer,
    pub ana: Account,
    pub integration: String,
    pub bot: String,
}

/// An app whose integration has a bot on a provider pointing at `llm`, and Graph at `graph`.
pub async fn env(
    provider_type: &str,
    configure: impl FnOnce(&mut parley::config::Settings),
) -> Env {
    let graph = MockServer::start().await;
    let llm = MockServer::start().await;
    mount_graph(&graph).await;
    let uri = graph.uri();
    let app = spawn_app_with(|s| {
        s.whatsapp_graph_url = uri.parse().unwrap();
        s.coalesce_window = Duration::from_millis(30);
        s.llm_timeout = Duration::from_secs(5);
        s.llm_max_retries = 0;
        configure(s);
    })
    .await;
    let (ana, bot, integration) = bot_setup(&app, provider_type, &llm.uri()).await;
    Env {
        app,
        graph,
        llm,
        ana,
        integration,
        bot,
    }
}

/// Graph's send endpoint: read receipts succeed, messages get a fresh wamid.
pub async fn mount_graph(graph: &MockServer) {
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
        .mount(graph)
        .await;
}

/// A tenant with a provider of `provider_type` at `llm_uri`, a bot on it and an integration
/// (contact collection on) linked to the bot: `(owner, bot id, integration id)`.
pub async fn bot_setup(
    app: &TestApp,
    provider_type: &str,
    llm_uri: &str,
) -> (Account, String, String) {
    let ana = app.signup("Ana").await;
    let base = match provider_type {
        "anthropic" => llm_uri.to_owned(),
        _ => format!("{llm_uri}/v1"),
    };
    let provider: Value = app
        .post(
            "/api/v1/provider/create",
            &ana.token,
            &json!({"name": "mock", "type": provider_type, "baseUrl": base, "apiKey": "sk-test"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let model = if provider_type == "anthropic" {
        "claude-sonnet-4-5/maxTokens=256"
    } else {
        "gpt-4o-mini/temperature=0.2"
    };
    let bot: Value = app
        .post(
            "/api/v1/bot/create",
            &ana.token,
            &json!({"name": "Echo", "backstory": "You are a test bot.", "model": model, "providerId": provider["id"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let bot = bot["id"].as_str().unwrap().to_owned();
    let integration = app
        .create_integration(
            &ana,
            json!({"appSecret": SECRET, "phoneNumberId": PHONE, "accessToken": "EAAG-token", "botId": bot, "contactCollection": true}),
        )
        .await;
    (ana, bot, integration)
}

pub fn text_webhook(wamid: &str, from: &str, text: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "1555", "phone_number_id": PHONE},
        "contacts": [{"wa_id": from, "profile": {"name": "Zoë"}}],
        "messages": [{"from": from, "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": text}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

/// The text messages Graph received, in order, per recipient.
pub async fn sent_texts(graph: &MockServer) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for req in graph.received_requests().await.unwrap_or_default() {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if body["type"] == "text" {
            out.entry(body["to"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .push(body["text"]["body"].as_str().unwrap_or_default().to_owned());
        }
    }
    out
}

/// Waits (polling, bounded) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn replies_to(graph: &MockServer, to: &str) -> Vec<String> {
    sent_texts(graph).await.remove(to).unwrap_or_default()
}

#[tokio::test]
async fn a_text_message_gets_a_reply_through_an_openai_compatible_model() {
    let e = env("openai", |_| {}).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: "**echo**: ".into(),
        })
        .mount(&e.llm)
        .await;
    let res = post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.1", "447700900001", "hello there"),
    )
    .await;
    assert_eq!(res.status(), 200);
    eventually("the reply", || async {
        !replies_to(&e.graph, "447700900001").await.is_empty()
    })
    .await;
    assert_eq!(
        replies_to(&e.graph, "447700900001").await,
        vec!["*echo*: hello there"]
    );

    // The request carried the backstory, the model parameters and the audit metadata.
    let req = &e.llm.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], "You are a test bot.");
    assert!(
        body["user"]
            .as_str()
            .is_some_and(|u| !u.contains("447700900001"))
    );
    // The inbound message was marked read with the typing indicator.
    let graph_bodies: Vec<Value> = e
        .graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(graph_bodies.iter().any(|b| b["status"] == "read"
        && b["message_id"] == "wamid.in.1"
        && b["typing_indicator"]["type"] == "text"));

    // Stored as a conversation with both messages and token counts, and a contact.
    let convs = e
        .app
        .fetch_json("/api/v1/conversation/list", &e.ana.token)
        .await;
    let conv = convs["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(convs["items"][0]["botId"], e.bot.as_str());
    let msgs = e
        .app
        .fetch_json(
            &format!("/api/v1/conversation/{conv}/message/list?order=asc"),
            &e.ana.token,
        )
        .await;
    let items = msgs["items"].as_array().unwrap();
    assert_eq!(items[0]["type"], "user");
    assert_eq!(items[0]["text"], "hello there");
    assert_eq!(items[1]["type"], "bot");
    assert_eq!(items[1]["deliveryStatus"], "sent");
    let contacts = e.app.fetch_json("/api/v1/contact/list", &e.ana.token).await;
    assert_eq!(contacts["items"][0]["name"], "Zoë");
    assert_eq!(contacts["items"][0]["fingerprint"], "whatsapp:447700900001");
}

/// Anthropic's Messages API streaming back a fixed text.
struct AnthropicText(String);

impl Respond for AnthropicText {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut sse = String::new();
        sse.push_str(&ev("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude", "stop_reason": null, "usage": {"input_tokens": 25, "output_tokens": 1}}})));
        sse.push_str(&ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
        sse.push_str(&ev("ping", json!({"type": "ping"})));
        sse.push_str(&ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": &self.0}})));
        sse.push_str(&ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        sse.push_str(&ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}})));
        sse.push_str(&ev("message_stop", json!({"type": "message_stop"})));
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/event-stream")
            .set_body_string(sse)
    }
}

#[tokio::test]
async fn a_text_message_gets_a_reply_through_anthropic() {
    let e = env("anthropic", |_| {}).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(AnthropicText("## Hours\nWe open at *9*.".into()))
        .mount(&e.llm)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.a", "447700900002", "when do you open?"),
    )
    .await;
    eventually("the reply", || async {
        !replies_to(&e.graph, "447700900002").await.is_empty()
    })
    .await;
    assert_eq!(
        replies_to(&e.graph, "447700900002").await,
        vec!["*Hours*\nWe open at _9_."]
    );
    let req = &e.llm.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["system"], "You are a test bot.");
    assert_eq!(body["max_tokens"], 256);
    assert_eq!(req.headers.get("x-api-key").unwrap(), "sk-test");
}

#[tokio::test]
async fn a_long_reply_is_split_into_ordered_parts() {
    let e = env("anthropic", |_| {}).await;
    let paragraphs: Vec<String> = (0..30)
        .map(|i| format!("Paragraph {i}: {}", "word ".repeat(60)))
        .collect();
    let long = paragraphs.join("\n\n");
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(AnthropicText(long.clone()))
        .mount(&e.llm)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.long", "447700900003", "tell me everything"),
    )
    .await;
    eventually("all parts", || async {
        let r = replies_to(&e.graph, "447700900003").await;
        r.len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let parts = replies_to(&e.graph, "447700900003").await;
    assert!(parts.iter().all(|p| p.chars().count() <= 4096));
    let joined = parts.join("\n\n");
    for i in 0..30 {
        assert!(joined.contains(&format!("Paragraph {i}:")));
    }
    let positions: Vec<usize> = (0..30)
        .map(|i| joined.find(&format!("Paragraph {i}:")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "parts in order");
}

#[tokio::test]
async fn reset_ends_the_session_without_calling_the_model() {
    let e = env("openai", |_| {}).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: String::new(),
        })
        .mount(&e.llm)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.r1", "447700900004", "first"),
    )
    .await;
    eventually("first reply", || async {
        replies_to(&e.graph, "447700900004").await.len() == 1
    })
    .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.r2", "447700900004", "  /RESET "),
    )
    .await;
    eventually("reset confirmation", || async {
        replies_to(&e.graph, "447700900004").await.len() == 2
    })
    .await;
    assert_eq!(
        e.llm.received_requests().await.unwrap().len(),
        1,
        "the command never reached the model"
    );
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.r3", "447700900004", "second"),
    )
    .await;
    eventually("third reply", || async {
        replies_to(&e.graph, "447700900004").await.len() == 3
    })
    .await;
    let replies = replies_to(&e.graph, "447700900004").await;
    assert_eq!(
        replies[2], "second",
        "the new session has no history: {replies:?}"
    );
    let convs = e
        .app
        .fetch_json("/api/v1/conversation/list?order=asc", &e.ana.token)
        .await;
    let items = convs["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0]["endedAt"].is_i64());
    assert!(items[1]["endedAt"].is_null());
    // The model of the second session saw only "second".
    let last: Value =
        serde_json::from_slice(&e.llm.received_requests().await.unwrap()[1].body).unwrap();
    assert_eq!(user_texts(&last), vec!["second"]);
    // The turn that started the session built its history from what its claim stored, without
    // reading it back; the next turn reads the conversation, which must hold that message.
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.r4", "447700900004", "third"),
    )
    .await;
    eventually("fourth reply", || async {
        replies_to(&e.graph, "447700900004").await.len() == 4
    })
    .await;
    let last: Value =
        serde_json::from_slice(&e.llm.received_requests().await.unwrap()[2].body).unwrap();
    assert_eq!(user_texts(&last), vec!["second", "third"]);
}

#[tokio::test]
async fn an_integration_can_add_its_own_reset_commands() {
    let e = env("openai", |_| {}).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: String::new(),
        })
        .expect(0)
        .mount(&e.llm)
        .await;
    e.app
        .post(
            &format!("/api/v1/integration/whatsapp/{}/update", e.integration),
            &e.ana.token,
            &json!({"resetCommands": ["Start over"]}),
        )
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.c1", "447700900005", "start OVER"),
    )
    .await;
    eventually("confirmation", || async {
        replies_to(&e.graph, "447700900005").await.len() == 1
    })
    .await;
}

#[tokio::test]
async fn a_session_expires_after_its_duration() {
    let e = env("openai", |_| {}).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: String::new(),
        })
        .mount(&e.llm)
        .await;
    e.app
        .post(
            &format!("/api/v1/integration/whatsapp/{}/update", e.integration),
            &e.ana.token,
            &json!({"sessionDuration": 1000}),
        )
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.s1", "447700900006", "one"),
    )
    .await;
    eventually("first reply", || async {
        replies_to(&e.graph, "447700900006").await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The periodic sweep marks it ended...
    parley::engine::session::close_expired(e.app.state.store().db())
        .await
        .unwrap();
    let convs = e
        .app
        .fetch_json("/api/v1/conversation/list", &e.ana.token)
        .await;
    assert!(convs["items"][0]["endedAt"].is_i64());
    // ...and the next message starts a new conversation.
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.s2", "447700900006", "two"),
    )
    .await;
    eventually("second reply", || async {
        replies_to(&e.graph, "447700900006").await.len() == 2
    })
    .await;
    let convs = e
        .app
        .fetch_json("/api/v1/conversation/list", &e.ana.token)
        .await;
    assert_eq!(convs["items"].as_array().unwrap().len(), 2);
    let last: Value =
        serde_json::from_slice(&e.llm.received_requests().await.unwrap()[1].body).unwrap();
    assert_eq!(user_texts(&last), vec!["two"]);
}

#[tokio::test]
async fn a_burst_of_messages_is_coalesced_into_one_turn() {
    let e = env("openai", |s| s.coalesce_window = Duration::from_millis(400)).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: String::new(),
        })
        .mount(&e.llm)
        .await;
    for (i, text) in ["hi", "are you there", "I need help"].iter().enumerate() {
        post_signed(
            &e.app,
            &e.integration,
            &text_webhook(&format!("wamid.burst.{i}"), "447700900007", text),
        )
        .await;
    }
    eventually("the reply", || async {
        !replies_to(&e.graph, "447700900007").await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        replies_to(&e.graph, "447700900007").await,
        vec!["hi | are you there | I need help"]
    );
    assert_eq!(e.llm.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn fifty_contacts_sending_twenty_messages_each_are_answered_in_order() {
    let e = env("openai", |s| s.worker_concurrency = 8).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: String::new(),
        })
        .mount(&e.llm)
        .await;
    let mut tasks = Vec::new();
    for c in 0..50 {
        let (client, url) = (
            e.app.client.clone(),
            e.app.url(&format!(
                "/api/v1/integration/whatsapp/{}/callback",
                e.integration
            )),
        );
        tasks.push(tokio::spawn(async move {
            for m in 0..20 {
                let body = text_webhook(
                    &format!("wamid.o.{c}.{m}"),
                    &format!("44770091{c:04}"),
                    &format!("c{c}m{m}"),
                );
                let sig = parley::channels::whatsapp::signature::sign(SECRET.as_bytes(), &body);
                let res = client
                    .post(&url)
                    .header("x-hub-signature-256", sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eventually("every message answered", || async {
        let sent = sent_texts(&e.graph).await;
        (0..50).all(|c| {
            let joined = sent
                .get(&format!("44770091{c:04}"))
                .map(|v| v.join(" | "))
                .unwrap_or_default();
            joined.contains(&format!("c{c}m19"))
        })
    })
    .await;
    let sent = sent_texts(&e.graph).await;
    for c in 0..50 {
        let replies = &sent[&format!("44770091{c:04}")];
        let seen: Vec<String> = replies
            .iter()
            .flat_map(|r| r.split(" | ").map(str::to_owned))
            .collect();
        let want: Vec<String> = (0..20).map(|m| format!("c{c}m{m}")).collect();
        assert_eq!(
            seen, want,
            "contact {c}: every message answered once, in order"
        );
    }
}

#[tokio::test]
async fn metas_131047_fails_the_part_without_retrying_and_190_flags_the_integration() {
    let e = env("openai", |_| {}).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: String::new(),
        })
        .mount(&e.llm)
        .await;
    // A dedicated Graph mock that rejects sends; mounted with priority over the default.
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .and(move |req: &Request| serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| b["to"] == "447700900008"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException", "code": 131047, "error_data": {"messaging_product": "whatsapp", "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}})))
        .with_priority(1)
        .expect(1)
        .mount(&e.graph)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.f1", "447700900008", "late"),
    )
    .await;
    eventually("the failure recorded", || async {
        let ev = e
            .app
            .fetch_json(
                "/api/v1/event/log/list?type=whatsapp.message.failed",
                &e.ana.token,
            )
            .await;
        !ev["items"].as_array().unwrap().is_empty()
    })
    .await;
    let ev = e
        .app
        .fetch_json(
            "/api/v1/event/log/list?type=whatsapp.message.failed",
            &e.ana.token,
        )
        .await;
    assert_eq!(ev["items"][0]["meta"]["code"], 131047);

    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .and(move |req: &Request| {
            serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| b["to"] == "447700900009")
        })
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string(fixture("graph/error_190_expired_token.json")),
        )
        .with_priority(1)
        .expect(1)
        .mount(&e.graph)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.f2", "447700900009", "hello?"),
    )
    .await;
    eventually("the integration flagged", || async {
        let got = e
            .app
            .fetch_json(
                &format!("/api/v1/integration/whatsapp/{}/fetch", e.integration),
                &e.ana.token,
            )
            .await;
        got["status"] == "token_invalid"
    })
    .await;
}

#[tokio::test]
async fn a_model_timeout_gets_one_apology_and_the_next_message_works() {
    let e = env("openai", |s| {
        s.llm_timeout = Duration::from_millis(500);
        s.apology_text = "Sorry, try again soon.".into();
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&e.llm)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: String::new(),
        })
        .mount(&e.llm)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.t1", "447700900010", "slow?"),
    )
    .await;
    eventually("the apology", || async {
        replies_to(&e.graph, "447700900010").await.len() == 1
    })
    .await;
    assert_eq!(
        replies_to(&e.graph, "447700900010").await,
        vec!["Sorry, try again soon."]
    );
    let ev = e
        .app
        .fetch_json("/api/v1/event/log/list?type=bot.reply.failed", &e.ana.token)
        .await;
    assert_eq!(ev["items"].as_array().unwrap().len(), 1);
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.t2", "447700900010", "now?"),
    )
    .await;
    eventually("a normal reply", || async {
        replies_to(&e.graph, "447700900010").await.len() == 2
    })
    .await;
    assert_eq!(replies_to(&e.graph, "447700900010").await[1], "now?");
}

#[tokio::test]
async fn sessions_live_in_redis_when_it_is_configured() {
    use deadpool_redis::redis::AsyncCommands;
    let Some(url) = crate::helpers::redis_url() else {
        eprintln!("!!! SKIPPED: TEST_REDIS_URL is not set");
        return;
    };
    let e = env("openai", |s| s.redis_url = Some(url.clone().into())).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: String::new(),
        })
        .mount(&e.llm)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.redis.1", "447700900011", "hi"),
    )
    .await;
    eventually("the reply", || async {
        replies_to(&e.graph, "447700900011").await.len() == 1
    })
    .await;
    let key = format!("parley:session:{}:447700900011", e.integration);
    let mut conn = e.app.state.redis().unwrap().get().await.unwrap();
    let current: Option<String> = conn.get(&key).await.unwrap();
    let convs = e
        .app
        .fetch_json("/api/v1/conversation/list", &e.ana.token)
        .await;
    assert_eq!(current.as_deref(), convs["items"][0]["id"].as_str());
    let ttl: i64 = conn.pttl(&key).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 86_400_000,
        "TTL is the session duration: {ttl}"
    );
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.redis.2", "447700900011", "/new"),
    )
    .await;
    eventually("the confirmation", || async {
        replies_to(&e.graph, "447700900011").await.len() == 2
    })
    .await;
    let gone: Option<String> = conn.get(&key).await.unwrap();
    assert_eq!(gone, None, "reset clears the session key");
}
