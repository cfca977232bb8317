//! The vendor-neutral face of the language models. The conversation engine builds a
//! [`ChatRequest`], calls [`LlmProvider::chat`] on whatever [`build`] returned for the bot's
//! provider, and gets a [`ChatResponse`] or an [`LlmError`].
//!
//! The policy both vendors share lives here so that they behave alike: how HTTP statuses map to
//! errors, which failures are retried and how long to wait, and the per-attempt timeout.
//! [`crate::llm::openai`] and [`crate::llm::anthropic`] only translate requests and responses.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::llm::model::ModelSpec;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    /// The result of a tool call, answering [`ChatMessage::tool_call_id`].
    Tool,
}

/// One piece of a message.
#[derive(Clone, PartialEq)]
pub enum ContentPart {
    Text(String),
    /// Sent inline: a base64 data URL to OpenAI, a base64 `source` to Anthropic.
    Image {
        mime_type: String,
        data: Vec<u8>,
    },
}

// Hand-written so that a logged request shows how big an image is, not its bytes.
impl fmt::Debug for ContentPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.debug_tuple("Text").field(text).finish(),
            Self::Image { mime_type, data } => f
                .debug_struct("Image")
                .field("mime_type", mime_type)
                .field("bytes", &data.len())
                .finish(),
        }
    }
}

/// A tool the model asked to call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments, parsed. When the model wrote invalid JSON (it was cut off, say), this is
    /// `Value::String` holding the raw text, so the engine can still report it back.
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: Vec<ContentPart>,
    /// For assistant turns that called tools.
    pub tool_calls: Vec<ToolCall>,
    /// For [`Role::Tool`]: the [`ToolCall::id`] this message answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn user(text: impl Into<String>) -> Self {
        Self::text(Role::User, text)
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Self::text(Role::Assistant, text)
    }

    /// An assistant turn that called tools (and may also have said something).
    pub fn assistant_tool_calls(text: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls,
            ..Self::text(Role::Assistant, text)
        }
    }

    /// The result of the tool call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::text(Role::Tool, text)
        }
    }

    fn text(role: Role, text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            role,
            content: if text.is_empty() {
                Vec::new()
            } else {
                vec![ContentPart::Text(text)]
            },
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// The text parts joined by blank lines, for vendors that want a plain string.
    pub(crate) fn joined_text(&self) -> String {
        joined_text(&self.content)
    }
}

/// The text parts joined by blank lines; images are left out.
pub(crate) fn joined_text(parts: &[ContentPart]) -> String {
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text(t) => Some(t.as_str()),
            ContentPart::Image { .. } => None,
        })
        .collect();
    texts.join("\n\n")
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// A JSON Schema object describing the arguments.
    pub parameters: serde_json::Value,
}

/// Whether the model may call the request's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (the vendors' default, so nothing is sent).
    #[default]
    Auto,
    /// Text only: OpenAI's `"none"`, Anthropic's `{"type": "none"}`.
    None,
}

/// A piece of an answer, in the order the model produced it.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Text(String),
    /// The call at this index of [`ChatResponse::tool_calls`].
    Call(usize),
}

/// Sent to the vendor for its abuse audits, and to us in its logs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestMetadata {
    /// Goes in the `x-parley-conversation-id` header on both vendors.
    pub conversation_id: String,
    /// A stable hash of the end user (never the phone number itself): OpenAI's `user`,
    /// Anthropic's `metadata.user_id`. Left out when empty.
    pub user_hash: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: ModelSpec,
    pub system: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    /// Whether the model may call the tools. [`ToolChoice::None`] keeps them defined (a history
    /// with tool calls needs them on Anthropic) but makes the model answer in text.
    pub tool_choice: ToolChoice,
    pub metadata: RequestMetadata,
    /// Stream the answer. The caller still gets one [`ChatResponse`]; streaming only changes
    /// the wire, which keeps a slow generation from tripping idle timeouts in proxies.
    pub stream: bool,
}

