//! OpenAI's Chat Completions API, which most other servers copy (Groq, OpenRouter, vLLM, Ollama,
//! llama.cpp): `POST {base_url}/chat/completions`.
//!
//! Streaming sends `data:` chunks until `data: [DONE]`. Text and refusals arrive as deltas;
//! a tool call arrives as deltas keyed by `index`, with its id and name in the first and the
//! arguments in pieces after. With `stream_options.include_usage` a last chunk with no choices
//! carries the token counts.

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
    f32_json, is_json, joined_text, log_outcome, parse_arguments, parse_json, read_body, send,
    stream_error, with_retries,
};
use super::sse::{Flow, for_each_event};

/// A provider speaking the OpenAI Chat Completions API.
pub struct OpenAiProvider {
    http: reqwest::Client,
    url: String,
    api_key: Option<SecretString>,
    policy: RetryPolicy,
}

impl OpenAiProvider {
    pub fn new(config: ProviderConfig, http: reqwest::Client) -> Self {
        Self {
            http,
            url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            policy: RetryPolicy::from(&config),
            // Local servers are often configured with an empty key; sending `Bearer ` would make
            // some of them refuse the call.
            api_key: config.api_key.filter(|k| !k.expose_secret().is_empty()),
        }
    }

    async fn attempt(
        &self,
        body: &Value,
        stream: bool,
        conversation: &HeaderValue,
    ) -> Result<ChatResponse, AttemptError> {
        let mut request = self
            .http
            .post(&self.url)
            .header(CONVERSATION_HEADER, conversation.clone())
            .json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
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
            parse_json::<Completion>(&body)?.into_response()
        }
    }
}

#[async_trait::async_trait]
impl LlmProvider for OpenAiProvider {
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let span = call_span(ProviderKind::Openai, req);
        async {
            let body = request_body(req)?;
            let conversation = conversation_header(&req.metadata)?;
            let result = with_retries(self.policy, || {
                self.attempt(&body, req.stream, &conversation)
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
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in &req.messages {
        messages.push(message(m)?);
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model.name));
    body.insert("messages".into(), Value::Array(messages));
    let spec = &req.model;
    for (key, value) in [
        ("temperature", spec.temperature),
        ("top_p", spec.top_p),
        ("frequency_penalty", spec.frequency_penalty),
        ("presence_penalty", spec.presence_penalty),
    ] {
        if let Some(v) = value {
            body.insert(key.into(), f32_json(v));
        }
    }
    if let Some(max) = spec.max_tokens {
        body.insert("max_tokens".into(), json!(max));
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    }
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        if req.tool_choice == ToolChoice::None {
            body.insert("tool_choice".into(), json!("none"));
        }
    }
    if !req.metadata.user_hash.is_empty() {
        body.insert("user".into(), json!(req.metadata.user_hash));
    }
    body.insert("stream".into(), json!(req.stream));
    if req.stream {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(body))
}

fn message(m: &ChatMessage) -> Result<Value, LlmError> {
    Ok(match m.role {
        Role::User => json!({"role": "user", "content": user_content(&m.content)}),
        Role::Assistant => {
            // Assistant turns carry text only; an image the bot "sent" cannot be replayed.
            let text = m.joined_text();
            let mut msg = Map::new();
            msg.insert("role".into(), json!("assistant"));
            let content = if text.is_empty() && !m.tool_calls.is_empty() {
                Value::Null
            } else {
                Value::String(text)
            };
            msg.insert("content".into(), content);
            if !m.tool_calls.is_empty() {
                let calls = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": arguments_text(&c.arguments)},
                        })
                    })
                    .collect();
                msg.insert("tool_calls".into(), Value::Array(calls));
            }
            Value::Object(msg)
        }
        Role::Tool => {
            let id = m
                .tool_call_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .ok_or_else(|| LlmError::BadRequest("a tool result has no tool_call_id".into()))?;
            json!({"role": "tool", "tool_call_id": id, "content": m.joined_text()})
        }
    })
}

