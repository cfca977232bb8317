//! Settings: embedded defaults, then an optional TOML file (`--config`), then `PARLEY_*`
//! environment variables. Everything is validated once, at start; a bad value stops the process
//! with a message naming the setting (`PARLEY_LISTEN: ...`).
//!
//! The file uses the same names as the environment without the prefix, in lower case:
//! `PARLEY_DATABASE_URL` is `database_url`. Unknown keys are rejected, so a typo cannot silently
//! leave a default in place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

const DEFAULTS: &str = include_str!("defaults.toml");
const ENV_PREFIX: &str = "PARLEY_";

/// The settings as read, before validation. Field docs live on [`Settings`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: String,
    database_url: String,
    database_max_connections: u32,
    redis_url: Option<String>,
    public_url: Option<String>,
    master_key: Option<String>,
    master_key_previous: Option<String>,
    jwt_secret: Option<String>,
    jwt_ttl_secs: u64,
    data_dir: PathBuf,
    web_admin_dir: PathBuf,
    signup: String,
    whatsapp_graph_url: String,
    whatsapp_graph_version: String,
    whatsapp_graph_timeout_ms: u64,
    openai_api_key: Option<String>,
    openai_base_url: String,
    anthropic_api_key: Option<String>,
    anthropic_base_url: String,
    log_format: String,
    log_level: String,
    shutdown_timeout_secs: u64,
    worker_concurrency: usize,
    http_workers: usize,
    coalesce_window_ms: u64,
    history_tokens: u32,
    llm_timeout_secs: u64,
    llm_max_retries: u32,
    tool_rounds: u32,
    apology_text: String,
    lane_lease_secs: u64,
    run_workers: bool,
    media_image_max_bytes: u64,
    media_audio_max_bytes: u64,
    media_video_max_bytes: u64,
    media_document_max_bytes: u64,
    media_sticker_max_bytes: u64,
    media_types: String,
    document_text_chars: usize,
}

