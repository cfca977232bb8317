//! Anthropic's Messages API: `POST {base_url}/v1/messages`.
//!
//! It differs from OpenAI's in ways that shape the translation: `max_tokens` is required, the
//! system prompt is a top-level field, tool calls are `tool_use` content blocks and their results
//! `tool_result` blocks inside a *user* turn, and user and assistant turns must alternate. The
//! stream is a sequence of named events: `message_start` (input tokens), per content block
//! `content_block_start` / `_delta` / `_stop`, then `message_delta` (stop reason, output tokens)
//! and `message_stop`, with `ping` and `error` possible anywhere.

use std::collections::BTreeMap;

use base64::Engine as _;
use reqwest::header::{ACCEPT, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tracing::Instrument as _;

use super::provider::{
    AttemptError, BODY_LIMIT, CONVERSATION_HEADER, ChatMessage, ChatRequest, ChatResponse,
    ContentPart, FinishReason, LlmError, LlmProvider, ProviderConfig, ProviderKind, RetryPolicy,
    Role, Segment, ToolCall, ToolChoice, Usage, VendorError, call_span, conversation_header,
    f32_json, is_json, log_outcome, parse_arguments, parse_json, read_body, send, stream_error,
    with_retries,
};
use super::sse::{Flow, for_each_event};

/// The API version we speak; Anthropic keeps old versions working, so this only changes when we
/// want something new.
const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; this is used when the model string sets none. Long enough for
/// any chat reply, short enough to bound the cost of a runaway answer.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// A provider speaking Anthropic's Messages API.
pub struct AnthropicProvider {
    http: reqwest::Client,
    url: String,
    api_key: Option<SecretString>,
    policy: RetryPolicy,
}

impl AnthropicProvider {
    pub fn new(config: ProviderConfig, http: reqwest::Client) -> Self {
        Self {
            http,
            url: format!("{}/v1/messages", config.base_url.trim_end_matches('/')),
            policy: RetryPolicy::from(&config),
            api_key: config.api_key.filter(|k| !k.expose_secret().is_empty()),
        }
    }

    async fn attempt(
        &self,
        body: &Value,
        stream: bool,
        conversation: &HeaderValue,
        api_key: Option<&HeaderValue>,
    ) -> Result<ChatResponse, AttemptError> {
        let mut request = self
            .http
            .post(&self.url)
            .header("anthropic-version", API_VERSION)
            .header(CONVERSATION_HEADER, conversation.clone())
            .json(body);
        if let Some(key) = api_key {
            request = request.header("x-api-key", key.clone());
        }
        if stream {
            request = request.header(ACCEPT, "text/event-stream");
        }
        let response = send(request, self.api_key.as_ref()).await?;
        if stream && !is_json(&response) {
            let mut state = StreamState::default();
            for_each_event(response, |event| state.apply(&event.data)).await?;
            state.into_response()
        } else {
            let body = read_body(response, BODY_LIMIT).await?;
            parse_json::<Message>(&body)?.into_response()
        }
    }

    /// The key as a header value marked sensitive, so that reqwest and hyper never print it.
    fn key_header(&self) -> Result<Option<HeaderValue>, LlmError> {
        let Some(key) = &self.api_key else {
            return Ok(None);
        };
        let mut value = HeaderValue::from_str(key.expose_secret()).map_err(|_| {
            LlmError::Unauthorized("the API key has characters a header cannot hold".into())
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

#[async_trait::async_trait]
impl LlmProvider for AnthropicProvider {
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let span = call_span(ProviderKind::Anthropic, req);
        async {
            let body = request_body(req)?;
            let conversation = conversation_header(&req.metadata)?;
            let key = self.key_header()?;
            let result = with_retries(self.policy, || {
                self.attempt(&body, req.stream, &conversation, key.as_ref())
            })
            .await;
            log_outcome(&result);
            result
        }
        .instrument(span)
        .await
    }
}

/// The JSON body for `req`.
pub(crate) fn request_body(req: &ChatRequest) -> Result<Value, LlmError> {
    let spec = &req.model;
    let mut body = Map::new();
    body.insert("model".into(), json!(spec.name));
    body.insert(
        "max_tokens".into(),
        json!(spec.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        body.insert("system".into(), json!(system));
    }
    body.insert("messages".into(), Value::Array(messages(&req.messages)?));
    if let Some(t) = spec.temperature {
        body.insert("temperature".into(), f32_json(t));
    }
    if let Some(p) = spec.top_p {
        body.insert("top_p".into(), f32_json(p));
    }
    if spec.frequency_penalty.is_some() || spec.presence_penalty.is_some() {
        tracing::debug!("Anthropic has no frequency or presence penalty; leaving them out");
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.parameters,
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        if req.tool_choice == ToolChoice::None {
            body.insert("tool_choice".into(), json!({"type": "none"}));
        }
    }
    if !req.metadata.user_hash.is_empty() {
        body.insert(
            "metadata".into(),
            json!({"user_id": req.metadata.user_hash}),
        );
    }
    body.insert("stream".into(), json!(req.stream));
    Ok(Value::Object(body))
}

/// Anthropic's turns: tool results become user turns, and neighbouring turns of one role are
/// merged because the API wants user and assistant to alternate.
fn messages(history: &[ChatMessage]) -> Result<Vec<Value>, LlmError> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in history {
        let (role, blocks) = match m.role {
            Role::User => ("user", m.content.iter().filter_map(content_block).collect()),
            Role::Assistant => {
                let mut blocks: Vec<Value> = m.content.iter().filter_map(text_block).collect();
                blocks.extend(m.tool_calls.iter().map(|c| {
                    json!({
                        "type": "tool_use",
                        "id": c.id,
                        "name": c.name,
                        "input": tool_input(&c.arguments),
                    })
                }));
                ("assistant", blocks)
            }
            Role::Tool => ("user", vec![tool_result_block(m)?]),
        };
        // An empty turn is refused ("all messages must have non-empty content"), and dropping it
        // loses nothing.
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    Ok(turns
        .into_iter()
        .map(|(role, mut content)| {
            // Tool results must open the user turn that follows the tool use.
            content.sort_by_key(|b| b["type"] != "tool_result");
            json!({"role": role, "content": content})
        })
        .collect())
}

/// Text (non-empty: the API refuses empty text blocks) or an inline image.
fn content_block(part: &ContentPart) -> Option<Value> {
    match part {
        ContentPart::Text(_) => text_block(part),
        ContentPart::Image { mime_type, data } => Some(json!({
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": mime_type,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
            },
        })),
    }
}

/// Assistant turns carry text only; an image the bot "sent" cannot be replayed.
fn text_block(part: &ContentPart) -> Option<Value> {
    match part {
        ContentPart::Text(text) if !text.is_empty() => Some(json!({"type": "text", "text": text})),
        _ => None,
    }
}

fn tool_result_block(m: &ChatMessage) -> Result<Value, LlmError> {
    let id = m
        .tool_call_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| LlmError::BadRequest("a tool result has no tool_call_id".into()))?;
    let content: Vec<Value> = m.content.iter().filter_map(content_block).collect();
    let mut block = json!({"type": "tool_result", "tool_use_id": id});
    if !content.is_empty() {
        block["content"] = Value::Array(content);
    }
    Ok(block)
}

/// `input` must be an object. Arguments the model wrote as broken JSON (kept as a string) cannot
/// be sent back as they were, so they go back empty.
fn tool_input(arguments: &Value) -> Value {
    match arguments {
        Value::Object(_) => arguments.clone(),
        Value::String(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => json!({}),
        },
        _ => json!({}),
    }
}

// --- Responses ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// `thinking`, server tool results and whatever comes next: not part of the reply.
    #[serde(other)]
    Other,
}

/// Anthropic counts cache reads and writes apart from `input_tokens`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u32>,
    #[serde(default)]
    cache_read_input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
}

impl WireUsage {
    /// Later counts (from `message_delta`) replace earlier ones; they are running totals.
    fn update(&mut self, newer: WireUsage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
    }

    fn total(self) -> Usage {
        let input = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        Usage {
            input_tokens: input.into_iter().flatten().fold(0, u32::saturating_add),
            output_tokens: self.output_tokens.unwrap_or(0),
        }
    }
}

fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_owned()),
        None => FinishReason::Other("none".to_owned()),
    }
}

