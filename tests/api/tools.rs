//! The WhatsApp tools end to end: a model (mock OpenAI-compatible and Anthropic servers
//! speaking their real wire formats, streamed and not) calls the tools; the mock Graph API must
//! receive the exact Cloud API JSON for each, in the order the model produced them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::engine::{Env, PHONE, env, eventually, text_webhook};
use crate::helpers::{TestDb, spawn_app_on, test_settings};
use crate::webhooks::post_signed;

/// How the mock model answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Wire {
    OpenAiStream,
    OpenAiJson,
    AnthropicStream,
    AnthropicJson,
}

impl Wire {
    fn provider(self) -> &'static str {
        match self {
            Wire::OpenAiStream | Wire::OpenAiJson => "openai",
            Wire::AnthropicStream | Wire::AnthropicJson => "anthropic",
        }
    }

    fn path(self) -> &'static str {
        match self.provider() {
            "openai" => "/v1/chat/completions",
            _ => "/v1/messages",
        }
    }
}

/// One model answer: some text, then tool calls.
#[derive(Clone, Debug)]
pub struct Step {
    pub text: &'static str,
    pub calls: Vec<(&'static str, Value)>,
}

pub fn step(text: &'static str, calls: Vec<(&'static str, Value)>) -> Step {
    Step { text, calls }
}

/// A model that answers round `n` of a turn (the number of tool-calling assistant messages in
/// the request) with `steps[n]`, and with `final_text` when asked to answer without tools.
pub struct Scripted {
    pub wire: Wire,
    pub steps: Vec<Step>,
    pub final_text: &'static str,
}

/// How many tool rounds the request replays.
fn round_of(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["role"] == "assistant"
                && (m["tool_calls"].is_array()
                    || m["content"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_use")))
        })
        .count()
}

fn tool_choice_none(body: &Value) -> bool {
    body["tool_choice"] == "none" || body["tool_choice"]["type"] == "none"
}

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let round = round_of(&body);
        let step = if tool_choice_none(&body) {
            step(self.final_text, vec![])
        } else {
            self.steps
                .get(round)
                .cloned()
                .unwrap_or_else(|| step(self.final_text, vec![]))
        };
        render(self.wire, round, &step)
    }
}