/// Validated settings. Each field names its environment variable.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PARLEY_LISTEN`: address and port the HTTP server binds. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `PARLEY_DATABASE_URL`: `sqlite://PATH` (default `sqlite://data/parley.db`; the folder and
    /// file are created when missing) or `postgres://USER:PASS@HOST:PORT/DB`. The job queue lives
    /// in the same database.
    pub database: DatabaseUrl,
    /// `PARLEY_DATABASE_MAX_CONNECTIONS`: size of the connection pool. Default 16.
    pub database_max_connections: u32,
    /// `PARLEY_REDIS_URL`: `redis://` or `rediss://` URL. Unset means no Redis: everything is
    /// kept in the database.
    pub redis_url: Option<SecretString>,
    /// `PARLEY_PUBLIC_URL`: the external base URL (scheme, host, optional path prefix) used to show
    /// callback URLs to tenants. Default `http://` + `PARLEY_LISTEN`.
    pub public_url: Url,
    /// `PARLEY_MASTER_KEY`: 32 bytes, base64. Encrypts tenant secrets at rest. When unset, `serve`
    /// uses `DATA_DIR/master.key`, creating it (mode 0600) on first start.
    /// IMPORTANT: secrets stored under a key cannot be read without it; back it up.
    pub master_key: Option<SecretString>,
    /// `PARLEY_MASTER_KEY_PREVIOUS`: the key before the last `parley keys rotate`, still accepted
    /// for reading so replicas can be restarted one by one. With key files,
    /// `DATA_DIR/master.key.previous` plays this part.
    pub master_key_previous: Option<SecretString>,
    /// `PARLEY_JWT_SECRET`: 32 bytes, base64. Signs dashboard sessions. Same rule as the master
    /// key, with `DATA_DIR/jwt.key`. Changing it logs everybody out.
    pub jwt_secret: Option<SecretString>,
    /// `PARLEY_JWT_TTL_SECS`: lifetime of a dashboard session token, in seconds. Default 43200.
    pub jwt_ttl: Duration,
    /// `PARLEY_DATA_DIR`: folder for key files and local data (files users send live under
    /// `files/`, see [`crate::files`]). Default `data`.
    pub data_dir: PathBuf,
    /// `PARLEY_WEB_ADMIN_DIR`: the built dashboard (`web-admin/dist`, made by `make run` or
    /// `npm run build` in `web-admin/`), served at `/`. When it is missing, `/` shows a page
    /// that says how to build it; the API works either way. Default `web-admin/dist`.
    pub web_admin_dir: PathBuf,
    /// `PARLEY_SIGNUP`: `open` lets anyone create a tenant through `/api/v1/auth/signup`;
    /// `closed` leaves only `parley tenant create`. Default `open`.
    pub signup: Signup,
    /// `PARLEY_WHATSAPP_GRAPH_URL`: base URL of Meta's Graph API. Default
    /// `https://graph.facebook.com`. Point it at a proxy or a mock.
    pub whatsapp_graph_url: Url,
    /// `PARLEY_WHATSAPP_GRAPH_VERSION`: Graph API version path segment, e.g. `v23.0`.
    pub whatsapp_graph_version: String,
    /// `PARLEY_WHATSAPP_GRAPH_TIMEOUT_MS`: how long one Graph API call may take. Default 15000.
    pub whatsapp_graph_timeout: Duration,
    /// `PARLEY_OPENAI_API_KEY`: when set, every tenant sees a default OpenAI-compatible provider
    /// (`prv_system_openai`) using this key, without seeing the key.
    pub openai_api_key: Option<SecretString>,
    /// `PARLEY_OPENAI_BASE_URL`: base URL of that provider, with the version path. Default
    /// `https://api.openai.com/v1`.
    pub openai_base_url: Url,
    /// `PARLEY_ANTHROPIC_API_KEY`: when set, a default Anthropic provider (`prv_system_anthropic`).
    pub anthropic_api_key: Option<SecretString>,
    /// `PARLEY_ANTHROPIC_BASE_URL`: its base URL, without a version path. Default
    /// `https://api.anthropic.com`.
    pub anthropic_base_url: Url,
    /// `PARLEY_LOG_FORMAT`: `pretty` for people, `json` for log collectors. Default `pretty`.
    pub log_format: LogFormat,
    /// `PARLEY_LOG_LEVEL`: a tracing filter such as `info` or `info,parley=debug`. Default `info`.
    pub log_level: String,
    /// `PARLEY_SHUTDOWN_TIMEOUT_SECS`: on SIGTERM/SIGINT, how long in-flight requests and jobs may
    /// take to finish before the process exits anyway. Default 30.
    pub shutdown_timeout: Duration,
    /// `PARLEY_WORKER_CONCURRENCY`: jobs one process runs at the same time. Default 64: a turn
    /// mostly waits for its model, and the engine commits the writes of turns in flight together.
    pub worker_concurrency: usize,
    /// `PARLEY_HTTP_WORKERS`: HTTP worker threads; 0 means one per CPU core. Default 0.
    pub http_workers: usize,
    /// `PARLEY_COALESCE_WINDOW_MS`: messages of one contact that arrive within this many
    /// milliseconds of each other are answered in one turn. Default 1500.
    pub coalesce_window: Duration,
    /// `PARLEY_HISTORY_TOKENS`: how much conversation history (estimated tokens) goes into each
    /// prompt; the oldest is dropped first, the current turn never. Default 8000.
    pub history_tokens: u32,
    /// `PARLEY_LLM_TIMEOUT_SECS`: the longest one model call may take. Default 60.
    pub llm_timeout: Duration,
    /// `PARLEY_LLM_MAX_RETRIES`: retries of a model call on 429, 5xx, overload and timeouts.
    /// Default 2.
    pub llm_max_retries: u32,
    /// `PARLEY_TOOL_ROUNDS`: how many times in one turn the model may call its WhatsApp tools
    /// (buttons, lists, locations, media...) and see their results before it must answer in
    /// text. 0 offers no tools. Default 4.
    pub tool_rounds: u32,
    /// `PARLEY_APOLOGY_TEXT`: what the user gets when the model fails for a turn.
    pub apology_text: String,
    /// `PARLEY_LANE_LEASE_SECS`: how long a worker's hold on a contact lasts without renewal
    /// (it renews every third of it). After a crash, that contact waits this long. Default 30.
    pub lane_lease: Duration,
    /// `PARLEY_RUN_WORKERS`: whether `serve` also runs the queue workers. Set it to false to
    /// split web and worker tiers (run `parley worker` elsewhere). Default true.
    pub run_workers: bool,
    /// What media users may send in, and how much of a document the model reads.
    pub media: MediaLimits,
}

