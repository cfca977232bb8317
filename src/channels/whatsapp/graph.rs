//! A client for Meta's Graph API, the part WhatsApp uses. Every call goes to
//! `PARLEY_WHATSAPP_GRAPH_URL/PARLEY_WHATSAPP_GRAPH_VERSION/...`, so tests and proxies can stand
//! in for Meta.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// Meta's error object (`{"error": {...}}` in responses, `errors[]` in webhooks).
#[derive(Debug, Clone, Deserialize)]
pub struct MetaError {
    pub code: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub error_subcode: Option<i64>,
    #[serde(default)]
    pub error_data: Option<MetaErrorData>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetaErrorData {
    #[serde(default)]
    pub details: Option<String>,
}

impl MetaError {
    /// Meta's most specific explanation: the details when given, else the message.
    pub fn explanation(&self) -> String {
        self.error_data
            .as_ref()
            .and_then(|d| d.details.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| self.message.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Meta answered with an error object.
    #[error("Meta answered {status} with error {}: {}", .error.code, .error.explanation())]
    Meta { status: u16, error: MetaError },
    #[error("Meta did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not reach the Graph API: {0}")]
    Transport(String),
    #[error("unexpected answer from the Graph API (HTTP {status})")]
    Unexpected { status: u16 },
}

impl GraphError {
    pub fn meta_code(&self) -> Option<i64> {
        match self {
            Self::Meta { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// Whether sending again later can succeed: rate limits (130429 throughput, 131056 pair
    /// rate, 4 and 80007 app/WABA limits), Meta's own trouble (5xx, 131000, 2), timeouts and
    /// network errors. Everything else (131047 outside the window, 131026 undeliverable, 100
    /// bad parameter, 190 token) fails the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Meta { status, error } => {
                matches!(error.code, 130429 | 131056 | 4 | 80007 | 131000 | 2 | 1)
                    || (*status >= 500 && !matches!(error.code, 131047 | 131026 | 100 | 190))
            }
            Self::Timeout(_) | Self::Transport(_) => true,
            Self::Unexpected { status } => *status >= 500 || *status == 429,
        }
    }
}

/// Why a media item could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Meta refused to describe the media (unknown id, expired token...).
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("the media is {size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("media of type {0} is not accepted")]
    TypeNotAllowed(String),
    /// The download URL answered an error, even after asking Meta for a fresh one.
    #[error("the media download failed with HTTP {0}")]
    Download(u16),
}

/// What `GET /{media-id}` says about a media item. The URL lives for five minutes.
#[derive(Debug, Clone, Deserialize)]
pub struct MediaInfo {
    pub url: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Meta sends a number or, in some versions, a string.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub file_size: Option<u64>,
}

fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A downloaded media item.
#[derive(Debug, Clone)]
pub struct MediaDownload {
    pub bytes: Vec<u8>,
    /// As Meta described it, else as the download answered.
    pub mime_type: String,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: MetaError,
}

/// What `GET /{phone-number-id}` tells about a number.
#[derive(Debug, Clone, Deserialize)]
pub struct PhoneNumber {
    pub id: String,
    #[serde(default)]
    pub display_phone_number: Option<String>,
    #[serde(default)]
    pub verified_name: Option<String>,
    #[serde(default)]
    pub quality_rating: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct SendResponse {
    messages: Vec<SentMessage>,
}

#[derive(Debug, Clone, Deserialize)]
struct SentMessage {
    id: String,
}

#[derive(Debug, Clone, Deserialize)]
struct UploadResponse {
    id: String,
}

#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    version: String,
    timeout: Duration,
}

impl GraphClient {
    pub fn new(base: Url, version: String, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base,
            version,
            timeout,
        })
    }

    /// The same client (and connection pool) for another Graph API base URL: a sandbox
    /// integration's replies go to Parley's own Graph endpoint instead of Meta's.
    pub fn with_base(&self, base: Url) -> Self {
        Self {
            base,
            ..self.clone()
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{}",
            self.base.as_str().trim_end_matches('/'),
            self.version,
            path.trim_start_matches('/')
        )
    }

    /// Reads a phone number: proves that the id exists and the token may use it.
    pub async fn phone_number(
        &self,
        phone_number_id: &str,
        token: &SecretString,
    ) -> Result<PhoneNumber, GraphError> {
        let req = self
            .http
            .get(self.url(&urlencode(phone_number_id)))
            .bearer_auth(token.expose_secret());
        self.call(req).await
    }

