//! Inbound media, apart from the engine: which kinds and types are accepted and how large,
//! the text of documents (PDF and plain text) and the transcription of voice notes through an
//! OpenAI-compatible `/audio/transcriptions` endpoint.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::MediaLimits;

/// The kinds of WhatsApp message that carry a media item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Audio,
    Video,
    Document,
    Sticker,
}

impl MediaKind {
    /// The kind for a message `type`, if it carries media.
    pub fn from_type(kind: &str) -> Option<Self> {
        Some(match kind {
            "image" => Self::Image,
            "audio" => Self::Audio,
            "video" => Self::Video,
            "document" => Self::Document,
            "sticker" => Self::Sticker,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }

    /// The largest item of this kind that is downloaded.
    pub fn max_bytes(self, limits: &MediaLimits) -> u64 {
        match self {
            Self::Image => limits.image_max_bytes,
            Self::Audio => limits.audio_max_bytes,
            Self::Video => limits.video_max_bytes,
            Self::Document => limits.document_max_bytes,
            Self::Sticker => limits.sticker_max_bytes,
        }
    }
}

/// Whether `mime` (parameters ignored, case-insensitive) matches one of `types`, where a
/// trailing `*` matches any rest.
pub fn type_allowed(types: &[String], mime: &str) -> bool {
    let essence = mime
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    types.iter().any(|t| match t.strip_suffix('*') {
        Some(prefix) => essence.starts_with(prefix),
        None => *t == essence,
    })
}

/// Largest decompressed page content read from a PDF: enough for text-heavy pages, small
/// enough that a compression bomb cannot exhaust memory.
const PDF_PAGE_CONTENT_LIMIT: usize = 8 * 1024 * 1024;

/// Text of a document the model can read, cut to `max_chars`: PDF (text layer only, no OCR)
/// and `text/*`. `None` when the type is not one of those or nothing could be read. Blocking
/// (PDF parsing is CPU work): call it from `spawn_blocking`.
pub fn document_text(mime: &str, bytes: &[u8], max_chars: usize) -> Option<DocumentText> {
    let essence = mime
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = if essence == "application/pdf" {
        pdf_text(bytes, max_chars)?
    } else if essence.starts_with("text/") {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        return None;
    };
    let text = tidy(&text);
    if text.is_empty() {
        return None;
    }
    let total = text.chars().count();
    let truncated = total > max_chars;
    let text = if truncated {
        text.chars().take(max_chars).collect()
    } else {
        text
    };
    Some(DocumentText { text, truncated })
}

/// A document's text, maybe cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentText {
    pub text: String,
    /// The document had more text than was kept.
    pub truncated: bool,
}

fn pdf_text(bytes: &[u8], max_chars: usize) -> Option<String> {
    let doc = lopdf::Document::load_mem(bytes).ok()?;
    let mut out = String::new();
    // Page by page, stopping once there is enough: a 500-page manual costs what we keep.
    for page in doc.get_pages().keys() {
        if let Ok(t) = doc.extract_text_with_limit(&[*page], PDF_PAGE_CONTENT_LIMIT) {
            out.push_str(&t);
            out.push('\n');
        }
        if out.chars().count() > max_chars {
            break;
        }
    }
    Some(out)
}

/// Control characters out (but line breaks), runs of blank lines and trailing spaces folded.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line: String = line
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_owned()
}

/// Why a transcription failed. The messages never include the audio or the key.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("the transcription endpoint did not answer in time")]
    Timeout,
    #[error("could not reach the transcription endpoint")]
    Transport,
    #[error("the transcription endpoint answered HTTP {0}")]
    Status(u16),
    #[error("the transcription endpoint answered something unreadable")]
    Protocol,
}

/// An OpenAI-compatible speech-to-text endpoint.
#[derive(Debug, Clone)]
pub struct Transcriber {
    /// With the version path, as providers store it (`https://api.openai.com/v1`).
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub model: String,
    pub timeout: Duration,
}

#[derive(Deserialize)]
struct Transcription {
    text: String,
}