/// Limits on inbound media. The defaults are WhatsApp's own limits, so nothing a user can send
/// is refused by them; lower them to save disk and bandwidth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLimits {
    /// `PARLEY_MEDIA_IMAGE_MAX_BYTES`: largest image downloaded. Default 5 MiB.
    pub image_max_bytes: u64,
    /// `PARLEY_MEDIA_AUDIO_MAX_BYTES`: largest audio or voice note. Default 16 MiB.
    pub audio_max_bytes: u64,
    /// `PARLEY_MEDIA_VIDEO_MAX_BYTES`: largest video. Default 16 MiB.
    pub video_max_bytes: u64,
    /// `PARLEY_MEDIA_DOCUMENT_MAX_BYTES`: largest document. Default 100 MiB.
    pub document_max_bytes: u64,
    /// `PARLEY_MEDIA_STICKER_MAX_BYTES`: largest sticker. Default 512 KiB.
    pub sticker_max_bytes: u64,
    /// `PARLEY_MEDIA_TYPES`: MIME types downloaded, comma-separated; a trailing `*` matches any
    /// rest (`audio/*`, `application/vnd.openxmlformats-officedocument.*`), `*` alone everything. Parameters (`audio/ogg; codecs=opus`) are ignored when matching.
    pub types: Vec<String>,
    /// `PARLEY_DOCUMENT_TEXT_CHARS`: at most this many characters of a document's text go to
    /// the model. Default 20000.
    pub document_text_chars: usize,
}

/// Who may create a tenant over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signup {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Where the data lives. The PostgreSQL URL may carry a password, so it is kept secret.
#[derive(Clone)]
pub enum DatabaseUrl {
    /// A file path, or `:memory:`.
    Sqlite(PathBuf),
    Postgres(SecretString),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Self::Postgres(url) => write!(f, "{}", redact_url(url.expose_secret())),
        }
    }
}

/// A URL with its password replaced, safe to log.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("********"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable url>".to_owned(),
    }
}

/// A setting that failed validation. The message always starts with the variable's name.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn invalid(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{}{}: {why}", ENV_PREFIX, key.to_uppercase()))
}