    /// Sends a message (the Cloud API JSON body) and returns its `wamid`.
    pub async fn send_message(
        &self,
        phone_number_id: &str,
        token: &SecretString,
        body: &serde_json::Value,
    ) -> Result<String, GraphError> {
        let req = self
            .http
            .post(self.url(&format!("{}/messages", urlencode(phone_number_id))))
            .bearer_auth(token.expose_secret())
            .json(body);
        let res: SendResponse = self.call(req).await?;
        res.messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .ok_or(GraphError::Unexpected { status: 200 })
    }

    /// Uploads a file to Meta's media API (`POST /{phone-number-id}/media`, multipart) and
    /// returns its media id, which a message can then send as `{"id": ...}`. Meta keeps it for
    /// 30 days.
    pub async fn upload_media(
        &self,
        phone_number_id: &str,
        token: &SecretString,
        mime_type: &str,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<String, GraphError> {
        let boundary = format!("parley-{}", uuid::Uuid::new_v4().simple());
        let body = multipart_body(&boundary, mime_type, filename, &bytes);
        let req = self
            .http
            .post(self.url(&format!("{}/media", urlencode(phone_number_id))))
            .bearer_auth(token.expose_secret())
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let res: UploadResponse = self.call(req).await?;
        Ok(res.id)
    }

    /// Marks an inbound message read and, with `typing`, shows the typing indicator to the user
    /// (it disappears when we reply, or after 25 seconds).
    pub async fn mark_read(
        &self,
        phone_number_id: &str,
        token: &SecretString,
        wamid: &str,
        typing: bool,
    ) -> Result<(), GraphError> {
        let mut body = serde_json::json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": wamid,
        });
        if typing {
            body["typing_indicator"] = serde_json::json!({"type": "text"});
        }
        let req = self
            .http
            .post(self.url(&format!("{}/messages", urlencode(phone_number_id))))
            .bearer_auth(token.expose_secret())
            .json(&body);
        let _: serde_json::Value = self.call(req).await?;
        Ok(())
    }

    /// Describes a media item: where to download it, its type and size.
    pub async fn media_info(
        &self,
        media_id: &str,
        token: &SecretString,
    ) -> Result<MediaInfo, GraphError> {
        let req = self
            .http
            .get(self.url(&urlencode(media_id)))
            .bearer_auth(token.expose_secret());
        self.call(req).await
    }