/// `step` in the wire format.
pub fn render(wire: Wire, round: usize, step: &Step) -> ResponseTemplate {
    let id = |i: usize| match wire.provider() {
        "openai" => format!("call_{round}_{i}"),
        _ => format!("toolu_{round}_{i}"),
    };
    let calls = !step.calls.is_empty();
    match wire {
        Wire::OpenAiJson => {
            let tool_calls: Vec<Value> = step
                .calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| {
                    json!({"id": id(i), "type": "function", "function": {"name": name, "arguments": args.to_string()}})
                })
                .collect();
            let mut message = json!({"role": "assistant", "content": if step.text.is_empty() { Value::Null } else { json!(step.text) }, "refusal": null});
            if calls {
                message["tool_calls"] = json!(tool_calls);
            }
            ResponseTemplate::new(200).set_body_json(json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": message, "logprobs": null,
                    "finish_reason": if calls { "tool_calls" } else { "stop" }}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
            }))
        }
        Wire::OpenAiStream => {
            let chunk = |delta: Value, finish: Value| {
                let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
                format!("data: {c}\n\n")
            };
            let mut sse = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
            // The text in two deltas, then each call: id and name first, arguments in pieces.
            let cut = step
                .text
                .char_indices()
                .nth(step.text.chars().count() / 2)
                .map_or(step.text.len(), |(i, _)| i);
            for piece in [&step.text[..cut], &step.text[cut..]] {
                if !piece.is_empty() {
                    sse.push_str(&chunk(json!({"content": piece}), Value::Null));
                }
            }
            for (i, (name, args)) in step.calls.iter().enumerate() {
                sse.push_str(&chunk(
                    json!({"tool_calls": [{"index": i, "id": id(i), "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                let args = args.to_string();
                let cut = args
                    .char_indices()
                    .nth(args.chars().count() / 3)
                    .map_or(args.len(), |(i, _)| i);
                for piece in [&args[..cut], &args[cut..]] {
                    sse.push_str(&chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                        Value::Null,
                    ));
                }
            }
            sse.push_str(&chunk(
                json!({}),
                json!(if calls { "tool_calls" } else { "stop" }),
            ));
            let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}});
            sse.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(sse)
        }
        Wire::AnthropicJson => {
            let mut content = Vec::new();
            if !step.text.is_empty() {
                content.push(json!({"type": "text", "text": step.text}));
            }
            for (i, (name, args)) in step.calls.iter().enumerate() {
                content.push(json!({"type": "tool_use", "id": id(i), "name": name, "input": args}));
            }
            ResponseTemplate::new(200).set_body_json(json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": content, "stop_reason": if calls { "tool_use" } else { "end_turn" },
                "stop_sequence": null, "usage": {"input_tokens": 20, "output_tokens": 10}
            }))
        }
        Wire::AnthropicStream => {
            let ev = |data: Value| {
                format!(
                    "event: {}\ndata: {data}\n\n",
                    data["type"].as_str().unwrap_or_default()
                )
            };
            let mut sse = ev(
                json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 20, "output_tokens": 1}}}),
            );
            let mut index = 0;
            if !step.text.is_empty() {
                sse.push_str(&ev(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
                sse.push_str(&ev(json!({"type": "ping"})));
                sse.push_str(&ev(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": step.text}})));
                sse.push_str(&ev(json!({"type": "content_block_stop", "index": 0})));
                index = 1;
            }
            for (i, (name, args)) in step.calls.iter().enumerate() {
                let at = index + i;
                sse.push_str(&ev(json!({"type": "content_block_start", "index": at,
                    "content_block": {"type": "tool_use", "id": id(i), "name": name, "input": {}}})));
                let args = args.to_string();
                let cut = args
                    .char_indices()
                    .nth(args.chars().count() / 2)
                    .map_or(args.len(), |(i, _)| i);
                for piece in [&args[..cut], &args[cut..]] {
                    sse.push_str(&ev(json!({"type": "content_block_delta", "index": at,
                        "delta": {"type": "input_json_delta", "partial_json": piece}})));
                }
                sse.push_str(&ev(json!({"type": "content_block_stop", "index": at})));
            }
            sse.push_str(&ev(json!({"type": "message_delta",
                "delta": {"stop_reason": if calls { "tool_use" } else { "end_turn" }, "stop_sequence": null},
                "usage": {"output_tokens": 10}})));
            sse.push_str(&ev(json!({"type": "message_stop"})));
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(sse)
        }
    }
}

/// The message bodies Graph received for `to`, in order (read receipts left out).
pub async fn sent_to(graph: &MockServer, to: &str) -> Vec<Value> {
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().ends_with("/messages"))
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["to"] == to)
        .collect()
}