impl Settings {
    /// Loads defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, Env::prefixed(ENV_PREFIX).ignore(&["CONFIG"]))
    }

    /// Loads with an explicit environment provider; tests use this to avoid touching the
    /// process environment.
    pub fn load_from(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "--config: file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Values stay strings: we parse them below, with messages that name the variable.
        let raw: Raw = figment
            .merge(env.map(|k| k.as_str().to_lowercase().into()))
            .extract()
            .map_err(describe_figment_error)?;
        Self::validate(raw)
    }

    fn validate(raw: Raw) -> Result<Self, ConfigError> {
        let listen: SocketAddr = raw.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{:?} is not an address such as 127.0.0.1:8080", raw.listen),
            )
        })?;
        let database = parse_database_url(&raw.database_url)?;
        if raw.database_max_connections == 0 {
            return Err(invalid("database_max_connections", "must be at least 1"));
        }
        let redis_url = match raw.redis_url.filter(|s| !s.is_empty()) {
            None => None,
            Some(url) => {
                let parsed = Url::parse(&url)
                    .map_err(|e| invalid("redis_url", format!("not a URL ({e})")))?;
                if !matches!(parsed.scheme(), "redis" | "rediss") {
                    return Err(invalid(
                        "redis_url",
                        "must start with redis:// or rediss://",
                    ));
                }
                Some(SecretString::from(url))
            }
        };
        let public_url = match raw.public_url.filter(|s| !s.is_empty()) {
            Some(u) => parse_http_url("public_url", &u)?,
            None => parse_http_url("public_url", &format!("http://{listen}"))?,
        };
        let master_key = raw.master_key.filter(|s| !s.is_empty());
        if let Some(k) = &master_key {
            crate::keys::decode_key(k).map_err(|e| invalid("master_key", e))?;
        }
        let master_key_previous = raw.master_key_previous.filter(|s| !s.is_empty());
        if let Some(k) = &master_key_previous {
            crate::keys::decode_key(k).map_err(|e| invalid("master_key_previous", e))?;
        }
        let jwt_secret = raw.jwt_secret.filter(|s| !s.is_empty());
        if let Some(k) = &jwt_secret {
            crate::keys::decode_key(k).map_err(|e| invalid("jwt_secret", e))?;
        }
        if raw.jwt_ttl_secs < 60 {
            return Err(invalid("jwt_ttl_secs", "must be at least 60"));
        }
        let signup = match raw.signup.to_ascii_lowercase().as_str() {
            "open" => Signup::Open,
            "closed" => Signup::Closed,
            other => {
                return Err(invalid(
                    "signup",
                    format!("{other:?} is neither \"open\" nor \"closed\""),
                ));
            }
        };
        let whatsapp_graph_url = parse_http_url("whatsapp_graph_url", &raw.whatsapp_graph_url)?;
        let version = raw.whatsapp_graph_version;
        let version_ok = version.len() <= 10
            && version.starts_with('v')
            && version[1..]
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !version_ok {
            return Err(invalid(
                "whatsapp_graph_version",
                format!("{version:?} is not a version such as v23.0"),
            ));
        }
        if !(100..=300_000).contains(&raw.whatsapp_graph_timeout_ms) {
            return Err(invalid(
                "whatsapp_graph_timeout_ms",
                "must be between 100 and 300000",
            ));
        }
        let openai_base_url = parse_http_url("openai_base_url", &raw.openai_base_url)?;
        let anthropic_base_url = parse_http_url("anthropic_base_url", &raw.anthropic_base_url)?;
        let log_format = match raw.log_format.to_ascii_lowercase().as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?} is neither \"pretty\" nor \"json\""),
                ));
            }
        };
        tracing_subscriber::EnvFilter::try_new(&raw.log_level).map_err(|e| {
            invalid(
                "log_level",
                format!("{:?} is not a filter ({e})", raw.log_level),
            )
        })?;
        if raw.coalesce_window_ms > 60_000 {
            return Err(invalid("coalesce_window_ms", "must be at most 60000"));
        }
        if raw.llm_timeout_secs == 0 || raw.llm_timeout_secs > 600 {
            return Err(invalid("llm_timeout_secs", "must be between 1 and 600"));
        }
        if raw.llm_max_retries > 10 {
            return Err(invalid("llm_max_retries", "must be at most 10"));
        }
        if raw.tool_rounds > 16 {
            return Err(invalid("tool_rounds", "must be at most 16"));
        }
        let apology = raw.apology_text.trim();
        if apology.is_empty() || apology.chars().count() > 1000 {
            return Err(invalid("apology_text", "must be 1 to 1000 characters"));
        }
        if !(2..=600).contains(&raw.lane_lease_secs) {
            return Err(invalid("lane_lease_secs", "must be between 2 and 600"));
        }
        if raw.worker_concurrency == 0 {
            return Err(invalid("worker_concurrency", "must be at least 1"));
        }
        // A bound, so that one message cannot fill the disk or the memory of a worker.
        const MEDIA_CEILING: u64 = 1 << 30;
        for (key, v) in [
            ("media_image_max_bytes", raw.media_image_max_bytes),
            ("media_audio_max_bytes", raw.media_audio_max_bytes),
            ("media_video_max_bytes", raw.media_video_max_bytes),
            ("media_document_max_bytes", raw.media_document_max_bytes),
            ("media_sticker_max_bytes", raw.media_sticker_max_bytes),
        ] {
            if v > MEDIA_CEILING {
                return Err(invalid(key, "must be at most 1073741824 (1 GiB)"));
            }
        }
        let media_types = parse_media_types(&raw.media_types)?;
        if raw.document_text_chars > 1_000_000 {
            return Err(invalid("document_text_chars", "must be at most 1000000"));
        }
        Ok(Self {
            listen,
            database,
            database_max_connections: raw.database_max_connections,
            redis_url,
            public_url,
            master_key: master_key.map(SecretString::from),
            master_key_previous: master_key_previous.map(SecretString::from),
            jwt_secret: jwt_secret.map(SecretString::from),
            jwt_ttl: Duration::from_secs(raw.jwt_ttl_secs),
            data_dir: raw.data_dir,
            web_admin_dir: raw.web_admin_dir,
            signup,
            whatsapp_graph_url,
            whatsapp_graph_version: version,
            whatsapp_graph_timeout: Duration::from_millis(raw.whatsapp_graph_timeout_ms),
            openai_api_key: raw
                .openai_api_key
                .filter(|k| !k.is_empty())
                .map(SecretString::from),
            openai_base_url,
            anthropic_api_key: raw
                .anthropic_api_key
                .filter(|k| !k.is_empty())
                .map(SecretString::from),
            anthropic_base_url,
            log_format,
            log_level: raw.log_level,
            shutdown_timeout: Duration::from_secs(raw.shutdown_timeout_secs),
            worker_concurrency: raw.worker_concurrency,
            http_workers: raw.http_workers,
            coalesce_window: Duration::from_millis(raw.coalesce_window_ms),
            history_tokens: raw.history_tokens,
            llm_timeout: Duration::from_secs(raw.llm_timeout_secs),
            llm_max_retries: raw.llm_max_retries,
            tool_rounds: raw.tool_rounds,
            apology_text: raw.apology_text,
            lane_lease: Duration::from_secs(raw.lane_lease_secs),
            run_workers: raw.run_workers,
            media: MediaLimits {
                image_max_bytes: raw.media_image_max_bytes,
                audio_max_bytes: raw.media_audio_max_bytes,
                video_max_bytes: raw.media_video_max_bytes,
                document_max_bytes: raw.media_document_max_bytes,
                sticker_max_bytes: raw.media_sticker_max_bytes,
                types: media_types,
                document_text_chars: raw.document_text_chars,
            },
        })
    }
}