/// A plain string when there are no images: every compatible server reads that, while some
/// (older llama.cpp builds) reject the array form.
fn user_content(parts: &[ContentPart]) -> Value {
    if parts.iter().all(|p| matches!(p, ContentPart::Text(_))) {
        return Value::String(joined_text(parts));
    }
    let parts = parts
        .iter()
        .map(|p| match p {
            ContentPart::Text(text) => json!({"type": "text", "text": text}),
            ContentPart::Image { mime_type, data } => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(data);
                json!({
                    "type": "image_url",
                    "image_url": {"url": format!("data:{mime_type};base64,{b64}")},
                })
            }
        })
        .collect();
    Value::Array(parts)
}

/// OpenAI wants arguments as a JSON string. Arguments kept raw (the model wrote invalid JSON)
/// go back exactly as written.
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

// --- Responses ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct Completion {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: String,
    function: WireFunction,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: String,
    /// A JSON string per the spec; some compatible servers send the object itself.
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

impl Completion {
    fn into_response(self) -> Result<ChatResponse, AttemptError> {
        let mut choices = self.choices.unwrap_or_default();
        // We never ask for `n > 1`, but a proxy might; the first choice is the answer.
        let pick = choices.iter().position(|c| c.index == 0).unwrap_or(0);
        if pick >= choices.len() {
            return Err(AttemptError::fatal(LlmError::Protocol(
                "the completion has no choices".into(),
            )));
        }
        let choice = choices.swap_remove(pick);
        let message = choice.message.unwrap_or_default();
        let tool_calls = message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|c| ToolCall {
                id: c.id,
                name: c.function.name,
                arguments: match c.function.arguments {
                    Value::String(raw) => parse_arguments(raw),
                    Value::Null => Value::Object(Map::new()),
                    other => other,
                },
            })
            .collect();
        Ok(assemble(
            message.content.unwrap_or_default(),
            message.refusal.unwrap_or_default(),
            tool_calls,
            choice.finish_reason.as_deref(),
            self.usage.map(Usage::from).unwrap_or_default(),
            self.model,
        ))
    }
}

/// The answer from its parts, the same for both wire forms.
fn assemble(
    content: String,
    refusal: String,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<&str>,
    usage: Usage,
    model: String,
) -> ChatResponse {
    let refused = !refusal.is_empty();
    let finish = match finish_reason {
        // A refusal ends with `stop`; only the `refusal` field tells it apart.
        _ if refused => FinishReason::ContentFilter,
        Some("stop") if !tool_calls.is_empty() => {
            // Ollama (and older vLLM) end tool calls with `stop`; the calls are what counts.
            FinishReason::ToolCalls
        }
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_owned()),
        None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Other("none".into()),
    };
    let text = if content.is_empty() { refusal } else { content };
    let mut order = Vec::new();
    if !text.is_empty() {
        order.push(Segment::Text(text.clone()));
    }
    order.extend((0..tool_calls.len()).map(Segment::Call));
    ChatResponse {
        text,
        tool_calls,
        order,
        usage,
        finish,
        model,
    }
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<DeltaToolCall>>,
}

#[derive(Debug, Deserialize)]
struct DeltaToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<DeltaFunction>,
}