/// The model requests, as JSON.
pub async fn model_requests(llm: &MockServer) -> Vec<Value> {
    llm.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

/// The tool results the model got, as text, by call id (both vendors' shapes).
pub fn tool_results(body: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        if m["role"] == "tool" {
            out.push((
                m["tool_call_id"].as_str().unwrap_or_default().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        for b in m["content"].as_array().into_iter().flatten() {
            if b["type"] == "tool_result" {
                let text = b["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("");
                out.push((
                    b["tool_use_id"].as_str().unwrap_or_default().to_owned(),
                    text,
                ));
            }
        }
    }
    out
}

async fn scripted_env(wire: Wire, steps: Vec<Step>, final_text: &'static str) -> Env {
    scripted_env_with(wire, steps, final_text, |_| {}).await
}

async fn scripted_env_with(
    wire: Wire,
    steps: Vec<Step>,
    final_text: &'static str,
    configure: impl FnOnce(&mut parley::config::Settings),
) -> Env {
    let e = env(wire.provider(), configure).await;
    Mock::given(method("POST"))
        .and(path(wire.path()))
        .respond_with(Scripted {
            wire,
            steps,
            final_text,
        })
        .mount(&e.llm)
        .await;
    e
}

fn envelope(to: &str, kind: &str, content: Value) -> Value {
    let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": kind});
    body[kind] = content;
    body
}

fn text(to: &str, body: &str) -> Value {
    envelope(to, "text", json!({"preview_url": false, "body": body}))
}

/// Every sending tool in two rounds, then a final answer: the bodies and their order.
async fn every_tool_in_order(wire: Wire, to: &'static str) {
    let steps = vec![
        step(
            "Let me **help**.",
            vec![
                ("report_progress", json!({"text": "Checking the calendar…"})),
                (
                    "send_buttons",
                    json!({"body": "Which size?", "header": "Sizes", "footer": "All in stock",
                           "buttons": [{"id": "s", "title": "Small"}, {"id": "l", "title": "Large"}]}),
                ),
                (
                    "send_list",
                    json!({"body": "Pick a slot", "button": "Slots", "sections": [
                        {"title": "Monday", "rows": [{"id": "mon-9", "title": "9:00", "description": "Morning"}]},
                        {"title": "Tuesday", "rows": [{"id": "tue-14", "title": "14:00"}]}]}),
                ),
                (
                    "request_location",
                    json!({"body": "Where should we deliver?"}),
                ),
            ],
        ),
        step(
            "",
            vec![
                (
                    "send_location",
                    json!({"latitude": 52.5163, "longitude": 13.3777, "name": "Shop", "address": "Pariser Platz 1, Berlin"}),
                ),
                (
                    "send_media",
                    json!({"kind": "image", "url": "https://cdn.example.com/menu.png", "caption": "Our menu"}),
                ),
                (
                    "send_media",
                    json!({"kind": "document", "url": "https://cdn.example.com/files/prices.pdf"}),
                ),
                ("react", json!({"emoji": "👍"})),
            ],
        ),
    ];
    let e = scripted_env(wire, steps, "All *done*.").await;
    let wamid = format!("wamid.in.tools.{to}");
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook(&wamid, to, "book me in"),
    )
    .await;
    eventually("the final answer", || async {
        sent_to(&e.graph, to)
            .await
            .last()
            .is_some_and(|b| b["text"]["body"] == "All _done_.")
    })
    .await;
    let want = vec![
        text(to, "Let me *help*."),
        text(to, "Checking the calendar…"),
        envelope(
            to,
            "interactive",
            json!({"type": "button",
            "header": {"type": "text", "text": "Sizes"},
            "body": {"text": "Which size?"},
            "footer": {"text": "All in stock"},
            "action": {"buttons": [
                {"type": "reply", "reply": {"id": "s", "title": "Small"}},
                {"type": "reply", "reply": {"id": "l", "title": "Large"}}]}}),
        ),
        envelope(
            to,
            "interactive",
            json!({"type": "list",
            "body": {"text": "Pick a slot"},
            "action": {"button": "Slots", "sections": [
                {"title": "Monday", "rows": [{"id": "mon-9", "title": "9:00", "description": "Morning"}]},
                {"title": "Tuesday", "rows": [{"id": "tue-14", "title": "14:00"}]}]}}),
        ),
        envelope(
            to,
            "interactive",
            json!({"type": "location_request_message",
            "body": {"text": "Where should we deliver?"},
            "action": {"name": "send_location"}}),
        ),
        envelope(
            to,
            "location",
            json!({"latitude": 52.5163, "longitude": 13.3777,
            "name": "Shop", "address": "Pariser Platz 1, Berlin"}),
        ),
        envelope(
            to,
            "image",
            json!({"link": "https://cdn.example.com/menu.png", "caption": "Our menu"}),
        ),
        envelope(
            to,
            "document",
            json!({"link": "https://cdn.example.com/files/prices.pdf", "filename": "prices.pdf"}),
        ),
        envelope(to, "reaction", json!({"message_id": wamid, "emoji": "👍"})),
        text(to, "All _done_."),
    ];
    // Nothing more arrives afterwards.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sent_to(&e.graph, to).await, want, "{wire:?}");

    // The model saw the tools, then each round's results, and answered after two rounds.
    let reqs = model_requests(&e.llm).await;
    assert_eq!(reqs.len(), 3, "{wire:?}");
    let names: Vec<String> = reqs[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["function"]["name"]
                .as_str()
                .or(t["name"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    for n in [
        "send_buttons",
        "send_list",
        "request_location",
        "send_location",
        "send_media",
        "react",
        "report_progress",
        "collect_contact",
    ] {
        assert!(names.contains(&n.to_owned()), "{n} offered: {names:?}");
    }
    let results = tool_results(&reqs[2]);
    assert_eq!(results.len(), 8, "{results:?}");
    assert!(
        results.iter().all(|(_, r)| r == "Sent to the user."),
        "{results:?}"
    );

    // The conversation shows the bot's messages readably, with what was sent.
    let convs = e
        .app
        .fetch_json("/api/v1/conversation/list", &e.ana.token)
        .await;
    let conv = convs["items"][0]["id"].as_str().unwrap().to_owned();
    let msgs = e
        .app
        .fetch_json(
            &format!("/api/v1/conversation/{conv}/message/list?order=asc&take=50"),
            &e.ana.token,
        )
        .await;
    let items = msgs["items"].as_array().unwrap();
    let bot: Vec<&Value> = items.iter().filter(|m| m["type"] == "bot").collect();
    assert_eq!(bot.len(), 10);
    assert!(bot.iter().all(|m| m["deliveryStatus"] == "sent"));
    assert_eq!(bot[2]["text"], "Which size?\n[buttons: Small | Large]");
    assert_eq!(bot[2]["meta"]["tool"], "send_buttons");
    assert_eq!(bot[2]["meta"]["whatsapp"]["interactive"]["type"], "button");
    assert_eq!(bot[8]["text"], "[reaction 👍]");
}

#[tokio::test]
async fn every_tool_sends_its_exact_cloud_api_json_in_order_openai_streaming() {
    every_tool_in_order(Wire::OpenAiStream, "447700950001").await;
}

#[tokio::test]
async fn every_tool_sends_its_exact_cloud_api_json_in_order_openai_non_streaming() {
    every_tool_in_order(Wire::OpenAiJson, "447700950002").await;
}

#[tokio::test]
async fn every_tool_sends_its_exact_cloud_api_json_in_order_anthropic_streaming() {
    every_tool_in_order(Wire::AnthropicStream, "447700950003").await;
}

#[tokio::test]
async fn every_tool_sends_its_exact_cloud_api_json_in_order_anthropic_non_streaming() {
    every_tool_in_order(Wire::AnthropicJson, "447700950004").await;
}

/// A call with bad arguments goes back to the model as an error; the corrected one is sent.
async fn invalid_arguments_are_corrected(wire: Wire, to: &'static str) {
    let four: Vec<Value> = (0..4)
        .map(|i| json!({"id": format!("b{i}"), "title": format!("Option {i}")}))
        .collect();
    let steps = vec![
        step(
            "",
            vec![("send_buttons", json!({"body": "Choose", "buttons": four}))],
        ),
        step(
            "",
            vec![(
                "send_buttons",
                json!({"body": "Choose", "buttons": [{"id": "b0", "title": "Option 0"}, {"id": "more", "title": "More options"}]}),
            )],
        ),
    ];
    let e = scripted_env(wire, steps, "").await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.bad", to, "hi"),
    )
    .await;
    eventually("the corrected buttons", || async {
        !sent_to(&e.graph, to).await.is_empty()
    })
    .await;
    eventually("the turn to end", || async {
        model_requests(&e.llm).await.len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = sent_to(&e.graph, to).await;
    assert_eq!(
        sent.len(),
        1,
        "only the valid call was sent, no filler: {sent:?}"
    );
    assert_eq!(
        sent[0]["interactive"]["action"]["buttons"][1],
        json!({"type": "reply", "reply": {"id": "more", "title": "More options"}})
    );
    let reqs = model_requests(&e.llm).await;
    let first = tool_results(&reqs[1]);
    assert_eq!(first.len(), 1);
    assert!(
        first[0]
            .1
            .starts_with("Error: buttons: needs 1 to 3 items, not 4"),
        "{first:?}"
    );
    let second = tool_results(&reqs[2]);
    assert_eq!(second.len(), 2, "both rounds replayed: {second:?}");
    assert_eq!(second[1].1, "Sent to the user.");
    let ev = e
        .app
        .fetch_json("/api/v1/event/log/list?type=bot.tool.refused", &e.ana.token)
        .await;
    assert_eq!(ev["items"].as_array().unwrap().len(), 1, "{ev}");
}

#[tokio::test]
async fn invalid_tool_arguments_go_back_to_an_openai_model_as_an_error_it_corrects() {
    invalid_arguments_are_corrected(Wire::OpenAiStream, "447700950011").await;
}

#[tokio::test]
async fn invalid_tool_arguments_go_back_to_an_anthropic_model_as_an_error_it_corrects() {
    invalid_arguments_are_corrected(Wire::AnthropicStream, "447700950012").await;
}

async fn contact_is_collected(wire: Wire, to: &'static str) {
    let steps = vec![step(
        "Thanks!",
        vec![(
            "collect_contact",
            json!({"name": "Zoë Adler", "email": "zoe@Example.com", "other": {"company": "Acme"}}),
        )],
    )];
    let e = scripted_env(wire, steps, "Saved.").await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook(
            "wamid.in.contact",
            to,
            "I'm Zoë Adler, zoe@example.com, from Acme",
        ),
    )
    .await;
    eventually("the answer", || async {
        sent_to(&e.graph, to).await.len() == 2
    })
    .await;
    let contacts = e.app.fetch_json("/api/v1/contact/list", &e.ana.token).await;
    let c = contacts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["fingerprint"] == format!("whatsapp:{to}"))
        .unwrap()
        .clone();
    assert_eq!(c["name"], "Zoë Adler");
    assert_eq!(c["email"], "zoe@example.com");
    assert_eq!(c["meta"]["company"], "Acme");
    assert_eq!(c["meta"]["channel"], "whatsapp", "meta is merged");
    let reqs = model_requests(&e.llm).await;
    assert_eq!(
        tool_results(&reqs[1])[0].1,
        "Saved to the contact: name, email, company."
    );
    let texts: Vec<Value> = sent_to(&e.graph, to)
        .await
        .iter()
        .map(|b| b["text"]["body"].clone())
        .collect();
    assert_eq!(texts, vec![json!("Thanks!"), json!("Saved.")]);
}

#[tokio::test]
async fn collect_contact_saves_the_fields_with_openai() {
    contact_is_collected(Wire::OpenAiJson, "447700950021").await;
}

#[tokio::test]
async fn collect_contact_saves_the_fields_with_anthropic() {
    contact_is_collected(Wire::AnthropicJson, "447700950022").await;
}

#[tokio::test]
async fn a_collected_name_is_not_replaced_by_the_whatsapp_profile_name_later() {
    let to = "447700950024";
    let e = env("openai", |_| {}).await;
    let steps = vec![step(
        "",
        vec![("collect_contact", json!({"name": "Zoë Adler"}))],
    )];
    // The first turn (two model calls) collects the name; later turns only echo.
    Mock::given(method("POST"))
        .and(path(Wire::OpenAiJson.path()))
        .respond_with(Scripted {
            wire: Wire::OpenAiJson,
            steps,
            final_text: "Noted.",
        })
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&e.llm)
        .await;
    Mock::given(method("POST"))
        .and(path(Wire::OpenAiJson.path()))
        .respond_with(crate::engine::EchoOpenAi {
            prefix: String::new(),
        })
        .mount(&e.llm)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.n1", to, "I am Zoë Adler"),
    )
    .await;
    eventually("the first answer", || async {
        sent_to(&e.graph, to).await.len() == 1
    })
    .await;
    // The webhook's profile name is "Zoë"; before collection it would replace the name.
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.n2", to, "thanks"),
    )
    .await;
    eventually("the second answer", || async {
        sent_to(&e.graph, to).await.len() == 2
    })
    .await;
    let contacts = e.app.fetch_json("/api/v1/contact/list", &e.ana.token).await;
    let c = &contacts["items"][0];
    assert_eq!(c["name"], "Zoë Adler", "{c}");
    assert_eq!(c["meta"]["nameSource"], "collected");
}

#[tokio::test]
async fn collect_contact_is_not_offered_when_contact_collection_is_off() {
    let e = scripted_env(Wire::OpenAiStream, vec![], "Hello.").await;
    e.app
        .post(
            &format!("/api/v1/integration/whatsapp/{}/update", e.integration),
            &e.ana.token,
            &json!({"contactCollection": false}),
        )
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.off", "447700950023", "hi"),
    )
    .await;
    eventually("the answer", || async {
        sent_to(&e.graph, "447700950023").await.len() == 1
    })
    .await;
    let reqs = model_requests(&e.llm).await;
    let names: Vec<&str> = reqs[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(names.contains(&"send_buttons"));
    assert!(!names.contains(&"collect_contact"), "{names:?}");
}

#[tokio::test]
async fn the_tool_loop_stops_after_the_configured_rounds_and_the_model_answers_in_text() {
    for wire in [Wire::OpenAiStream, Wire::AnthropicStream] {
        let to = if wire == Wire::OpenAiStream {
            "447700950031"
        } else {
            "447700950032"
        };
        let progress = |t: &'static str| step("", vec![("report_progress", json!({"text": t}))]);
        let steps = vec![
            progress("one"),
            progress("two"),
            progress("three"),
            progress("four"),
        ];
        let e = scripted_env_with(wire, steps, "Final.", |s| s.tool_rounds = 2).await;
        post_signed(
            &e.app,
            &e.integration,
            &text_webhook("wamid.in.rounds", to, "go"),
        )
        .await;
        eventually("the final answer", || async {
            sent_to(&e.graph, to)
                .await
                .last()
                .is_some_and(|b| b["text"]["body"] == "Final.")
        })
        .await;
        let texts: Vec<Value> = sent_to(&e.graph, to)
            .await
            .iter()
            .map(|b| b["text"]["body"].clone())
            .collect();
        assert_eq!(
            texts,
            vec![json!("one"), json!("two"), json!("Final.")],
            "{wire:?}"
        );
        let reqs = model_requests(&e.llm).await;
        assert_eq!(reqs.len(), 3);
        assert!(!tool_choice_none(&reqs[0]) && !tool_choice_none(&reqs[1]));
        assert!(tool_choice_none(&reqs[2]), "the last call answers in text");
        assert!(
            reqs[2]["tools"].is_array(),
            "tools stay defined for the replayed calls"
        );
    }
}

#[tokio::test]
async fn with_zero_rounds_no_tools_are_offered() {
    let e = scripted_env_with(Wire::OpenAiStream, vec![], "Plain.", |s| s.tool_rounds = 0).await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.zero", "447700950033", "hi"),
    )
    .await;
    eventually("the answer", || async {
        sent_to(&e.graph, "447700950033").await.len() == 1
    })
    .await;
    let reqs = model_requests(&e.llm).await;
    assert!(reqs[0].get("tools").is_none());
    assert!(reqs[0].get("tool_choice").is_none());
}

#[tokio::test]
async fn a_model_without_tool_support_still_answers_without_tools() {
    let e = env("openai", |_| {}).await;
    // Ollama's answer for a model that cannot call tools.
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(|req: &Request| serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| b.get("tools").is_some()))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "registry.ollama.ai/library/gemma:2b does not support tools", "type": "api_error", "param": null, "code": null}})))
        .with_priority(1)
        .mount(&e.llm)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(crate::engine::EchoOpenAi {
            prefix: "plain: ".into(),
        })
        .mount(&e.llm)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.notools", "447700950042", "hi"),
    )
    .await;
    eventually("the answer", || async {
        sent_to(&e.graph, "447700950042").await.len() == 1
    })
    .await;
    assert_eq!(
        sent_to(&e.graph, "447700950042").await[0]["text"]["body"],
        "plain: hi"
    );
    assert_eq!(model_requests(&e.llm).await.len(), 2);
}