    /// Downloads a media item: asks Meta for its URL, then fetches that with the token. The URL
    /// expires after five minutes (a retried job can hold a stale one), so when the download
    /// answers 4xx a fresh URL is asked for once. Bytes beyond `max_bytes` are never read:
    /// the declared size and `Content-Length` are checked first, the stream as it arrives.
    pub async fn download_media(
        &self,
        media_id: &str,
        token: &SecretString,
        max_bytes: u64,
        type_allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<MediaDownload, MediaError> {
        let mut refreshed = false;
        loop {
            let info = self.media_info(media_id, token).await?;
            if let Some(mime) = &info.mime_type
                && !type_allowed(mime)
            {
                return Err(MediaError::TypeNotAllowed(mime.clone()));
            }
            if let Some(size) = info.file_size
                && size > max_bytes
            {
                return Err(MediaError::TooLarge {
                    size,
                    limit: max_bytes,
                });
            }
            // A document may be 100 MiB: the download gets longer than an API call.
            let res = self
                .http
                .get(&info.url)
                .bearer_auth(token.expose_secret())
                .timeout(self.timeout * 4)
                .send()
                .await
                .map_err(|e| self.transport(&e))?;
            let status = res.status();
            if status.is_client_error() && !refreshed {
                refreshed = true;
                continue;
            }
            if !status.is_success() {
                return Err(MediaError::Download(status.as_u16()));
            }
            let answered_type = res
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mime_type = match (info.mime_type, answered_type) {
                (Some(m), _) => m,
                (None, Some(m)) if type_allowed(&m) => m,
                (None, Some(m)) => return Err(MediaError::TypeNotAllowed(m)),
                (None, None) => "application/octet-stream".to_owned(),
            };
            let bytes = self.read_bounded(res, max_bytes).await?;
            return Ok(MediaDownload { bytes, mime_type });
        }
    }

    async fn read_bounded(
        &self,
        mut res: reqwest::Response,
        max_bytes: u64,
    ) -> Result<Vec<u8>, MediaError> {
        if let Some(len) = res.content_length()
            && len > max_bytes
        {
            return Err(MediaError::TooLarge {
                size: len,
                limit: max_bytes,
            });
        }
        let mut bytes = Vec::with_capacity(res.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = res.chunk().await.map_err(|e| self.transport(&e))? {
            let size = (bytes.len() + chunk.len()) as u64;
            if size > max_bytes {
                return Err(MediaError::TooLarge {
                    size,
                    limit: max_bytes,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, GraphError> {
        let res = req.send().await.map_err(|e| self.transport(&e))?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| self.transport(&e))?;
        if status == StatusCode::OK {
            return serde_json::from_slice(&bytes).map_err(|_| GraphError::Unexpected {
                status: status.as_u16(),
            });
        }
        match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
            Ok(env) => Err(GraphError::Meta {
                status: status.as_u16(),
                error: env.error,
            }),
            Err(_) => Err(GraphError::Unexpected {
                status: status.as_u16(),
            }),
        }
    }

    fn transport(&self, e: &reqwest::Error) -> GraphError {
        if e.is_timeout() {
            GraphError::Timeout(self.timeout)
        } else {
            let what = if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            GraphError::Transport(what.to_owned())
        }
    }
}

/// A `multipart/form-data` body with the fields Meta's media upload wants. Built by hand: it is
/// three fields, and reqwest's multipart support would pull in more dependencies for them.
fn multipart_body(boundary: &str, mime_type: &str, filename: &str, bytes: &[u8]) -> Vec<u8> {
    // Quotes and line breaks would end the header value early.
    let safe_name: String = filename
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let safe_mime: String = mime_type.chars().filter(|c| !c.is_control()).collect();
    let mut body = Vec::with_capacity(bytes.len() + 512);
    for (name, value) in [
        ("messaging_product", "whatsapp"),
        ("type", safe_mime.as_str()),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe_name}\"\r\nContent-Type: {safe_mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// Ids go into URL paths; anything but digits and letters is escaped.
fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../shared/fixtures/graph/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
    }

    #[tokio::test]
    async fn upload_media_posts_multipart_and_returns_the_media_id() {
        use wiremock::matchers::{header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v23.0/1065/media"))
            .and(header("authorization", "Bearer EAAG-token"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"id": "4490709327384033"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let client = GraphClient::new(
            server.uri().parse().unwrap(),
            "v23.0".into(),
            Duration::from_secs(5),
        )
        .unwrap();
        let token = SecretString::from("EAAG-token");
        let bytes = vec![0x89, b'P', b'N', b'G', 0, 1, 2, 255];
        let id = client
            .upload_media("1065", &token, "image/png", "a \"b\".png", bytes.clone())
            .await
            .unwrap();
        assert_eq!(id, "4490709327384033");
        let req = &server.received_requests().await.unwrap()[0];
        let ct = req.headers.get("content-type").unwrap().to_str().unwrap();
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let body = &req.body;
        let text = String::from_utf8_lossy(body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"messaging_product\"\r\n\r\nwhatsapp\r\n"));
        assert!(text.contains("name=\"type\"\r\n\r\nimage/png\r\n"));
        assert!(
            text.contains(
                "name=\"file\"; filename=\"a _b_.png\"\r\nContent-Type: image/png\r\n\r\n"
            )
        );
        assert!(
            body.windows(bytes.len()).any(|w| w == bytes.as_slice()),
            "the bytes, verbatim"
        );
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));

        // Meta's media errors come back as GraphError::Meta.
        let failing = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_string(format!(
                r#"{{"error": {}}}"#,
                fixture("error_object_131053_media_upload.json")
            )))
            .mount(&failing)
            .await;
        let client = GraphClient::new(
            failing.uri().parse().unwrap(),
            "v23.0".into(),
            Duration::from_secs(5),
        )
        .unwrap();
        let err = client
            .upload_media("1065", &token, "image/png", "x.png", vec![1])
            .await
            .unwrap_err();
        assert_eq!(err.meta_code(), Some(131053));
        assert!(!err.is_retryable());
    }

    #[test]
    fn meta_error_bodies_parse() {
        let e: ErrorEnvelope =
            serde_json::from_str(&fixture("error_190_expired_token.json")).unwrap();
        assert_eq!(e.error.code, 190);
        assert_eq!(e.error.error_subcode, Some(463));
        let e: ErrorEnvelope =
            serde_json::from_str(&fixture("error_100_invalid_parameter.json")).unwrap();
        assert_eq!(e.error.code, 100);
        assert!(e.error.explanation().contains("mandatory"));
        let e: MetaError =
            serde_json::from_str(&fixture("error_object_131047_reengagement.json")).unwrap();
        assert_eq!(e.code, 131047);
        let ok: SendResponse = serde_json::from_str(&fixture("send_message_success.json")).unwrap();
        let media: MediaInfo = serde_json::from_str(&fixture("media_url_retrieve.json")).unwrap();
        assert_eq!(media.file_size, Some(61901));
        assert_eq!(media.mime_type.as_deref(), Some("image/jpeg"));
        let media: MediaInfo =
            serde_json::from_str(&fixture("media_url_retrieve_meta_docs.json")).unwrap();
        assert_eq!(media.file_size, Some(303833));
        assert!(ok.messages[0].id.starts_with("wamid."));
    }
}