#[derive(Debug, Deserialize)]
struct DeltaFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// What the chunks so far add up to.
#[derive(Debug, Default)]
struct StreamState {
    model: String,
    text: String,
    refusal: String,
    calls: BTreeMap<u32, PartialCall>,
    last_call: Option<u32>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

impl StreamState {
    fn apply(&mut self, data: &str) -> Result<Flow, AttemptError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(Flow::Stop);
        }
        let chunk: Chunk = parse_json(data.as_bytes())?;
        if let Some(error) = chunk.error {
            return Err(stream_error(
                VendorError::from_value(&error),
                self.has_content(),
            ));
        }
        if self.model.is_empty()
            && let Some(model) = chunk.model
        {
            self.model = model;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index != 0 {
                continue; // `n > 1`: only the first choice is the answer
            }
            if let Some(delta) = choice.delta {
                self.text
                    .push_str(delta.content.as_deref().unwrap_or_default());
                self.refusal
                    .push_str(delta.refusal.as_deref().unwrap_or_default());
                for call in delta.tool_calls.unwrap_or_default() {
                    self.apply_call(call);
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        Ok(Flow::Continue)
    }

    fn apply_call(&mut self, call: DeltaToolCall) {
        let id = call.id.filter(|id| !id.is_empty());
        // The spec always sends `index`; for servers that do not, a new id starts a new call
        // and anything else continues the last one.
        let index = match (call.index, &id, self.last_call) {
            (Some(i), _, _) => i,
            (None, Some(id), Some(last)) if self.calls.get(&last).is_some_and(|c| c.id == *id) => {
                last
            }
            (None, Some(_), _) | (None, None, None) => {
                self.calls.last_key_value().map_or(0, |(k, _)| k + 1)
            }
            (None, None, Some(last)) => last,
        };
        self.last_call = Some(index);
        let entry = self.calls.entry(index).or_default();
        if entry.id.is_empty()
            && let Some(id) = id
        {
            entry.id = id;
        }
        if let Some(function) = call.function {
            if entry.name.is_empty()
                && let Some(name) = function.name
            {
                entry.name = name;
            }
            entry
                .arguments
                .push_str(function.arguments.as_deref().unwrap_or_default());
        }
    }

    fn has_content(&self) -> bool {
        !self.text.is_empty() || !self.refusal.is_empty() || !self.calls.is_empty()
    }

    fn into_response(self) -> Result<ChatResponse, AttemptError> {
        if !self.done && self.finish_reason.is_none() {
            // Cut off mid-answer (a dropped connection, a proxy timeout): try again.
            return Err(AttemptError::retryable(LlmError::Transport(
                "the stream ended before the answer was complete".into(),
            )));
        }
        let tool_calls = self
            .calls
            .into_values()
            .map(|c| ToolCall {
                id: c.id,
                name: c.name,
                arguments: parse_arguments(c.arguments),
            })
            .collect();
        Ok(assemble(
            self.text,
            self.refusal,
            tool_calls,
            self.finish_reason.as_deref(),
            self.usage.unwrap_or_default(),
            self.model,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::llm::provider::test_support::{
        KEY, closed_port_url, config, fixture, provider, request,
    };
    use crate::llm::provider::{ProviderConfig, RequestMetadata, ToolSpec};

    fn cfg(server: &MockServer) -> ProviderConfig {
        config(ProviderKind::Openai, format!("{}/v1", server.uri()))
    }

    fn json_ok(name: &str) -> ResponseTemplate {
        ResponseTemplate::new(200)
            .set_body_raw(fixture(&format!("openai/{name}")), "application/json")
    }

    fn sse_ok(name: &str) -> ResponseTemplate {
        ResponseTemplate::new(200)
            .set_body_raw(fixture(&format!("openai/{name}")), "text/event-stream")
    }

    fn error(status: u16, name: &str) -> ResponseTemplate {
        ResponseTemplate::new(status)
            .set_body_raw(fixture(&format!("openai/{name}")), "application/json")
    }

    async fn serve(template: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(template)
            .mount(&server)
            .await;
        server
    }

    async fn chat_once(template: ResponseTemplate, stream: bool) -> ChatResponse {
        let server = serve(template).await;
        provider(cfg(&server))
            .chat(&request("gpt-4o", stream))
            .await
            .unwrap()
    }

    async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
        server.received_requests().await.unwrap()
    }

    #[tokio::test]
    async fn text_completion_non_streaming() {
        let r = chat_once(json_ok("chat_completion_text.json"), false).await;
        assert_eq!(
            r.text,
            "I'm unable to provide real-time weather updates. To get the current weather in San \
             Francisco, I recommend checking a reliable weather website or app like the Weather \
             Channel or a local news station."
        );
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 14,
                output_tokens: 37
            }
        );
        assert_eq!(r.finish, FinishReason::Stop);
        assert_eq!(r.model, "gpt-4o-2024-08-06");
        assert!(r.tool_calls.is_empty());
    }

    #[tokio::test]
    async fn text_completion_streaming() {
        let r = chat_once(sse_ok("chat_stream_text.sse"), true).await;
        assert_eq!(
            r.text,
            "I'm unable to provide real-time weather updates. To get the current weather in San \
             Francisco, I recommend checking a reliable weather website or a weather app."
        );
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 14,
                output_tokens: 30
            }
        );
        assert_eq!(r.finish, FinishReason::Stop);
        assert_eq!(r.model, "gpt-4o-2024-08-06");
    }

