//! Request extractors whose failures speak the API's error shape.
//!
//! [`Json`] reads the body up to a limit and names the offending field when deserialization
//! fails (`email: invalid type: integer, expected a string`), which actix's own extractor
//! does not. Query and path errors are mapped by [`query_config`] and [`path_config`].

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest JSON body the management API reads.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// A JSON request body of type `T`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            match content_type.as_deref() {
                Some("application/json") => {}
                Some(ct) if ct.ends_with("+json") => {}
                _ => {
                    return Err(ApiError::bad_request(
                        "expected a JSON body with Content-Type: application/json",
                    ));
                }
            }
            let body = read_body(&req, payload, MAX_JSON_BODY).await?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Err(ApiError::bad_request(
                    "the request body is empty; send a JSON object",
                ));
            }
            let de = &mut serde_json::Deserializer::from_slice(&body);
            serde_path_to_error::deserialize(de)
                .map(Json)
                .map_err(|e| ApiError::bad_request(describe(&e)))
        })
    }
}

fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = e.inner();
    let path = e.path().to_string();
    // serde_path_to_error writes "." for the root and "?" where it lost track.
    let field = (!path.is_empty() && path != "." && !path.starts_with('?')).then_some(path);
    match (inner.is_syntax() || inner.is_eof(), field) {
        (true, None) => format!("malformed JSON: {inner}"),
        (true, Some(f)) => format!("malformed JSON at {f}: {inner}"),
        (false, None) => format!("invalid request body: {inner}"),
        (false, Some(f)) => format!("invalid request body: {f}: {inner}"),
    }
}

/// Reads a request body of at most `limit` bytes; 413 beyond that.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // Refuse early when the client tells us the size, so we do not read what we will throw
    // away.
    if declared_len.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = BytesMut::with_capacity(declared_len.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Query-string errors as 400 in the error shape.
pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::bad_request(format!("invalid query string: {err}")).into()
    })
}

/// Path errors as 400 in the error shape.
pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default()
        .error_handler(|err, _req| ApiError::bad_request(format!("invalid path: {err}")).into())
}