/// `image/jpeg, audio/*` → lower-case entries; each is `*` or `type/subtype`, where the subtype
/// may end in `*`.
fn parse_media_types(raw: &str) -> Result<Vec<String>, ConfigError> {
    let types: Vec<String> = raw
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for t in &types {
        let ok = t == "*"
            || t.split_once('/').is_some_and(|(a, b)| {
                let token = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
                };
                token(a) && (b == "*" || token(b.strip_suffix('*').unwrap_or(b)))
            });
        if !ok {
            return Err(invalid(
                "media_types",
                format!("{t:?} is not a MIME type such as image/jpeg or audio/*"),
            ));
        }
    }
    Ok(types)
}

fn parse_http_url(key: &str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| invalid(key, format!("{raw:?} is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            key,
            format!("{raw:?} must be an http:// or https:// URL"),
        ));
    }
    Ok(url)
}

fn parse_database_url(raw: &str) -> Result<DatabaseUrl, ConfigError> {
    if let Some(rest) = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))
    {
        // Query parameters are not ours to interpret: we set the pragmas ourselves.
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(invalid("database_url", "sqlite URL has no file path"));
        }
        return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
    }
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        Url::parse(raw).map_err(|e| {
            invalid(
                "database_url",
                format!("{} is not a valid URL ({e})", redact_url(raw)),
            )
        })?;
        return Ok(DatabaseUrl::Postgres(SecretString::from(raw.to_owned())));
    }
    Err(invalid(
        "database_url",
        "must start with sqlite:// or postgres://",
    ))
}