impl Transcriber {
    /// `POST {base_url}/audio/transcriptions` (multipart: `file`, `model`), answering the text.
    pub async fn transcribe(
        &self,
        http: &reqwest::Client,
        audio: Vec<u8>,
        mime: &str,
    ) -> Result<String, TranscribeError> {
        let essence = mime.split(';').next().unwrap_or_default().trim();
        // Vendors guess the format from the file name; WhatsApp voice notes are Ogg/Opus.
        let ext = match essence {
            "audio/ogg" | "audio/opus" => "ogg",
            "audio/mpeg" => "mp3",
            "audio/mp4" | "audio/aac" | "audio/m4a" => "m4a",
            "audio/amr" => "amr",
            "audio/wav" | "audio/x-wav" => "wav",
            "audio/webm" => "webm",
            _ => "bin",
        };
        let plain = essence.split_once('/').is_some_and(|(a, b)| {
            let token = |p: &str| {
                !p.is_empty()
                    && p.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-+.".contains(&c))
            };
            token(a) && token(b)
        });
        let part = reqwest::multipart::Part::bytes(audio)
            .file_name(format!("audio.{ext}"))
            .mime_str(if plain {
                essence
            } else {
                "application/octet-stream"
            })
            .map_err(|_| TranscribeError::Protocol)?;
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("model", self.model.clone())
            .text("response_format", "json");
        let mut req = http
            .post(format!(
                "{}/audio/transcriptions",
                self.base_url.trim_end_matches('/')
            ))
            .timeout(self.timeout)
            .multipart(form);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose_secret());
        }
        let res = req.send().await.map_err(|e| {
            if e.is_timeout() {
                TranscribeError::Timeout
            } else {
                TranscribeError::Transport
            }
        })?;
        let status = res.status();
        if !status.is_success() {
            return Err(TranscribeError::Status(status.as_u16()));
        }
        let body: Transcription = res.json().await.map_err(|e| {
            if e.is_timeout() {
                TranscribeError::Timeout
            } else {
                TranscribeError::Protocol
            }
        })?;
        Ok(body.text.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(list: &str) -> Vec<String> {
        list.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn types_match_exactly_or_by_prefix() {
        let t = types("image/jpeg,audio/*,application/vnd.openxmlformats-officedocument.*");
        for (mime, ok) in [
            ("image/jpeg", true),
            ("IMAGE/JPEG", true),
            ("image/png", false),
            ("audio/ogg; codecs=opus", true),
            ("audiox/ogg", false),
            (
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                true,
            ),
            ("application/pdf", false),
            ("", false),
        ] {
            assert_eq!(type_allowed(&t, mime), ok, "{mime}");
        }
        assert!(type_allowed(&types("*"), "application/x-anything"));
        assert!(!type_allowed(&[], "image/jpeg"));
    }

    #[test]
    fn plain_text_is_tidied_and_bounded() {
        let d = document_text("text/plain; charset=utf-8", b"a\x07b\n\n\n\nc  \n", 100).unwrap();
        assert_eq!(d.text, "ab\n\nc");
        assert!(!d.truncated);
        let d = document_text("text/csv", "é".repeat(50).as_bytes(), 10).unwrap();
        assert_eq!(d.text.chars().count(), 10);
        assert!(d.truncated);
        assert!(document_text("image/png", b"x", 10).is_none());
        assert!(document_text("text/plain", b"  \n ", 10).is_none());
    }

    /// A one-page PDF with `text` on it, as a PDF writer makes it.
    pub(crate) fn pdf_with(text: &str) -> Vec<u8> {
        use lopdf::content::{Content, Operation};
        use lopdf::{Document, Object, Stream, dictionary};
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Courier",
        });
        let resources_id = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font_id}});
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Td", vec![100.into(), 600.into()]),
                Operation::new("Tj", vec![Object::string_literal(text)]),
                Operation::new("ET", vec![]),
            ],
        };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        let pages = dictionary! {
            "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1,
            "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        };
        doc.objects.insert(pages_id, Object::Dictionary(pages));
        let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
        doc.trailer.set("Root", catalog_id);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn pdf_text_is_extracted_and_garbage_is_not_text() {
        let pdf = pdf_with("Invoice 42: total 99 EUR");
        let d = document_text("application/pdf", &pdf, 1000).unwrap();
        assert!(d.text.contains("Invoice 42: total 99 EUR"), "{d:?}");
        assert!(document_text("application/pdf", b"%PDF-1.4 not really", 1000).is_none());
    }
}