    #[tokio::test]
    async fn tool_call_non_streaming() {
        let r = chat_once(json_ok("chat_completion_tool_calls.json"), false).await;
        assert_eq!(r.finish, FinishReason::ToolCalls);
        assert_eq!(r.text, "");
        assert_eq!(
            r.tool_calls,
            [ToolCall {
                id: "call_Y6qJ7ofLgOrBnMD5WbVAeiRV".into(),
                name: "GetWeatherArgs".into(),
                arguments: json!({"city": "Edinburgh", "country": "UK", "units": "c"}),
            }]
        );
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 76,
                output_tokens: 24
            }
        );
    }

    #[tokio::test]
    async fn tool_call_streaming() {
        let r = chat_once(sse_ok("chat_stream_tool_call.sse"), true).await;
        assert_eq!(r.finish, FinishReason::ToolCalls);
        assert_eq!(
            r.tool_calls,
            [ToolCall {
                id: "call_4XzlGBLtUe9dy3GVNV4jhq7h".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "New York City"}),
            }]
        );
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 44,
                output_tokens: 16
            }
        );
    }

    fn two_calls(weather_id: &str, stock_id: &str) -> Vec<ToolCall> {
        vec![
            ToolCall {
                id: weather_id.into(),
                name: "GetWeatherArgs".into(),
                arguments: json!({"city": "Edinburgh", "country": "GB", "units": "c"}),
            },
            ToolCall {
                id: stock_id.into(),
                name: "get_stock_price".into(),
                arguments: json!({"ticker": "AAPL", "exchange": "NASDAQ"}),
            },
        ]
    }

    #[tokio::test]
    async fn multiple_tool_calls_both_ways() {
        let r = chat_once(json_ok("chat_completion_multiple_tool_calls.json"), false).await;
        assert_eq!(
            r.tool_calls,
            two_calls(
                "call_fdNz3vOBKYgOIpMdWotB9MjY",
                "call_h1DWI1POMJLb0KwIyQHWXD4p"
            )
        );
        assert_eq!(r.finish, FinishReason::ToolCalls);
        let r = chat_once(sse_ok("chat_stream_multiple_tool_calls.sse"), true).await;
        assert_eq!(
            r.tool_calls,
            two_calls(
                "call_JMW1whyEaYG438VE1OIflxA2",
                "call_DNYTawLBoN8fj3KN6qU9N1Ou"
            )
        );
        assert_eq!(r.finish, FinishReason::ToolCalls);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 149,
                output_tokens: 60
            }
        );
    }

    #[tokio::test]
    async fn length_finish_both_ways() {
        for r in [
            chat_once(json_ok("chat_completion_finish_length.json"), false).await,
            chat_once(sse_ok("chat_stream_finish_length.sse"), true).await,
        ] {
            assert_eq!(r.finish, FinishReason::Length);
            assert_eq!(r.text, "{\"");
            assert_eq!(
                r.usage,
                Usage {
                    input_tokens: 79,
                    output_tokens: 1
                }
            );
        }
    }

    #[tokio::test]
    async fn refusal_is_a_content_filter_finish_with_the_refusal_text() {
        let r = chat_once(json_ok("chat_completion_refusal.json"), false).await;
        assert_eq!(r.finish, FinishReason::ContentFilter);
        assert_eq!(r.text, "I'm very sorry, but I can't assist with that.");
        let r = chat_once(sse_ok("chat_stream_refusal.sse"), true).await;
        assert_eq!(r.finish, FinishReason::ContentFilter);
        assert_eq!(r.text, "I'm sorry, I can't assist with that request.");
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 79,
                output_tokens: 11
            }
        );
    }

    #[tokio::test]
    async fn only_the_first_of_several_choices_is_used() {
        let r = chat_once(sse_ok("chat_stream_n3_choices.sse"), true).await;
        assert_eq!(
            r.text,
            r#"{"city":"San Francisco","temperature":65,"units":"f"}"#
        );
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 79,
                output_tokens: 42
            }
        );
        let r = chat_once(json_ok("chat_completion_n3_choices.json"), false).await;
        let whole: Value =
            serde_json::from_slice(&fixture("openai/chat_completion_n3_choices.json")).unwrap();
        assert_eq!(
            r.text,
            whole["choices"][0]["message"]["content"].as_str().unwrap()
        );
    }

    #[tokio::test]
    async fn the_other_recorded_streams_parse() {
        for (name, text, calls) in [
            ("chat_stream_content_logprobs.sse", "Foo!", 0),
            (
                "chat_stream_json_schema.sse",
                r#"{"city":"San Francisco","temperature":61,"units":"f"}"#,
                0,
            ),
            ("chat_stream_tool_call_pydantic.sse", "", 1),
            ("chat_stream_tool_call_strict.sse", "", 1),
        ] {
            let r = chat_once(sse_ok(name), true).await;
            assert_eq!(r.text, text, "{name}");
            assert_eq!(r.tool_calls.len(), calls, "{name}");
            assert!(
                r.tool_calls.iter().all(|c| c.arguments.is_object()),
                "{name}"
            );
            assert!(
                r.usage.input_tokens > 0 && r.usage.output_tokens > 0,
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn json_answer_to_a_streaming_request_is_read_as_json() {
        let r = chat_once(json_ok("chat_completion_text.json"), true).await;
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 14,
                output_tokens: 37
            }
        );
    }

    fn full_request(stream: bool) -> ChatRequest {
        ChatRequest {
            model: concat!(
                "gpt-4o/temperature=0.2/maxTokens=256/topP=0.9",
                "/frequencyPenalty=0.5/presencePenalty=-1"
            )
            .parse()
            .unwrap(),
            system: Some("You are Parley.".into()),
            messages: vec![
                ChatMessage {
                    role: Role::User,
                    content: vec![
                        ContentPart::Text("What is in this picture?".into()),
                        ContentPart::Image {
                            mime_type: "image/png".into(),
                            data: vec![0x89, b'P', b'N', b'G'],
                        },
                    ],
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                },
                ChatMessage::assistant_tool_calls(
                    "",
                    vec![ToolCall {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        arguments: json!({"city": "Paris"}),
                    }],
                ),
                ChatMessage::tool_result("call_1", "18 °C"),
                ChatMessage::assistant("It is 18 °C."),
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
    async fn text_comes_before_the_calls_and_tool_choice_none_is_sent() {
        let r = chat_once(sse_ok("chat_stream_multiple_tool_calls.sse"), true).await;
        let calls: Vec<Segment> = (0..r.tool_calls.len()).map(Segment::Call).collect();
        let mut want = Vec::new();
        if !r.text.is_empty() {
            want.push(Segment::Text(r.text.clone()));
        }
        want.extend(calls);
        assert_eq!(r.order, want);
        assert!(r.order.len() >= 2);

        let server = serve(sse_ok("chat_stream_text.sse")).await;
        let mut req = full_request(true);
        req.tool_choice = ToolChoice::None;
        provider(cfg(&server)).chat(&req).await.unwrap();
        let body: Value = serde_json::from_slice(&requests(&server).await[0].body).unwrap();
        assert_eq!(body["tool_choice"], "none");
    }

    #[tokio::test]
    async fn the_request_carries_everything_in_openai_form() {
        let server = serve(sse_ok("chat_stream_text.sse")).await;
        provider(cfg(&server))
            .chat(&full_request(true))
            .await
            .unwrap();
        let received = requests(&server).await;
        let req = &received[0];
        assert_eq!(
            req.headers.get("authorization").unwrap(),
            &format!("Bearer {KEY}")
        );
        assert_eq!(
            req.headers.get("x-parley-conversation-id").unwrap(),
            "cnv_01ABC"
        );
        let body: Value = req.body_json().unwrap();
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": "You are Parley."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url",
                         "image_url": {"url": "data:image/png;base64,iVBORw=="}},
                    ]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "18 °C"},
                    {"role": "assistant", "content": "It is 18 °C."},
                    {"role": "user", "content": "Thanks"},
                ],
                "temperature": 0.2,
                "top_p": 0.9,
                "frequency_penalty": 0.5,
                "presence_penalty": -1.0,
                "max_tokens": 256,
                "tools": [{"type": "function", "function": {
                    "name": "get_weather",
                    "description": "Weather by city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                }}],
                "user": "u_9f86d0",
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        );
    }

    #[tokio::test]
    async fn without_a_key_no_authorization_is_sent_and_stream_false_is_explicit() {
        let server = serve(json_ok("chat_completion_text.json")).await;
        let mut c = cfg(&server);
        c.api_key = None;
        provider(c)
            .chat(&request("llama3.1:8b", false))
            .await
            .unwrap();
        let req = &requests(&server).await[0];
        assert!(req.headers.get("authorization").is_none());
        let body: Value = req.body_json().unwrap();
        assert_eq!(body["stream"], json!(false));
        assert!(body.get("stream_options").is_none());
        assert!(body.get("tools").is_none());
        assert!(body.get("temperature").is_none());
    }

    #[tokio::test]
    async fn a_tool_result_without_its_call_id_is_refused_before_sending() {
        let server = MockServer::start().await;
        let mut req = request("gpt-4o", false);
        req.messages.push(ChatMessage {
            tool_call_id: None,
            ..ChatMessage::tool_result("x", "y")
        });
        let err = provider(cfg(&server)).chat(&req).await.unwrap_err();
        assert!(matches!(err, LlmError::BadRequest(_)), "{err:?}");
        assert!(requests(&server).await.is_empty());
    }

    #[tokio::test]
    async fn unauthorized_carries_the_vendor_message_and_is_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(error(401, "error_401_invalid_api_key.json"))
            .expect(1)
            .mount(&server)
            .await;
        let err = provider(cfg(&server))
            .chat(&request("gpt-4o", false))
            .await
            .unwrap_err();
        let LlmError::Unauthorized(message) = &err else {
            panic!("{err:?}")
        };
        assert!(
            message.starts_with("Incorrect API key provided: sk-svcac***"),
            "{message}"
        );
        assert!(!format!("{err} {err:?}").contains(KEY));
    }

    #[tokio::test]
    async fn bad_request_carries_the_vendor_message_and_is_not_retried() {
        let server = MockServer::start().await;
        let body = json!({"error": {
            "message": "Invalid value for 'temperature': must be between 0 and 2.",
            "type": "invalid_request_error", "param": "temperature", "code": null}});
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let err = provider(cfg(&server))
            .chat(&request("gpt-4o", true))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            LlmError::BadRequest(
                "Invalid value for 'temperature': must be between 0 and 2.".into()
            )
        );
    }

    /// `first` answers once, then the text completion.
    async fn flaky(first: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(first)
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(sse_ok("chat_stream_text.sse"))
            .mount(&server)
            .await;
        server
    }

    #[tokio::test]
    async fn rate_limit_with_retry_after_is_retried_once() {
        let server =
            flaky(error(429, "error_429_rate_limit_tpm.json").insert_header("retry-after", "1"))
                .await;
        let mut c = cfg(&server);
        c.initial_backoff = Duration::from_secs(30); // were Retry-After ignored, this would show
        c.total_timeout = Duration::from_secs(10);
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            provider(c).chat(&request("gpt-4o", true)),
        )
        .await
        .expect("Retry-After was not honoured")
        .unwrap();
        assert_eq!(r.usage.output_tokens, 30);
        assert_eq!(requests(&server).await.len(), 2);
    }

    #[tokio::test]
    async fn server_errors_are_retried() {
        for status in [500, 502, 503] {
            let server = flaky(ResponseTemplate::new(status)).await;
            let r = provider(cfg(&server)).chat(&request("gpt-4o", true)).await;
            assert!(r.is_ok(), "{status}: {r:?}");
            assert_eq!(requests(&server).await.len(), 2);
        }
    }

    #[tokio::test]
    async fn a_stream_cut_short_is_retried() {
        let raw = fixture("openai/chat_stream_text.sse");
        let half = raw[..raw.len() / 2].to_vec();
        let server =
            flaky(ResponseTemplate::new(200).set_body_raw(half, "text/event-stream")).await;
        let r = provider(cfg(&server))
            .chat(&request("gpt-4o", true))
            .await
            .unwrap();
        assert_eq!(r.usage.output_tokens, 30);
        assert_eq!(requests(&server).await.len(), 2);
    }

    #[tokio::test]
    async fn exhausted_retries_report_the_last_failure() {
        let server = serve(error(429, "error_429_rate_limit_tpm.json")).await;
        let err = provider(cfg(&server))
            .chat(&request("gpt-4o", true))
            .await
            .unwrap_err();
        assert_eq!(err, LlmError::RateLimited { retry_after: None });
        assert_eq!(
            requests(&server).await.len(),
            3,
            "one call and max_retries = 2"
        );

        let server = serve(ResponseTemplate::new(503)).await;
        let err = provider(cfg(&server))
            .chat(&request("gpt-4o", true))
            .await
            .unwrap_err();
        assert_eq!(err, LlmError::Server(503));
        assert_eq!(requests(&server).await.len(), 3);
    }

    #[tokio::test]
    async fn an_exhausted_quota_is_not_retried() {
        for name in [
            "error_429_insufficient_quota.json",
            "error_429_insufficient_quota_legacy_code_null.json",
        ] {
            let server = serve(error(429, name)).await;
            let err = provider(cfg(&server))
                .chat(&request("gpt-4o", false))
                .await
                .unwrap_err();
            assert_eq!(err, LlmError::RateLimited { retry_after: None });
            assert_eq!(requests(&server).await.len(), 1, "{name}");
        }
    }

    #[tokio::test]
    async fn a_slow_answer_times_out() {
        let server =
            serve(json_ok("chat_completion_text.json").set_delay(Duration::from_millis(1500)))
                .await;
        let mut c = cfg(&server);
        c.total_timeout = Duration::from_millis(200);
        c.max_retries = 1;
        let err = provider(c)
            .chat(&request("gpt-4o", false))
            .await
            .unwrap_err();
        assert_eq!(err, LlmError::Timeout);
    }

    /// A server that sends the headers and the first event at once, then stalls: the timeout
    /// must cover reading the stream, not only waiting for the headers. Returns the base URL
    /// and the count of connections accepted.
    fn stalling_server() -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = stream.read(&mut [0; 64 * 1024]);
                    let raw = fixture("openai/chat_stream_text.sse");
                    let first = &raw[..raw.windows(2).position(|w| w == b"\n\n").unwrap() + 2];
                    let mut head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                         transfer-encoding: chunked\r\n\r\n{:x}\r\n",
                        first.len()
                    )
                    .into_bytes();
                    head.extend_from_slice(first);
                    head.extend_from_slice(b"\r\n");
                    let _ = stream.write_all(&head);
                    std::thread::sleep(Duration::from_secs(5));
                });
            }
        });
        (base, accepted)
    }

    #[tokio::test]
    async fn a_stream_that_stalls_mid_answer_times_out() {
        let (base, accepted) = stalling_server();
        let mut c = config(ProviderKind::Openai, base);
        c.total_timeout = Duration::from_millis(200);
        c.max_retries = 1;
        let err = provider(c)
            .chat(&request("gpt-4o", true))
            .await
            .unwrap_err();
        assert_eq!(err, LlmError::Timeout);
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "one call and one retry");
    }

    #[tokio::test]
    async fn logs_name_the_call_but_never_the_key_or_the_messages() {
        let captured = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // tracing caches per call site whether anyone listens. With a single dispatcher it asks
        // only the registering thread's default, so a parallel test without a subscriber that
        // reaches `llm_chat` first would switch the span off for everyone. A second (silent)
        // dispatcher makes it consult all of them.
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        tracing::callsite::rebuild_interest_cache();
        let server = flaky(ResponseTemplate::new(503)).await;
        provider(cfg(&server))
            .chat(&request("gpt-4o", true))
            .await
            .unwrap();
        let server = serve(error(401, "error_401_invalid_api_key.json")).await;
        let _ = provider(cfg(&server)).chat(&request("gpt-4o", false)).await;
        let logs = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("retrying"), "{logs}");
        assert!(logs.contains("conversation_id=cnv_01TEST"), "{logs}");
        assert!(logs.contains("provider=\"openai\""), "{logs}");
        assert!(logs.contains("model=gpt-4o"), "{logs}");
        assert!(!logs.contains(KEY), "{logs}");
        assert!(
            !logs.contains("San Francisco"),
            "message contents were logged: {logs}"
        );
    }

    struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error() {
        let mut c = config(ProviderKind::Openai, format!("{}/v1", closed_port_url()));
        c.max_retries = 1;
        let err = provider(c)
            .chat(&request("gpt-4o", false))
            .await
            .unwrap_err();
        let LlmError::Transport(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.to_lowercase().contains("refused"), "{message}");
    }
}
