//! Files, in ChatBotKit's shapes: media that users sent, stored by [`crate::files`], and the
//! attachments of a conversation.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use sea_orm::{ColumnTrait, Condition};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::fields;
use super::list::{ListQuery, ListResponse};
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::entities::{conversation, file};

pub(super) fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(fetch)
        .service(download)
        .service(attachments);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct File {
    id: String,
    name: Option<String>,
    description: Option<String>,
    /// The MIME type.
    #[serde(rename = "type")]
    kind: String,
    /// In bytes.
    size: i64,
    /// Always `private`: files are read with the tenant's credentials.
    visibility: String,
    /// Parley: the content's SHA-256, lower-case hex.
    sha256: String,
    /// Parley: the conversation and message the file came with, if any.
    conversation_id: Option<String>,
    message_id: Option<String>,
    /// Parley: for voice notes, `transcript`; for documents, `textChars` (how much text was read).
    #[schema(value_type = Object)]
    meta: Value,
    created_at: i64,
    updated_at: i64,
}

impl From<file::Model> for File {
    fn from(m: file::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            description: m.description,
            kind: m.mime_type,
            size: m.size,
            visibility: "private".to_owned(),
            sha256: m.sha256,
            conversation_id: m.conversation_id,
            message_id: m.message_id,
            meta: m.meta,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A file's bytes (for the OpenAPI document: served raw, not as JSON).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileContent(#[allow(dead_code)] Vec<u8>);

/// Lists files. Filter with `meta.KEY=VALUE`.
#[utoipa::path(
    operation_id = "listFiles",
    tag = "File",
    params(ListQuery),
    responses((status = 200, body = ListResponse<File>))
)]
#[get("/file/list")]
async fn list(
    auth: Auth,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let filters = fields::meta_filters(req.query_string())?;
    let scope = auth.scope();
    let cond = fields::meta_condition(scope.db().get_database_backend(), "meta", &filters);
    let rows = scope.list::<file::Entity>(&query.page()?, cond).await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter().map(File::from).collect::<Vec<_>>(),
        cursor,
    )))
}

/// Fetches a file's description.
#[utoipa::path(
    operation_id = "fetchFile",
    tag = "File",
    params(("fileId" = String, Path)),
    responses((status = 200, body = File), (status = 404, body = ErrorBody))
)]
#[get("/file/{fileId}/fetch")]
async fn fetch(auth: Auth, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let row = auth.scope().find::<file::Entity>(&path).await?;
    Ok(HttpResponse::Ok().json(File::from(row)))
}

/// Downloads a file's content, with its MIME type. 204 when the content is not stored here.
#[utoipa::path(
    operation_id = "downloadFile",
    tag = "File",
    params(("fileId" = String, Path)),
    responses(
        (status = 200, description = "The content, as the file's MIME type", content_type = "*/*", body = FileContent),
        (status = 204, description = "The file exists but its content is not stored"),
        (status = 404, body = ErrorBody)
    )
)]
#[get("/file/{fileId}/download")]
async fn download(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let row = auth.scope().find::<file::Entity>(&path).await?;
    let Some(bytes) = crate::files::content(&state, &row).await? else {
        return Ok(HttpResponse::NoContent().finish());
    };
    // The type came from Meta; anything that is not a plain MIME type is served as bytes.
    let mime = row
        .mime_type
        .parse::<mime_type::Checked>()
        .map_or_else(|_| "application/octet-stream".to_owned(), |m| m.0);
    let name = row.name.as_deref().unwrap_or(&row.id);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, mime))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(disposition(name))
        .body(bytes))
}

/// `attachment; filename=...`: the name as ASCII for every client, and in UTF-8 (RFC 6266's
/// `filename*`) when it has other characters, as names from phones often do.
fn disposition(name: &str) -> header::ContentDisposition {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut parameters = vec![header::DispositionParam::Filename(ascii)];
    if !name.is_ascii() {
        parameters.push(header::DispositionParam::FilenameExt(
            header::ExtendedValue {
                charset: header::Charset::Ext("UTF-8".to_owned()),
                language_tag: None,
                value: name.as_bytes().to_vec(),
            },
        ));
    }
    header::ContentDisposition {
        disposition: header::DispositionType::Attachment,
        parameters,
    }
}

/// Lists the files users sent in a conversation.
#[utoipa::path(
    operation_id = "listConversationAttachments",
    tag = "Conversation",
    params(("conversationId" = String, Path), ListQuery),
    responses((status = 200, body = ListResponse<File>), (status = 404, body = ErrorBody))
)]
#[get("/conversation/{conversationId}/attachment/list")]
async fn attachments(
    auth: Auth,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let scope = auth.scope();
    let conv = scope.find::<conversation::Entity>(&path).await?;
    let cond = Condition::all().add(file::Column::ConversationId.eq(conv.id));
    let rows = scope.list::<file::Entity>(&query.page()?, cond).await?;
    let cursor = rows.last().map(|r| r.id.clone());
    Ok(HttpResponse::Ok().json(ListResponse::new(
        rows.into_iter().map(File::from).collect::<Vec<_>>(),
        cursor,
    )))
}

mod mime_type {
    /// A MIME type safe to send as `Content-Type`: `type/subtype` in token characters, with
    /// any parameters dropped.
    pub struct Checked(pub String);

    impl std::str::FromStr for Checked {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s.split(';').next().unwrap_or_default().trim();
            let token = |p: &str| {
                !p.is_empty()
                    && p.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
            };
            match essence.split_once('/') {
                Some((a, b)) if token(a) && token(b) => Ok(Self(essence.to_ascii_lowercase())),
                _ => Err(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::TryIntoHeaderValue;

    use super::*;

    #[test]
    fn file_names_become_safe_headers() {
        let v = disposition("report.pdf").try_into_value().unwrap();
        assert_eq!(v.to_str().unwrap(), "attachment; filename=\"report.pdf\"");
        let v = disposition("Ünïcode résumé.pdf").try_into_value().unwrap();
        let s = v.to_str().unwrap();
        assert!(s.contains("filename=\"_n_code r_sum_.pdf\""), "{s}");
        assert!(
            s.contains("filename*=UTF-8''%C3%9Cn%C3%AFcode%20r%C3%A9sum%C3%A9.pdf"),
            "{s}"
        );
    }

    #[test]
    fn only_plain_mime_types_are_served() {
        let ok = |s: &str| s.parse::<mime_type::Checked>().ok().map(|m| m.0);
        assert_eq!(ok("image/JPEG").as_deref(), Some("image/jpeg"));
        assert_eq!(ok("audio/ogg; codecs=opus").as_deref(), Some("audio/ogg"));
        assert_eq!(ok("text/html\r\nx: y"), None);
        assert_eq!(ok("nonsense"), None);
    }
}