/// Token counts as the vendor billed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Every prompt token, cached or not (Anthropic reports cache reads and writes apart; they
    /// are added in so that both vendors count the same thing).
    pub input_tokens: u32,
    pub output_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    /// The reply hit `max_tokens`.
    Length,
    ToolCalls,
    /// The vendor's filter stopped it, or the model refused (OpenAI's `refusal`, Anthropic's
    /// `refusal` stop reason); the refusal text, if any, is in [`ChatResponse::text`].
    ContentFilter,
    /// Anything else, as the vendor named it (`none` when it named nothing).
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// Text and calls in the order the model produced them. OpenAI gives its text before its
    /// calls; Anthropic's content blocks can interleave them ("I'll check…", a call, "and…", a
    /// call), and the engine sends a turn's messages in that order.
    pub order: Vec<Segment>,
    pub usage: Usage,
    pub finish: FinishReason,
    /// The model that answered, as the vendor names it (often a dated snapshot of the one asked).
    pub model: String,
}

/// Why a call failed. Retryable failures show up here only once retries are spent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// 401 or 403; never retried.
    #[error("the provider refused the credentials: {0}")]
    Unauthorized(String),
    /// 400, or another 4xx the vendor will refuse again; never retried. Holds the vendor's
    /// message, which usually names the offending field.
    #[error("the provider refused the request: {0}")]
    BadRequest(String),
    /// 429. `retry_after` is what the vendor last asked for, when it said.
    #[error("the provider is rate limiting us{}", retry_hint(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// Anthropic's 529 or `overloaded_error`.
    #[error("the provider is overloaded")]
    Overloaded,
    /// A 5xx.
    #[error("the provider failed with HTTP {0}")]
    Server(u16),
    /// The connection could not be made in `connect_timeout`, or the call took longer than
    /// `total_timeout`.
    #[error("the provider did not answer in time")]
    Timeout,
    /// The network failed: connection refused, reset, DNS, TLS.
    #[error("could not reach the provider: {0}")]
    Transport(String),
    /// The vendor answered something we cannot read.
    #[error("unexpected answer from the provider: {0}")]
    Protocol(String),
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {} s)", d.as_secs_f64().ceil()),
        None => String::new(),
    }
}

/// Which API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible Chat Completions API (OpenAI, Groq, OpenRouter, vLLM, Ollama,
    /// llama.cpp server…).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to call one provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// OpenAI: with the version path (`https://api.openai.com/v1`, `http://localhost:11434/v1`).
    /// Anthropic: without it (`https://api.anthropic.com`).
    pub base_url: String,
    /// `None` for local servers that take no key.
    pub api_key: Option<SecretString>,
    /// Longest wait for a TCP/TLS connection. reqwest only sets this per client, so it takes
    /// effect through the client given to [`build`]; make that one with [`http_client`].
    pub connect_timeout: Duration,
    /// Longest one attempt may take, from sending to the last byte of the answer (streamed or
    /// not). Each retry gets its own.
    pub total_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first retry waits about this long; each further one twice as long (with jitter).
    pub initial_backoff: Duration,
}

impl ProviderConfig {
    /// A config with production defaults: 10 s to connect, 120 s per attempt, 2 retries from
    /// 500 ms.
    pub fn new(
        kind: ProviderKind,
        base_url: impl Into<String>,
        api_key: Option<SecretString>,
    ) -> Self {
        Self {
            kind,
            base_url: base_url.into(),
            api_key,
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(120),
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
        }
    }
}

/// A language model vendor.
#[async_trait::async_trait]
pub trait LlmProvider: Send + Sync {
    /// Runs one chat completion, retrying transient failures as the config says.
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError>;
}

/// The provider for `config`, sending through `http`.
///
/// `http` should come from [`http_client`] (or at least have a connect timeout): the total
/// timeout is enforced here, per attempt, but a connect timeout can only be set on a client.
pub fn build(config: ProviderConfig, http: reqwest::Client) -> Arc<dyn LlmProvider> {
    match config.kind {
        ProviderKind::Openai => Arc::new(super::openai::OpenAiProvider::new(config, http)),
        ProviderKind::Anthropic => Arc::new(super::anthropic::AnthropicProvider::new(config, http)),
    }
}