#[tokio::test]
async fn send_media_by_file_id_uploads_the_stored_file_and_refuses_unknown_ids() {
    let e = scripted_env(Wire::AnthropicStream, Vec::new(), "unused").await;
    let png = b"\x89PNG\r\n\x1a\n not really a picture";
    let stored = parley::files::store(
        &e.app.state,
        &e.ana.tenant_id,
        png,
        "image/png",
        Some("map.png"),
        &parley::files::FileLink {
            conversation_id: None,
            message_id: None,
            inbound_id: None,
            meta: None,
        },
    )
    .await
    .unwrap();
    // The file's id exists only now: this script takes over from the environment's.
    Mock::given(method("POST"))
        .and(path(Wire::AnthropicStream.path()))
        .respond_with(Scripted {
            wire: Wire::AnthropicStream,
            steps: vec![step(
                "",
                vec![
                    (
                        "send_media",
                        json!({"kind": "image", "file_id": "fil_missing"}),
                    ),
                    ("send_media", json!({"kind": "image", "file_id": stored.id})),
                ],
            )],
            final_text: "Here it is.",
        })
        .with_priority(1)
        .mount(&e.llm)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PHONE}/media")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "media.uploaded.1"})))
        .mount(&e.graph)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.file", "447700950041", "photo?"),
    )
    .await;
    eventually("the image and the answer", || async {
        sent_to(&e.graph, "447700950041").await.len() == 2
    })
    .await;
    let sent = sent_to(&e.graph, "447700950041").await;
    assert_eq!(sent[0]["type"], "image");
    assert_eq!(sent[0]["image"]["id"], "media.uploaded.1");
    let uploads: Vec<_> = e
        .graph
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/media"))
        .collect();
    assert_eq!(uploads.len(), 1);
    let body = String::from_utf8_lossy(&uploads[0].body);
    assert!(body.contains("not really a picture"), "{body}");
    let reqs = model_requests(&e.llm).await;
    let results = tool_results(&reqs[1]);
    assert!(
        results[0].1.contains("no stored file \"fil_missing\""),
        "{results:?}"
    );
}