impl Message {
    fn into_response(self) -> Result<ChatResponse, AttemptError> {
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        let mut order = Vec::new();
        for block in self.content {
            match block {
                Block::Text { text: t } => {
                    text.push_str(&t);
                    push_text(&mut order, t);
                }
                Block::ToolUse { id, name, input } => {
                    order.push(Segment::Call(tool_calls.len()));
                    tool_calls.push(ToolCall {
                        id,
                        name,
                        arguments: if input.is_null() { json!({}) } else { input },
                    });
                }
                Block::Other => {}
            }
        }
        Ok(ChatResponse {
            text,
            tool_calls,
            order,
            usage: self.usage.total(),
            finish: finish_reason(self.stop_reason.as_deref()),
            model: self.model,
        })
    }
}

/// Adds a text block to the order, joined to a text block right before it (the text of one
/// answer is one message until a call comes between).
fn push_text(order: &mut Vec<Segment>, text: String) {
    if text.is_empty() {
        return;
    }
    match order.last_mut() {
        Some(Segment::Text(last)) => last.push_str(&text),
        _ => order.push(Segment::Text(text)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: Block,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {},
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        #[serde(default)]
        error: Value,
    },
    /// Event types added after this was written are skipped, as Anthropic asks clients to.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    /// Thinking, signatures, citations.
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug)]
enum PartialBlock {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        /// `content_block_start` carries `input: {}`; a tool without parameters gets no
        /// `input_json_delta` at all, so this is the answer then.
        initial: Value,
        json: String,
    },
    Other,
}