/// An HTTP client fit for [`build`]: `config.connect_timeout` on connect, no overall timeout
/// (each attempt is bounded by `total_timeout` instead, streamed bodies included).
pub fn http_client(config: &ProviderConfig) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| LlmError::Transport(error_chain(&e)))
}

// ---------------------------------------------------------------------------------------------
// Shared machinery for the vendor modules.

/// Longest we wait between attempts, whatever `Retry-After` or the backoff says: a WhatsApp user
/// is waiting, and past a minute a clear error serves them better.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Error bodies are a few hundred bytes; more is not an error body.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// A non-streamed answer over this is not a chat completion.
pub(crate) const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// How one attempt failed, and whether another could succeed.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub error: LlmError,
    pub retry: bool,
    /// What the vendor asked us to wait (`Retry-After`), uncapped.
    pub retry_after: Option<Duration>,
}

impl AttemptError {
    pub(crate) fn fatal(error: LlmError) -> Self {
        Self {
            error,
            retry: false,
            retry_after: None,
        }
    }

    pub(crate) fn retryable(error: LlmError) -> Self {
        Self {
            error,
            retry: true,
            retry_after: None,
        }
    }
}

/// The settings [`with_retries`] needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub total_timeout: Duration,
}

impl From<&ProviderConfig> for RetryPolicy {
    fn from(c: &ProviderConfig) -> Self {
        Self {
            max_retries: c.max_retries,
            initial_backoff: c.initial_backoff,
            total_timeout: c.total_timeout,
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the retries are spent. Each attempt is
/// cut off after `total_timeout`, which counts as a retryable [`LlmError::Timeout`].
pub(crate) async fn with_retries<F, Fut>(
    policy: RetryPolicy,
    mut attempt: F,
) -> Result<ChatResponse, LlmError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<ChatResponse, AttemptError>>,
{
    let mut retries = 0;
    loop {
        let outcome = tokio::time::timeout(policy.total_timeout, attempt())
            .await
            .unwrap_or_else(|_| Err(AttemptError::retryable(LlmError::Timeout)));
        let failure = match outcome {
            Ok(response) => return Ok(response),
            Err(failure) => failure,
        };
        if !failure.retry || retries >= policy.max_retries {
            return Err(failure.error);
        }
        retries += 1;
        let wait = match failure.retry_after {
            Some(asked) => asked.min(MAX_WAIT),
            None => backoff(policy.initial_backoff, retries),
        };
        tracing::warn!(
            retry = retries,
            max_retries = policy.max_retries,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            error = %failure.error,
            "LLM call failed; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// `initial * 2^(retry-1)`, capped, then scaled by a random factor in [0.5, 1] so that many
/// conversations hitting the same rate limit do not come back in lockstep.
fn backoff(initial: Duration, retry: u32) -> Duration {
    let exponential = initial
        .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
        .min(MAX_WAIT);
    // Without randomness (it never fails on our platforms) the full delay is still a backoff.
    let r = getrandom::u32().unwrap_or(u32::MAX);
    exponential.mul_f64(0.5 + 0.5 * f64::from(r) / f64::from(u32::MAX))
}

/// The wait a response asks for: OpenAI's `retry-after-ms`, else `retry-after` in seconds or as
/// an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64((ms / 1000.0).min(86_400.0)));
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = parse_http_date(value)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only date
/// form servers may still send.
fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok()?;
    let month = 1 + [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), with March as the first month so
    // that the leap day falls at the end of the year.
    let month = i64::try_from(month).ok()?;
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + m * 60 + sec)
}

/// A request that never got an HTTP answer.
pub(crate) fn transport_error(e: reqwest::Error) -> AttemptError {
    if e.is_timeout() {
        AttemptError::retryable(LlmError::Timeout)
    } else if e.is_builder() {
        // A malformed URL or header: the same request fails the same way again.
        AttemptError::fatal(LlmError::Transport(error_chain(&e)))
    } else {
        AttemptError::retryable(LlmError::Transport(error_chain(&e)))
    }
}

/// reqwest's own message is only "error sending request"; the cause ("Connection refused") is
/// further down the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads a whole body, refusing more than `limit` bytes.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, AttemptError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(AttemptError::fatal(LlmError::Protocol(format!(
                "the response is larger than {limit} bytes"
            ))));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a JSON answer; a body that does not fit is a protocol error, not retried.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AttemptError> {
    serde_json::from_slice(body)
        .map_err(|e| AttemptError::fatal(LlmError::Protocol(format!("unreadable JSON: {e}"))))
}