#[tokio::test]
async fn a_message_meta_refuses_is_reported_to_the_model_and_the_turn_goes_on() {
    let steps = vec![step(
        "",
        vec![("send_location", json!({"latitude": 1.5, "longitude": 2.5}))],
    )];
    let e = scripted_env(Wire::OpenAiJson, steps, "Sorry, no map.").await;
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PHONE}/messages")))
        .and(|req: &Request| {
            serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| b["type"] == "location")
        })
        .respond_with(
            ResponseTemplate::new(400).set_body_string(crate::helpers::fixture(
                "graph/error_100_invalid_parameter.json",
            )),
        )
        .with_priority(1)
        .mount(&e.graph)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.refused", "447700950051", "where?"),
    )
    .await;
    eventually("the answer", || async {
        sent_to(&e.graph, "447700950051")
            .await
            .last()
            .is_some_and(|b| b["text"]["body"] == "Sorry, no map.")
    })
    .await;
    let reqs = model_requests(&e.llm).await;
    let results = tool_results(&reqs[1]);
    assert!(
        results[0].1.starts_with("WhatsApp did not accept it:"),
        "{results:?}"
    );
}

#[tokio::test]
async fn a_model_failing_mid_loop_gets_the_apology_after_what_was_sent() {
    let to = "447700950071";
    let wire = Wire::AnthropicStream;
    let steps = vec![step(
        "",
        vec![("request_location", json!({"body": "Where are you?"}))],
    )];
    let e = scripted_env_with(wire, steps, "never", |s| s.apology_text = "Sorry!".into()).await;
    Mock::given(method("POST"))
        .and(path(wire.path()))
        .and(|req: &Request| {
            serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| round_of(&b) == 1)
        })
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}),
        ))
        .with_priority(1)
        .mount(&e.llm)
        .await;
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.in.fail", to, "deliver"),
    )
    .await;
    eventually("the apology", || async {
        sent_to(&e.graph, to).await.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = sent_to(&e.graph, to).await;
    assert_eq!(sent[0]["interactive"]["type"], "location_request_message");
    assert_eq!(sent[1]["text"]["body"], "Sorry!");
    assert_eq!(sent.len(), 2);
    let convs = e
        .app
        .fetch_json("/api/v1/conversation/list", &e.ana.token)
        .await;
    let conv = convs["items"][0]["id"].as_str().unwrap().to_owned();
    let msgs = e
        .app
        .fetch_json(
            &format!("/api/v1/conversation/{conv}/message/list?order=asc"),
            &e.ana.token,
        )
        .await;
    let bot: Vec<&Value> = msgs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "bot")
        .collect();
    assert_eq!(bot.len(), 2, "both parts stored");
    assert!(bot.iter().all(|m| m["deliveryStatus"] == "sent"));
}

