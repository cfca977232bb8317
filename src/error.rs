//! The one error type of the HTTP API.
//!
//! Every failure a client can see is an [`ApiError`], rendered as ChatBotKit's error shape
//! `{"message": "...", "code": "..."}`. Client errors carry a message that is part of the
//! contract. Internal errors keep their cause chain for the log and answer a generic message:
//! the client never sees SQL, paths or stack traces.

use actix_web::{HttpResponse, ResponseError, http::StatusCode, http::header};
use serde::Serialize;
use utoipa::ToSchema;

/// ChatBotKit's error codes, each tied to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BadRequest,
    NotAuthenticated,
    NotAuthorized,
    NotFound,
    Conflict,
    UnprocessableEntity,
    TooManyRequests,
    InternalServerError,
    ServiceUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "BAD_REQUEST",
            Self::NotAuthenticated => "NOT_AUTHENTICATED",
            Self::NotAuthorized => "NOT_AUTHORIZED",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::UnprocessableEntity => "UNPROCESSABLE_ENTITY",
            Self::TooManyRequests => "TOO_MANY_REQUESTS",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::NotAuthenticated => StatusCode::UNAUTHORIZED,
            Self::NotAuthorized => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::UnprocessableEntity => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for humans.
    pub message: String,
    /// A stable code for programs, one of ChatBotKit's.
    #[schema(example = "NOT_FOUND")]
    pub code: &'static str,
}

#[derive(thiserror::Error)]
pub enum ApiError {
    /// The client's fault, or a state it must know about; the message is shown as is.
    #[error("{message}")]
    Client {
        code: ErrorCode,
        message: String,
        /// Seconds, sent as `Retry-After` (429 and 503).
        retry_after: Option<u64>,
        /// Some client errors have their own status, such as 413 for a body over the limit,
        /// while keeping one of ChatBotKit's codes.
        status: Option<StatusCode>,
    },
    /// A dependency we need is down (the database, usually). Answers 503 so callers retry.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure. Logged with its cause chain, answered with a generic 500.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl std::fmt::Debug for ApiError {
    // The whole cause chain, so a logged 500 says where it came from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Client { code, message, .. } => write!(f, "{}: {message}", code.as_str()),
            Self::Unavailable(e) => write!(f, "unavailable: {e:?}"),
            Self::Internal(e) => write!(f, "internal: {e:?}"),
        }
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Client {
            code,
            message: message.into(),
            retry_after: None,
            status: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_authenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotAuthenticated, message)
    }

    pub fn not_authorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotAuthorized, message)
    }

    /// `what` names the kind of resource, e.g. "token"; the id is not echoed back.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnprocessableEntity, message)
    }

    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::Client {
            code: ErrorCode::TooManyRequests,
            message: message.into(),
            retry_after: Some(retry_after_secs.max(1)),
            status: None,
        }
    }

    /// 413 with ChatBotKit's `BAD_REQUEST` code: the body is too large to read.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::Client {
            code: ErrorCode::BadRequest,
            message: format!("request body is larger than the limit of {limit} bytes"),
            retry_after: None,
            status: Some(StatusCode::PAYLOAD_TOO_LARGE),
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Client { code, .. } => *code,
            Self::Unavailable(_) => ErrorCode::ServiceUnavailable,
            Self::Internal(_) => ErrorCode::InternalServerError,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Client {
                status: Some(s), ..
            } => *s,
            other => other.code().status(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            Self::Client { message, .. } => message.clone(),
            Self::Unavailable(e) => {
                tracing::error!(error = ?e, "dependency unavailable");
                "the service is temporarily unavailable, retry later".to_owned()
            }
            Self::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "internal server error".to_owned()
            }
        };
        let mut res = HttpResponse::build(self.status_code());
        match self {
            Self::Client {
                retry_after: Some(secs),
                ..
            } => {
                res.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            Self::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, "5"));
            }
            _ => {}
        }
        res.json(ErrorBody {
            message,
            code: self.code().as_str(),
        })
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        if crate::store::is_unavailable(&e) {
            Self::Unavailable(e.into())
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

/// Result of a handler or of anything a handler calls.
pub type ApiResult<T> = Result<T, ApiError>;