/// Whether the vendor answered JSON: some OpenAI-compatible servers ignore `stream: true`.
pub(crate) fn is_json(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"))
}

/// Both vendors' error body, `{"error": {"type", "message", "code"}}`; Ollama and some proxies
/// send `{"error": "text"}` instead.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ErrorField>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Detailed {
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<serde_json::Value>,
    },
    Text(String),
    Other(serde::de::IgnoredAny),
}

/// The vendor's error type (`invalid_request_error`, `overloaded_error`…) and message.
pub(crate) struct VendorError {
    pub kind: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
}

impl VendorError {
    pub(crate) fn parse(body: &[u8]) -> Self {
        Self::from_parsed(serde_json::from_slice(body).unwrap_or_default())
    }

    /// The same, from an error already parsed (a streamed `error` event).
    pub(crate) fn from_value(value: &serde_json::Value) -> Self {
        Self::from_parsed(serde_json::from_value(value.clone()).unwrap_or_default())
    }

    fn from_parsed(parsed: ErrorBody) -> Self {
        let (kind, code, message) = match parsed.error {
            Some(ErrorField::Detailed {
                kind,
                message,
                code,
            }) => (
                kind,
                code.and_then(|c| c.as_str().map(str::to_owned)),
                message,
            ),
            Some(ErrorField::Text(text)) => (None, None, Some(text)),
            Some(ErrorField::Other(_)) | None => (None, None, parsed.message),
        };
        Self {
            kind,
            code,
            message: message.filter(|m| !m.trim().is_empty()),
        }
    }

    pub(crate) fn is(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind) || self.code.as_deref() == Some(kind)
    }
}

/// Turns a non-2xx response into the error it stands for.
pub(crate) async fn error_from_response(
    response: reqwest::Response,
    api_key: Option<&SecretString>,
) -> AttemptError {
    let status = response.status();
    let code = status.as_u16();
    let asked_wait = retry_after(response.headers());
    // Anthropic says outright whether a retry can help; trust a "no".
    let vendor_says_no = response
        .headers()
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    let body = read_body(response, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let vendor = VendorError::parse(&body);
    let message = scrub(
        vendor.message.clone().unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            if text.is_empty() || text.starts_with('<') {
                // Nothing, or a proxy's HTML page: the status says more.
                format!("HTTP {status}")
            } else {
                truncate(text, 500)
            }
        }),
        api_key,
    );
    let (error, retry) = match code {
        401 | 403 => (LlmError::Unauthorized(message), false),
        408 => (LlmError::Timeout, true),
        409 => (LlmError::BadRequest(message), true),
        // An exhausted quota stays exhausted until someone pays; retrying only delays the
        // answer. OpenAI marks it by type and, on newer bodies, by code.
        429 if vendor.is("insufficient_quota") => {
            tracing::warn!(vendor_message = %message, "LLM quota exhausted");
            (LlmError::RateLimited { retry_after: None }, false)
        }
        429 => (
            LlmError::RateLimited {
                retry_after: asked_wait,
            },
            true,
        ),
        529 => (LlmError::Overloaded, true),
        _ if vendor.is("overloaded_error") => (LlmError::Overloaded, true),
        500..=599 => (LlmError::Server(code), true),
        400..=499 => (LlmError::BadRequest(message), false),
        _ => (
            LlmError::Protocol(format!("unexpected HTTP status {status}")),
            false,
        ),
    };
    AttemptError {
        error,
        retry: retry && !vendor_says_no,
        retry_after: asked_wait,
    }
}

