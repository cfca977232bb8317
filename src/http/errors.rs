//! Errors that do not come from our handlers (unknown routes, wrong methods, actix's own
//! extractors) still answer in the `{"message","code"}` shape.

use actix_web::ResponseError;
use actix_web::dev::ServiceResponse;
use actix_web::http::{StatusCode, header};
use actix_web::middleware::ErrorHandlerResponse;

use crate::error::{ApiError, ErrorCode};

pub(super) fn route_not_found_response() -> actix_web::HttpResponse {
    ApiError::new(ErrorCode::NotFound, "no such route").error_response()
}

/// Rewrites error responses that are not JSON yet into the error shape, keeping the status.
pub(super) fn normalize<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // The dashboard's "not built" page is HTML on purpose.
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => (ErrorCode::BadRequest, "bad request"),
        StatusCode::UNAUTHORIZED => (ErrorCode::NotAuthenticated, "not authenticated"),
        StatusCode::FORBIDDEN => (ErrorCode::NotAuthorized, "not authorized"),
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            (ErrorCode::BadRequest, "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::BadRequest, "request body too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (ErrorCode::BadRequest, "unsupported content type"),
        StatusCode::CONFLICT => (ErrorCode::Conflict, "conflict"),
        StatusCode::UNPROCESSABLE_ENTITY => {
            (ErrorCode::UnprocessableEntity, "unprocessable entity")
        }
        StatusCode::TOO_MANY_REQUESTS => (ErrorCode::TooManyRequests, "too many requests"),
        StatusCode::SERVICE_UNAVAILABLE => (ErrorCode::ServiceUnavailable, "service unavailable"),
        s if s.is_client_error() => (ErrorCode::BadRequest, "bad request"),
        _ => (ErrorCode::InternalServerError, "internal server error"),
    };
    let mut body = ApiError::new(code, message).error_response();
    *body.status_mut() = status;
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            body.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let (req, _) = res.into_parts();
    let res = ServiceResponse::new(req, body).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}