/// A worker dies while the model works on round 2 (after round 1's messages were stored and
/// sent); the turn resumes elsewhere without sending round 1 again and without asking the
/// model for it again.
#[tokio::test]
async fn a_turn_resumed_mid_tool_loop_never_sends_a_part_twice() {
    let to = "447700950061";
    let graph = MockServer::start().await;
    let llm = MockServer::start().await;
    crate::engine::mount_graph(&graph).await;
    let wire = Wire::OpenAiStream;
    let steps = vec![step(
        "One moment.",
        vec![(
            "send_buttons",
            json!({"body": "Pick", "buttons": [{"id": "a", "title": "A"}]}),
        )],
    )];
    // Round 2 (after the buttons) hangs in the first process.
    Mock::given(method("POST"))
        .and(path(wire.path()))
        .and(|req: &Request| {
            serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| round_of(&b) == 1)
        })
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&llm)
        .await;
    Mock::given(method("POST"))
        .and(path(wire.path()))
        .respond_with(Scripted {
            wire,
            steps,
            final_text: "Done.",
        })
        .mount(&llm)
        .await;
    let db = Arc::new(TestDb::new().await);
    let mut settings = test_settings(&db);
    settings.whatsapp_graph_url = graph.uri().parse().unwrap();
    settings.coalesce_window = Duration::from_millis(30);
    settings.llm_timeout = Duration::from_secs(60);
    settings.llm_max_retries = 0;
    settings.lane_lease = Duration::from_secs(2);
    settings.shutdown_timeout = Duration::from_millis(300);
    let app = spawn_app_on(db.clone(), settings.clone()).await;
    let (ana, _, integration) = crate::engine::bot_setup(&app, "openai", &llm.uri()).await;
    post_signed(
        &app,
        &integration,
        &text_webhook("wamid.in.crash", to, "hi"),
    )
    .await;
    eventually("round 1 sent and round 2 asked", || async {
        sent_to(&graph, to).await.len() == 2 && model_requests(&llm).await.len() == 2
    })
    .await;
    // "Crash": the process stops with the model call in flight.
    app.stop().await.ok();

    let app = spawn_app_on(db.clone(), settings).await;
    let tenant = ana.tenant_id.clone();
    // After the dead worker's lease runs out, the contact's lane resumes the turn.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    parley::engine::run_lane(&app.state, &tenant, &integration, to)
        .await
        .unwrap();
    eventually("the final answer", || async {
        sent_to(&graph, to).await.len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = sent_to(&graph, to).await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0]["text"]["body"], "One moment.");
    assert_eq!(sent[1]["type"], "interactive");
    assert_eq!(sent[2]["text"]["body"], "Done.");
    let reqs = model_requests(&llm).await;
    assert_eq!(reqs.len(), 3, "round 1 was not asked for again");
    assert_eq!(round_of(&reqs[2]), 1, "the stored round was replayed");
    assert_eq!(tool_results(&reqs[2])[0].1, "Sent to the user.");
}