/// An error reported inside a 200 stream (Anthropic's `error` event, OpenAI's `error` chunk).
/// Transient kinds are retried only while nothing of the answer has arrived: a retry re-bills
/// the whole prompt, and an answer cut off late is usually worth reporting rather than redoing.
pub(crate) fn stream_error(vendor: VendorError, content_seen: bool) -> AttemptError {
    let error = if vendor.is("overloaded_error") {
        LlmError::Overloaded
    } else if vendor.is("rate_limit_error") || vendor.is("rate_limit_exceeded") {
        LlmError::RateLimited { retry_after: None }
    } else if vendor.is("api_error") || vendor.is("server_error") {
        LlmError::Server(500)
    } else {
        let message = vendor
            .message
            .unwrap_or_else(|| "an error event without a message".to_owned());
        return AttemptError::fatal(LlmError::Protocol(message));
    };
    AttemptError {
        error,
        retry: !content_seen,
        retry_after: None,
    }
}

/// Sends the request; any answer but 2xx becomes an [`AttemptError`].
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    api_key: Option<&SecretString>,
) -> Result<reqwest::Response, AttemptError> {
    let response = request.send().await.map_err(transport_error)?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(error_from_response(response, api_key).await)
    }
}

/// Vendors echo a masked key in their 401 message; should one ever echo it whole, it still must
/// not reach our errors or logs.
pub(crate) fn scrub(message: String, api_key: Option<&SecretString>) -> String {
    match api_key.map(|k| k.expose_secret()) {
        Some(key) if key.len() >= 8 && message.contains(key) => message.replace(key, "[redacted]"),
        _ => message,
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Parses tool-call arguments as the model wrote them. Empty means no arguments (some
/// OpenAI-compatible servers send `""` for a tool without parameters); invalid JSON is kept raw.
pub(crate) fn parse_arguments(raw: String) -> serde_json::Value {
    if raw.trim().is_empty() {
        return serde_json::Value::Object(serde_json::Map::new());
    }
    serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw))
}

/// A model parameter as JSON. `f32 → f64` would turn `0.2` into `0.20000000298023224`; going
/// through the shortest decimal form keeps what the user wrote.
pub(crate) fn f32_json(v: f32) -> serde_json::Value {
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// The span around one call: who and what, never the messages.
pub(crate) fn call_span(kind: ProviderKind, req: &ChatRequest) -> tracing::Span {
    tracing::info_span!(
        "llm_chat",
        provider = kind.as_str(),
        model = %req.model.name,
        conversation_id = %req.metadata.conversation_id,
        stream = req.stream,
    )
}

/// Logs the outcome inside the call's span.
pub(crate) fn log_outcome(result: &Result<ChatResponse, LlmError>) {
    match result {
        Ok(r) => tracing::info!(
            input_tokens = r.usage.input_tokens,
            output_tokens = r.usage.output_tokens,
            finish = ?r.finish,
            tool_calls = r.tool_calls.len(),
            "LLM call finished"
        ),
        Err(e) => tracing::warn!(error = %e, "LLM call failed"),
    }
}

/// The conversation id header value, refusing ids that cannot be a header.
pub(crate) fn conversation_header(
    metadata: &RequestMetadata,
) -> Result<reqwest::header::HeaderValue, LlmError> {
    reqwest::header::HeaderValue::from_str(&metadata.conversation_id).map_err(|_| {
        LlmError::BadRequest("the conversation id is not a valid header value".to_owned())
    })
}

pub(crate) const CONVERSATION_HEADER: &str = "x-parley-conversation-id";

#[cfg(test)]
pub(crate) mod test_support {
    //! What both vendors' tests share: fixtures, configs and a request to send.

    use super::*;
    use std::path::Path;

    pub(crate) const KEY: &str = "sk-test-0123456789abcdef";

    pub(crate) fn fixture(path: &str) -> Vec<u8> {
        let full = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/llm")
            .join(path);
        std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    pub(crate) fn config(kind: ProviderKind, base_url: String) -> ProviderConfig {
        ProviderConfig {
            kind,
            base_url,
            api_key: Some(SecretString::from(KEY)),
            connect_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(10),
            max_retries: 2,
            initial_backoff: Duration::from_millis(1),
        }
    }

    pub(crate) fn provider(config: ProviderConfig) -> Arc<dyn LlmProvider> {
        let http = http_client(&config).unwrap();
        build(config, http)
    }

    pub(crate) fn request(model: &str, stream: bool) -> ChatRequest {
        ChatRequest {
            model: model.parse().unwrap(),
            system: None,
            messages: vec![ChatMessage::user(
                "What's the weather like in San Francisco?",
            )],
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            metadata: RequestMetadata {
                conversation_id: "cnv_01TEST".to_owned(),
                user_hash: "u_5f2b".to_owned(),
            },
            stream,
        }
    }

    /// A port nothing listens on.
    pub(crate) fn closed_port_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn http_dates_convert_to_epoch_seconds() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT"),
            Some(1_709_251_199)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let initial = Duration::from_millis(100);
        for retry in 1..=4 {
            let full = initial * 2u32.pow(retry - 1);
            let d = backoff(initial, retry);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
        }
        assert!(backoff(Duration::from_secs(10), 30) <= MAX_WAIT);
    }

    #[test]
    fn model_parameters_keep_their_decimal_form() {
        assert_eq!(f32_json(0.2).to_string(), "0.2");
        assert_eq!(f32_json(-1.5).to_string(), "-1.5");
    }

    #[test]
    fn arguments_are_parsed_or_kept_raw() {
        assert_eq!(
            parse_arguments(r#"{"city":"Paris"}"#.to_owned()),
            serde_json::json!({"city": "Paris"})
        );
        assert_eq!(parse_arguments(String::new()), serde_json::json!({}));
        assert_eq!(
            parse_arguments(r#"{"city":"Pa"#.to_owned()),
            serde_json::Value::String(r#"{"city":"Pa"#.to_owned())
        );
    }

    #[test]
    fn vendor_error_bodies_of_every_shape_yield_a_message() {
        let openai = test_support::fixture("openai/error_401_invalid_api_key.json");
        let v = VendorError::parse(&openai);
        assert!(v.message.unwrap().starts_with("Incorrect API key provided"));
        assert_eq!(v.code.as_deref(), Some("invalid_api_key"));
        let anthropic = test_support::fixture("anthropic/error_529_overloaded.json");
        assert!(VendorError::parse(&anthropic).is("overloaded_error"));
        let legacy =
            test_support::fixture("openai/error_429_insufficient_quota_legacy_code_null.json");
        assert!(VendorError::parse(&legacy).is("insufficient_quota"));
        let ollama = VendorError::parse(br#"{"error":"model \"llama9\" not found"}"#);
        assert_eq!(
            ollama.message.as_deref(),
            Some("model \"llama9\" not found")
        );
        assert!(VendorError::parse(b"<html>").message.is_none());
    }

    #[test]
    fn a_key_echoed_by_the_vendor_is_scrubbed() {
        let key = SecretString::from(test_support::KEY);
        let msg = format!("Incorrect API key provided: {}.", test_support::KEY);
        assert_eq!(
            scrub(msg, Some(&key)),
            "Incorrect API key provided: [redacted]."
        );
    }

    #[test]
    fn images_are_debugged_by_size() {
        let part = ContentPart::Image {
            mime_type: "image/png".to_owned(),
            data: vec![0; 4096],
        };
        assert_eq!(
            format!("{part:?}"),
            r#"Image { mime_type: "image/png", bytes: 4096 }"#
        );
    }
}