/// What the events so far add up to.
#[derive(Debug, Default)]
struct StreamState {
    model: String,
    usage: WireUsage,
    blocks: BTreeMap<u32, PartialBlock>,
    stop_reason: Option<String>,
    content_seen: bool,
    stopped: bool,
}

impl StreamState {
    fn apply(&mut self, data: &str) -> Result<Flow, AttemptError> {
        match parse_json::<StreamEvent>(data.as_bytes())? {
            StreamEvent::MessageStart { message } => {
                self.model = message.model;
                self.usage.update(message.usage);
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let block = match content_block {
                    Block::Text { text } => PartialBlock::Text(text),
                    Block::ToolUse { id, name, input } => {
                        self.content_seen = true;
                        PartialBlock::ToolUse {
                            id,
                            name,
                            initial: input,
                            json: String::new(),
                        }
                    }
                    Block::Other => PartialBlock::Other,
                };
                self.blocks.insert(index, block);
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                match (self.blocks.get_mut(&index), delta) {
                    (Some(PartialBlock::Text(text)), BlockDelta::TextDelta { text: more }) => {
                        self.content_seen |= !more.is_empty();
                        text.push_str(&more);
                    }
                    (
                        Some(PartialBlock::ToolUse { json, .. }),
                        BlockDelta::InputJsonDelta { partial_json },
                    ) => json.push_str(&partial_json),
                    // A delta for a block never started, or of the wrong kind: the vendor broke
                    // its own protocol, but the rest of the answer may still be good.
                    (_, delta) => {
                        tracing::debug!(index, ?delta, "skipping an unexpected content delta");
                    }
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(usage) = usage {
                    self.usage.update(usage);
                }
            }
            StreamEvent::MessageStop {} => {
                self.stopped = true;
                return Ok(Flow::Stop);
            }
            StreamEvent::Error { error } => {
                let vendor = VendorError::from_value(&json!({ "error": error }));
                return Err(stream_error(vendor, self.content_seen));
            }
            StreamEvent::ContentBlockStop {} | StreamEvent::Ping {} | StreamEvent::Unknown => {}
        }
        Ok(Flow::Continue)
    }

    fn into_response(self) -> Result<ChatResponse, AttemptError> {
        if !self.stopped && self.stop_reason.is_none() {
            // Cut off mid-answer (a dropped connection, a proxy timeout): try again.
            return Err(AttemptError::retryable(LlmError::Transport(
                "the stream ended before the answer was complete".into(),
            )));
        }
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        let mut order = Vec::new();
        for block in self.blocks.into_values() {
            match block {
                PartialBlock::Text(t) => {
                    text.push_str(&t);
                    push_text(&mut order, t);
                }
                PartialBlock::ToolUse {
                    id,
                    name,
                    initial,
                    json,
                } => {
                    order.push(Segment::Call(tool_calls.len()));
                    tool_calls.push(ToolCall {
                        id,
                        name,
                        arguments: if json.is_empty() && initial.is_object() {
                            initial
                        } else {
                            parse_arguments(json)
                        },
                    });
                }
                PartialBlock::Other => {}
            }
        }
        Ok(ChatResponse {
            text,
            tool_calls,
            order,
            usage: self.usage.total(),
            finish: finish_reason(self.stop_reason.as_deref()),
            model: self.model,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::llm::provider::test_support::{
        KEY, closed_port_url, config, fixture, provider, request,
    };
    use crate::llm::provider::{ProviderConfig, RequestMetadata, ToolSpec};

    fn cfg(server: &MockServer) -> ProviderConfig {
        config(ProviderKind::Anthropic, server.uri())
    }

    fn json_ok(name: &str) -> ResponseTemplate {
        ResponseTemplate::new(200)
            .set_body_raw(fixture(&format!("anthropic/{name}")), "application/json")
    }

    fn sse_ok(name: &str) -> ResponseTemplate {
        ResponseTemplate::new(200)
            .set_body_raw(fixture(&format!("anthropic/{name}")), "text/event-stream")
    }

    fn error(status: u16, name: &str) -> ResponseTemplate {
        ResponseTemplate::new(status)
            .set_body_raw(fixture(&format!("anthropic/{name}")), "application/json")
    }

    async fn serve(template: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .and(header("anthropic-version", "2023-06-01"))
            .respond_with(template)
            .mount(&server)
            .await;
        server
    }

    async fn chat_once(template: ResponseTemplate, stream: bool) -> ChatResponse {
        let server = serve(template).await;
        provider(cfg(&server))
            .chat(&request("claude-sonnet-4-5", stream))
            .await
            .unwrap()
    }

    async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
        server.received_requests().await.unwrap()
    }

    #[tokio::test]
    async fn text_message_non_streaming() {
        let r = chat_once(json_ok("message_response_text.json"), false).await;
        assert_eq!(
            r.text,
            concat!(
                r#"{"items":[{"product_name":"Green Tea","price":5.50,"quantity":2},"#,
                r#"{"product_name":"Coffee","price":3.00,"quantity":1}],"total":14.0}"#
            )
        );
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 406,
                output_tokens: 50
            }
        );
        assert_eq!(r.finish, FinishReason::Stop);
        assert_eq!(r.model, "claude-sonnet-4-5-20250929");
        assert!(r.tool_calls.is_empty());
    }

    #[tokio::test]
    async fn text_message_streaming() {
        let r = chat_once(sse_ok("stream_text.sse"), true).await;
        assert_eq!(r.text, "Hello there!");
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 11,
                output_tokens: 6
            }
        );
        assert_eq!(r.finish, FinishReason::Stop);
        assert_eq!(r.model, "claude-3-opus-latest");
        let r = chat_once(sse_ok("stream_recorded_beta.sse"), true).await;
        assert_eq!(r.text, "[12345,67890]");
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 135,
                output_tokens: 10
            }
        );
    }

    #[tokio::test]
    async fn tool_use_non_streaming() {
        let r = chat_once(json_ok("message_response_tool_use.json"), false).await;
        assert_eq!(r.finish, FinishReason::ToolCalls);
        assert!(
            r.text
                .starts_with("# The Wonderful World of Companion Animals")
        );
        assert_eq!(r.tool_calls.len(), 1);
        let call = &r.tool_calls[0];
        assert_eq!(call.id, "toolu_01KiHQYXfTgCmpgRfmqgvUL2");
        assert_eq!(call.name, "submit_analysis");
        assert!(
            call.arguments["summary"]
                .as_str()
                .unwrap()
                .starts_with("This comprehensive essay explores three popular companion animals")
        );
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 617,
                output_tokens: 995
            }
        );
    }

    #[tokio::test]
    async fn tool_use_streaming() {
        let r = chat_once(sse_ok("stream_tool_use.sse"), true).await;
        assert_eq!(r.text, "I'll check the current weather in Paris for you.");
        assert_eq!(
            r.tool_calls,
            [ToolCall {
                id: "toolu_01NRLabsLyVHZPKxbKvkfSMn".into(),
                name: "get_weather".into(),
                arguments: json!({"location": "Paris"}),
            }]
        );
        assert_eq!(r.finish, FinishReason::ToolCalls);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 377,
                output_tokens: 65
            }
        );
    }

    #[tokio::test]
    async fn a_tool_use_cut_off_by_max_tokens_keeps_its_raw_arguments() {
        let r = chat_once(sse_ok("stream_tool_use_incomplete_partial_json.sse"), true).await;
        assert_eq!(r.finish, FinishReason::Length);
        assert_eq!(r.tool_calls.len(), 1);
        assert_eq!(r.tool_calls[0].name, "make_file");
        let Value::String(raw) = &r.tool_calls[0].arguments else {
            panic!("{:?}", r.tool_calls[0].arguments)
        };
        assert!(raw.starts_with(r#"{"filename": "taxes.txt", "lines_of_text": ["#));
        assert!(raw.ends_with("\n\"Filing taxes"));
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 450,
                output_tokens: 124
            }
        );
    }

    #[tokio::test]
    async fn a_refusal_is_a_content_filter_finish() {
        let r = chat_once(sse_ok("stream_refusal.sse"), true).await;
        assert_eq!(r.finish, FinishReason::ContentFilter);
        assert_eq!(r.text, "");
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 20,
                output_tokens: 0
            }
        );
    }

    #[tokio::test]
    async fn max_tokens_finish_non_streaming() {
        let mut body: Value =
            serde_json::from_slice(&fixture("anthropic/message_response_text.json")).unwrap();
        body["stop_reason"] = json!("max_tokens");
        let r = chat_once(ResponseTemplate::new(200).set_body_json(body), false).await;
        assert_eq!(r.finish, FinishReason::Length);
    }

    fn full_request(stream: bool) -> ChatRequest {
        ChatRequest {
            model: "claude-sonnet-4-5/temperature=0.2/topP=0.9/frequencyPenalty=0.5"
                .parse()
                .unwrap(),
            system: Some("You are Parley.".into()),
            messages: vec![
                ChatMessage {
                    role: Role::User,
                    content: vec![
                        ContentPart::Text("What is in this picture?".into()),
                        ContentPart::Image {
                            mime_type: "image/jpeg".into(),
                            data: vec![0xff, 0xd8, 0xff],
                        },
                    ],
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                },
                ChatMessage::user("And what's the weather?"),
                ChatMessage::assistant_tool_calls(
                    "Let me check.",
                    vec![
                        ToolCall {
                            id: "toolu_1".into(),
                            name: "get_weather".into(),
                            arguments: json!({"city": "Paris"}),
                        },
                        ToolCall {
                            id: "toolu_2".into(),
                            name: "get_weather".into(),
                            arguments: Value::String("{\"city\": \"Ly".into()),
                        },
                    ],
                ),
                ChatMessage::tool_result("toolu_1", "18 °C"),
                ChatMessage::tool_result("toolu_2", ""),
                ChatMessage::user("Thanks"),
            ],
            tools: vec![ToolSpec {
                name: "get_weather".into(),
                description: "Weather by city".into(),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            }],
            tool_choice: ToolChoice::Auto,
            metadata: RequestMetadata {
                conversation_id: "cnv_01ABC".into(),
                user_hash: "u_9f86d0".into(),
            },
            stream,
        }
    }

    #[tokio::test]
    async fn interleaved_text_and_tool_use_keep_their_order_both_ways() {
        let ev = |data: Value| {
            format!(
                "event: {}\ndata: {data}\n\n",
                data["type"].as_str().unwrap()
            )
        };
        let blocks = [
            json!({"type": "text", "text": "Let me look."}),
            json!({"type": "tool_use", "id": "toolu_a", "name": "report_progress", "input": {"text": "…"}}),
            json!({"type": "text", "text": "Pick one:"}),
            json!({"type": "tool_use", "id": "toolu_b", "name": "send_buttons", "input": {}}),
        ];
        let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": blocks, "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 9}});
        let want = vec![
            Segment::Text("Let me look.".into()),
            Segment::Call(0),
            Segment::Text("Pick one:".into()),
            Segment::Call(1),
        ];
        let r = chat_once(
            ResponseTemplate::new(200).set_body_json(message.clone()),
            false,
        )
        .await;
        assert_eq!(r.order, want);
        assert_eq!(r.text, "Let me look.Pick one:");
        let mut sse = ev(
            json!({"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 5}}}),
        );
        for (i, b) in blocks.iter().enumerate() {
            let start = if b["type"] == "text" {
                json!({"type": "text", "text": ""})
            } else {
                json!({"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}})
            };
            sse.push_str(&ev(
                json!({"type": "content_block_start", "index": i, "content_block": start}),
            ));
            let delta = if b["type"] == "text" {
                json!({"type": "text_delta", "text": b["text"]})
            } else {
                json!({"type": "input_json_delta", "partial_json": b["input"].to_string()})
            };
            sse.push_str(&ev(
                json!({"type": "content_block_delta", "index": i, "delta": delta}),
            ));
            sse.push_str(&ev(json!({"type": "content_block_stop", "index": i})));
        }
        sse.push_str(&ev(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})));
        sse.push_str(&ev(json!({"type": "message_stop"})));
        let r = chat_once(
            ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"),
            true,
        )
        .await;
        assert_eq!(r.order, want);
        assert_eq!(r.tool_calls[0].arguments, json!({"text": "…"}));
    }

    #[tokio::test]
    async fn tool_choice_none_is_sent_as_anthropics_none_type() {
        let server = serve(sse_ok("stream_text.sse")).await;
        let mut req = full_request(true);
        req.tool_choice = ToolChoice::None;
        provider(cfg(&server)).chat(&req).await.unwrap();
        let body: Value = serde_json::from_slice(&requests(&server).await[0].body).unwrap();
        assert_eq!(body["tool_choice"], json!({"type": "none"}));
        assert!(body["tools"].is_array(), "the tools stay defined");
    }

    #[tokio::test]
    async fn the_request_carries_everything_in_anthropic_form() {
        let server = serve(sse_ok("stream_text.sse")).await;
        provider(cfg(&server))
            .chat(&full_request(true))
            .await
            .unwrap();
        let received = requests(&server).await;
        let req = &received[0];
        assert_eq!(req.headers.get("x-api-key").unwrap(), KEY);
        assert!(req.headers.get("authorization").is_none());
        assert_eq!(
            req.headers.get("x-parley-conversation-id").unwrap(),
            "cnv_01ABC"
        );
        assert!(
            req.headers
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = req.body_json().unwrap();
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 1024,
                "system": "You are Parley.",
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image", "source":
                            {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}},
                        {"type": "text", "text": "And what's the weather?"},
                    ]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                         "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1",
                         "content": [{"type": "text", "text": "18 °C"}]},
                        {"type": "tool_result", "tool_use_id": "toolu_2"},
                        {"type": "text", "text": "Thanks"},
                    ]},
                ],
                "temperature": 0.2,
                "top_p": 0.9,
                "tools": [{
                    "name": "get_weather",
                    "description": "Weather by city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                }],
                "metadata": {"user_id": "u_9f86d0"},
                "stream": true,
            })
        );
    }

    /// The SDK's recorded follow-up request sends two user turns in a row; we merge them, and
    /// keep its `max_tokens`.
    #[test]
    fn the_recorded_request_s_consecutive_user_turns_are_merged() {
        let recorded: Value = serde_json::from_slice(&fixture(
            "anthropic/message_request_tool_result_roundtrip.json",
        ))
        .unwrap();
        let texts: Vec<&str> = recorded["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        let mut req = request(
            &format!("{}/maxTokens=4000", recorded["model"].as_str().unwrap()),
            false,
        );
        req.messages = texts.iter().map(|t| ChatMessage::user(*t)).collect();
        let body = request_body(&req).unwrap();
        assert_eq!(body["max_tokens"], recorded["max_tokens"]);
        assert_eq!(body["model"], recorded["model"]);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1);
        let blocks: Vec<&str> = messages[0]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["text"].as_str().unwrap())
            .collect();
        assert_eq!(blocks, texts);
    }

    #[tokio::test]
    async fn unauthorized_is_not_retried() {
        let server = MockServer::start().await;
        let body = json!({"type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"}});
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let err = provider(cfg(&server))
            .chat(&request("claude-sonnet-4-5", true))
            .await
            .unwrap_err();
        assert_eq!(err, LlmError::Unauthorized("invalid x-api-key".into()));
        assert!(!format!("{err} {err:?}").contains(KEY));
    }

    #[tokio::test]
    async fn bad_request_carries_the_vendor_message_and_is_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(error(400, "error_400_invalid_request.json"))
            .expect(1)
            .mount(&server)
            .await;
        let err = provider(cfg(&server))
            .chat(&request("claude-sonnet-4-5", false))
            .await
            .unwrap_err();
        let LlmError::BadRequest(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.starts_with("messages.0.content.1: unexpected `tool_use_id`"));
    }

    /// `first` answers once, then the streamed text.
    async fn flaky(first: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(first)
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(sse_ok("stream_text.sse"))
            .mount(&server)
            .await;
        server
    }

    fn recorded_429() -> ResponseTemplate {
        let recorded: Value =
            serde_json::from_slice(&fixture("anthropic/error_429_rate_limit.headers.json"))
                .unwrap();
        let mut t = error(429, "error_429_rate_limit.json");
        for (name, value) in recorded["headers"].as_object().unwrap() {
            if name != "content-length" && name != "content-type" {
                t = t.insert_header(name.as_str(), value.as_str().unwrap());
            }
        }
        t
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let retried = [
            ("recorded 429", recorded_429()),
            ("529", error(529, "error_529_overloaded.json")),
            ("500", ResponseTemplate::new(500)),
            ("overloaded event", sse_ok("stream_error_overloaded.sse")),
        ];
        for (what, first) in retried {
            let server = flaky(first).await;
            let r = provider(cfg(&server))
                .chat(&request("claude-sonnet-4-5", true))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert_eq!(r.text, "Hello there!", "{what}");
            assert_eq!(requests(&server).await.len(), 2, "{what}");
        }
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let server = flaky(recorded_429().insert_header("retry-after", "1")).await;
        let mut c = cfg(&server);
        c.initial_backoff = Duration::from_secs(30); // were retry-after ignored, this would show
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            provider(c).chat(&request("claude-sonnet-4-5", true)),
        )
        .await
        .expect("retry-after was not honoured")
        .unwrap();
        assert_eq!(r.text, "Hello there!");
        assert_eq!(requests(&server).await.len(), 2);
    }

    #[tokio::test]
    async fn x_should_retry_false_stops_retries() {
        let server =
            serve(error(529, "error_529_overloaded.json").insert_header("x-should-retry", "false"))
                .await;
        let err = provider(cfg(&server))
            .chat(&request("claude-sonnet-4-5", true))
            .await
            .unwrap_err();
        assert_eq!(err, LlmError::Overloaded);
        assert_eq!(requests(&server).await.len(), 1);
    }

    #[tokio::test]
    async fn exhausted_retries_report_the_last_failure() {
        for (what, template, expected) in [
            (
                "529",
                error(529, "error_529_overloaded.json"),
                LlmError::Overloaded,
            ),
            (
                "overloaded event",
                sse_ok("stream_error_overloaded.sse"),
                LlmError::Overloaded,
            ),
            (
                "429",
                recorded_429(),
                LlmError::RateLimited { retry_after: None },
            ),
            ("502", ResponseTemplate::new(502), LlmError::Server(502)),
        ] {
            let server = serve(template).await;
            let err = provider(cfg(&server))
                .chat(&request("claude-sonnet-4-5", true))
                .await
                .unwrap_err();
            assert_eq!(err, expected, "{what}");
            assert_eq!(
                requests(&server).await.len(),
                3,
                "{what}: one call and 2 retries"
            );
        }
    }

    #[tokio::test]
    async fn an_overload_after_content_has_arrived_is_not_retried() {
        let text = String::from_utf8(fixture("anthropic/stream_text.sse")).unwrap();
        let cut = text.find("event: content_block_stop").unwrap();
        let overloaded =
            String::from_utf8(fixture("anthropic/stream_error_overloaded.sse")).unwrap();
        let body = format!("{}{overloaded}", &text[..cut]);
        let server =
            serve(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")).await;
        let err = provider(cfg(&server))
            .chat(&request("claude-sonnet-4-5", true))
            .await
            .unwrap_err();
        assert_eq!(err, LlmError::Overloaded);
        assert_eq!(requests(&server).await.len(), 1);
    }

    #[tokio::test]
    async fn a_slow_answer_times_out() {
        let server = serve(sse_ok("stream_text.sse").set_delay(Duration::from_millis(1500))).await;
        let mut c = cfg(&server);
        c.total_timeout = Duration::from_millis(200);
        c.max_retries = 1;
        let err = provider(c)
            .chat(&request("claude-sonnet-4-5", true))
            .await
            .unwrap_err();
        assert_eq!(err, LlmError::Timeout);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error() {
        let mut c = config(ProviderKind::Anthropic, closed_port_url());
        c.max_retries = 1;
        let err = provider(c)
            .chat(&request("claude-sonnet-4-5", false))
            .await
            .unwrap_err();
        assert!(matches!(err, LlmError::Transport(_)), "{err:?}");
    }
}