fn describe_figment_error(e: figment::Error) -> ConfigError {
    let key = e.path.last().cloned();
    let what = match &e.kind {
        figment::error::Kind::UnknownField(field, _) => {
            return ConfigError(format!(
                "{}{}: unknown setting",
                ENV_PREFIX,
                field.to_uppercase()
            ));
        }
        figment::error::Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {actual}")
        }
        other => other.to_string(),
    };
    match key {
        Some(k) => invalid(&k, what),
        None => ConfigError(format!("configuration: {e}")),
    }
}

impl Settings {
    /// The settings tests and benchmarks start from: the defaults with no file and no
    /// environment, on an ephemeral port.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::load_from(None, Env::prefixed("PARLEY_UNUSED_IN_DEFAULTS_"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        // A prefix nobody sets, so the real environment cannot leak into these tests.
        let mut figment =
            Figment::from(Toml::string(DEFAULTS)).merge(Env::prefixed("PARLEY_NOT_SET_IN_TESTS_"));
        for (k, v) in vars {
            figment = figment.merge((k.to_lowercase(), (*v).to_owned()));
        }
        let raw: Raw = figment.extract().map_err(describe_figment_error)?;
        Settings::validate(raw)
    }

    #[test]
    fn defaults_are_valid() {
        let s = load(&[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert!(
            matches!(s.database, DatabaseUrl::Sqlite(ref p) if p == Path::new("data/parley.db"))
        );
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(s.signup, Signup::Open);
        assert_eq!(s.tool_rounds, 4);
    }

    #[test]
    fn bad_values_name_their_setting() {
        let cases = [
            ("listen", "nowhere", "PARLEY_LISTEN"),
            ("database_url", "mysql://x", "PARLEY_DATABASE_URL"),
            ("signup", "maybe", "PARLEY_SIGNUP"),
            ("master_key", "c2hvcnQ=", "PARLEY_MASTER_KEY"),
            ("jwt_secret", "not base64!", "PARLEY_JWT_SECRET"),
            ("public_url", "ftp://x", "PARLEY_PUBLIC_URL"),
            (
                "whatsapp_graph_version",
                "23",
                "PARLEY_WHATSAPP_GRAPH_VERSION",
            ),
            ("log_format", "xml", "PARLEY_LOG_FORMAT"),
            ("redis_url", "http://x", "PARLEY_REDIS_URL"),
            ("media_types", "image/jpeg, nonsense", "PARLEY_MEDIA_TYPES"),
            (
                "media_image_max_bytes",
                "99999999999",
                "PARLEY_MEDIA_IMAGE_MAX_BYTES",
            ),
            ("document_text_chars", "-1", "PARLEY_DOCUMENT_TEXT_CHARS"),
            ("tool_rounds", "17", "PARLEY_TOOL_ROUNDS"),
        ];
        for (key, value, name) in cases {
            let err = load(&[(key, value)]).err().map(|e| e.to_string());
            let err = err.unwrap_or_else(|| panic!("{key}={value} was accepted"));
            assert!(err.starts_with(name), "{key}: {err}");
        }
    }

    #[test]
    fn postgres_urls_are_not_printed_with_their_password() {
        let s = load(&[("database_url", "postgres://u:hunter2@db:5432/parley")]).unwrap();
        let shown = format!("{:?}", s.database);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(format!("{s:?}").find("hunter2").is_none());
    }
}
