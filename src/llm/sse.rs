//! Server-sent events (the WHATWG `text/event-stream` format), which both vendors stream in.
//!
//! The parser is push-based: the network hands over chunks that may split a line, a `\r\n` pair
//! or a UTF-8 character anywhere, and the parser keeps the unfinished line until its end arrives.
//! Only `event:` and `data:` matter to us; `id:` and `retry:` are read and dropped, because we
//! never reconnect a stream (a failed call is retried whole).

use super::provider::{AttemptError, LlmError, transport_error};

/// Longest line we buffer. A real event is a few kilobytes; this only stops a broken or hostile
/// endpoint from growing the buffer until the call times out.
const MAX_LINE: usize = 8 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` name; `None` is the default type, `message` (OpenAI never names its events).
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event-stream line is longer than {MAX_LINE} bytes")]
pub(crate) struct LineTooLong;

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of the line not yet ended. Kept as bytes so that a UTF-8 character split between
    /// chunks is decoded only once it is whole.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one is the rest of that
    /// line ending, not an empty line (which would dispatch an event early).
    skip_lf: bool,
    seen_first_line: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk and returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if let Some((b'\n', after)) = rest.split_first() {
                rest = after;
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, tail) = rest.split_at(pos);
            self.line.extend_from_slice(head);
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut out);
            let Some((&terminator, after)) = tail.split_first() else {
                break;
            };
            rest = after;
            if terminator == b'\r' {
                match rest.split_first() {
                    Some((b'\n', after)) => rest = after,
                    None => self.skip_lf = true,
                    Some(_) => {}
                }
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(out)
    }

    /// The stream ended. The spec drops an event that no blank line closed, but Anthropic's own
    /// recordings end right after the last `data:` line; both protocols have an explicit end
    /// marker anyway, so keeping the event loses nothing.
    pub(crate) fn finish(&mut self) -> Option<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut out);
        }
        self.process_line(b"", &mut out);
        out.pop()
    }

    fn process_line(&mut self, raw: &[u8], out: &mut Vec<SseEvent>) {
        let decoded = String::from_utf8_lossy(raw);
        let mut line: &str = &decoded;
        if !self.seen_first_line {
            self.seen_first_line = true;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                data.pop(); // the `\n` after the last data line
                out.push(SseEvent {
                    event: self.event.take(),
                    data,
                });
            }
            self.event = None;
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return; // a comment, often a keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
    }
}

/// Whether the handler wants more events.
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// Reads a streaming response to its end (or until `on_event` says stop), handing each event to
/// `on_event`. Read errors are transport errors, so the call is retried like a failed request.
pub(crate) async fn for_each_event(
    mut response: reqwest::Response,
    mut on_event: impl FnMut(SseEvent) -> Result<Flow, AttemptError>,
) -> Result<(), AttemptError> {
    let mut parser = SseParser::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        let events = parser
            .push(&chunk)
            .map_err(|e| AttemptError::fatal(LlmError::Protocol(e.to_string())))?;
        for event in events {
            if let Flow::Stop = on_event(event)? {
                return Ok(());
            }
        }
    }
    if let Some(event) = parser.finish() {
        match on_event(event) {
            // An unterminated event that does not parse is a connection cut mid-event, not a
            // vendor speaking nonsense: worth another try.
            Err(AttemptError {
                error: LlmError::Protocol(_),
                ..
            }) => {
                return Err(AttemptError::retryable(LlmError::Transport(
                    "the stream ended in the middle of an event".to_owned(),
                )));
            }
            other => {
                other?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn feed_whole(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut events = p.push(input).unwrap();
        events.extend(p.finish());
        events
    }

    fn feed_bytewise(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut events = Vec::new();
        for b in input {
            events.extend(p.push(std::slice::from_ref(b)).unwrap());
        }
        events.extend(p.finish());
        events
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn sse_fixtures() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/llm");
        let mut files = Vec::new();
        for vendor in ["openai", "anthropic"] {
            for entry in std::fs::read_dir(root.join(vendor)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "sse") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    #[test]
    fn every_fixture_parses_the_same_whole_bytewise_and_with_crlf() {
        let files = sse_fixtures();
        assert!(files.len() >= 15, "fixtures missing: {files:?}");
        for path in files {
            let raw = std::fs::read(&path).unwrap();
            let whole = feed_whole(&raw);
            assert!(!whole.is_empty(), "{}", path.display());
            // Every event in the recordings is a JSON object or OpenAI's `[DONE]` sentinel.
            for e in &whole {
                assert!(
                    e.data == "[DONE]"
                        || serde_json::from_str::<serde_json::Value>(&e.data).is_ok(),
                    "{}: {:?}",
                    path.display(),
                    e.data
                );
            }
            assert_eq!(feed_bytewise(&raw), whole, "{}", path.display());
            let crlf = String::from_utf8(raw.clone())
                .unwrap()
                .replace('\n', "\r\n");
            assert_eq!(
                feed_bytewise(crlf.as_bytes()),
                whole,
                "{} (CRLF)",
                path.display()
            );
            let cr = String::from_utf8(raw).unwrap().replace('\n', "\r");
            assert_eq!(feed_whole(cr.as_bytes()), whole, "{} (CR)", path.display());
        }
    }

    #[test]
    fn anthropic_events_keep_their_names() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/llm/anthropic/stream_text.sse");
        let events = feed_bytewise(&std::fs::read(path).unwrap());
        let names: Vec<_> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }

    #[test]
    fn multi_line_data_comments_and_unknown_fields() {
        let input =
            b": keep-alive\r\nid: 7\r\nretry: 10\r\nevent: x\r\ndata: a\r\ndata:b\r\ndata\r\n\r\n\
                      data: {\"k\":1}\n\nevent: only-a-name\n\n:comment\n\ndata: last";
        let expected = vec![
            ev(Some("x"), "a\nb\n"),
            ev(None, "{\"k\":1}"),
            ev(None, "last"),
        ];
        assert_eq!(feed_whole(input), expected);
        assert_eq!(feed_bytewise(input), expected);
    }

    #[test]
    fn a_split_utf8_character_and_a_bom_survive() {
        let input = "\u{feff}data: héllo 👋\n\n".as_bytes();
        assert_eq!(feed_bytewise(input), vec![ev(None, "héllo 👋")]);
    }

    #[test]
    fn a_cr_at_the_end_of_a_chunk_does_not_make_an_empty_line() {
        let mut p = SseParser::new();
        assert!(p.push(b"data: a\r").unwrap().is_empty());
        assert!(p.push(b"\ndata: b\r").unwrap().is_empty());
        assert_eq!(p.push(b"\n\r\n").unwrap(), vec![ev(None, "a\nb")]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = SseParser::new();
        let block = vec![b'x'; 1024 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..9 {
            result = p.push(&block);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(LineTooLong));
    }
}
