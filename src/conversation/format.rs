//! Turns an LLM's Markdown answer into WhatsApp text, and cuts long replies into messages.
//!
//! Models answer in CommonMark/GFM, but WhatsApp only understands a handful of markers:
//! `*bold*`, `_italic_`, `~strike~`, `` `code` ``, ```` ```monospace``` ````, `> quote` and
//! plain-text lists. [`to_whatsapp`] maps the first onto the second; [`split`] then cuts the
//! result into messages no longer than WhatsApp's limit ([`WHATSAPP_TEXT_LIMIT`]).
//!
//! I wrote a small purpose-built converter instead of using a Markdown parser: we only need a
//! text-to-text rewrite, never a tree, and the interesting rules (word-internal `_`, URLs,
//! unbalanced markers staying literal) are about what *not* to touch. The emphasis pass follows
//! CommonMark's delimiter algorithm closely, because that is what models are trained on.
//!
//! Both functions are pure and total: any input gives an answer without panicking, in time
//! roughly linear in its size (every look-ahead is precomputed or bounded), because the input is
//! whatever a model produced.

use std::collections::HashMap;

/// Longest text WhatsApp accepts in one message, in characters.
pub const WHATSAPP_TEXT_LIMIT: usize = 4096;

/// What a Markdown horizontal rule becomes: WhatsApp has no rule, and a line of em dashes reads
/// as a separator in every font.
const RULE: &str = "———";

/// How deep `[link [text](…)](…)` nesting is converted before the rest is copied as is; bounds
/// both recursion and the rescans of nested link text.
const MAX_LINK_NESTING: u8 = 4;

/// Below this limit a code block cannot be closed and reopened around at least two characters of
/// content (six fence characters plus content), so [`split`] treats backticks as plain text.
const MIN_FENCED_LIMIT: usize = 8;

const FENCE: &str = "```";

// ---------------------------------------------------------------------------------------------
// Markdown → WhatsApp
// ---------------------------------------------------------------------------------------------

/// Converts an LLM's Markdown answer to WhatsApp formatting.
///
/// Bold, italic, strikethrough and code map to WhatsApp's markers; headings become bold lines;
/// lists become `•`/`1.`/`☐`/`☑` lines indented two spaces per level; links become
/// `text (url)`; tables become an aligned monospace block. Everything else, including
/// unbalanced markers, `snake_case` words and URLs, is left as written.
pub fn to_whatsapp(markdown: &str) -> String {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    convert_blocks(&lines, false, &mut out);
    collapse_blank_lines(out).join("\n")
}

/// Converts block structure line by line, pushing output lines (a code block or a table is one
/// multi-line element). `in_quote` stops quotes from recursing more than once.
fn convert_blocks(lines: &[&str], in_quote: bool, out: &mut Vec<String>) {
    // Indent of each open list level, so nesting survives any indent width (2, 3 or 4 spaces).
    let mut list_indents: Vec<usize> = Vec::new();
    let mut i = 0;
    while let Some(&line) = lines.get(i) {
        let body = line.trim_start();
        let indent = indent_width(line);
        if body.trim_end().is_empty() {
            out.push(String::new());
            i += 1;
            continue;
        }
        // Fences are recognised at any indent because models nest them under list items.
        if let Some(fence) = Fence::open(body, indent) {
            i = fence.emit(lines, i + 1, out);
            continue;
        }
        if indent < 4 {
            if is_thematic_break(body) {
                list_indents.clear();
                out.push(RULE.to_owned());
                i += 1;
                continue;
            }
            if let Some(text) = heading_text(body) {
                list_indents.clear();
                let text = inline(text, Style::HEADING);
                if !text.is_empty() {
                    out.push(format!("*{text}*"));
                }
                i += 1;
                continue;
            }
            if !in_quote && body.starts_with('>') {
                list_indents.clear();
                i = emit_quote(lines, i, out);
                continue;
            }
        }
        if let Some(end) = table_end(lines, i) {
            list_indents.clear();
            out.push(render_table(lines.get(i..end).unwrap_or_default()));
            i = end;
            continue;
        }
        if let Some(item) = ListItem::parse(body) {
            while list_indents.last().is_some_and(|&top| top >= indent) {
                list_indents.pop();
            }
            let level = list_indents.len();
            list_indents.push(indent);
            out.push(item.render(level));
        } else if indent > 0 && !list_indents.is_empty() {
            // A continuation line of a list item: keep it under its item's text.
            let level = list_indents.iter().filter(|&&w| w < indent).count();
            out.push(format!(
                "{}{}",
                "  ".repeat(level),
                inline(body, Style::WHATSAPP)
            ));
        } else {
            list_indents.clear();
            out.push(inline(body.trim_end(), Style::WHATSAPP));
        }
        i += 1;
    }
}

/// Drops leading and trailing blank lines and squeezes runs of blank lines into one.
fn collapse_blank_lines(lines: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for line in lines {
        let blank = line.trim().is_empty();
        if blank && out.last().is_none_or(|last| last.is_empty()) {
            continue;
        }
        out.push(if blank { String::new() } else { line });
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
}

/// Leading whitespace width in columns, tabs counting to the next multiple of four as in
/// CommonMark.
fn indent_width(line: &str) -> usize {
    let mut width = 0;
    for c in line.chars() {
        match c {
            ' ' => width += 1,
            '\t' => width += 4 - width % 4,
            _ => break,
        }
    }
    width
}

/// An open fenced code block: ```` ``` ```` or `~~~`, at least three long.
struct Fence {
    ch: char,
    len: usize,
    indent: usize,
}

impl Fence {
    fn open(body: &str, indent: usize) -> Option<Fence> {
        let ch = body.chars().next().filter(|&c| c == '`' || c == '~')?;
        let len = body.chars().take_while(|&c| c == ch).count();
        // A backtick in the info string means this is inline code (```` ```x``` ````), not a fence.
        let info = body.get(len..).unwrap_or_default();
        (len >= 3 && !(ch == '`' && info.contains('`'))).then_some(Fence { ch, len, indent })
    }

    fn closes(&self, line: &str) -> bool {
        let body = line.trim_start();
        let run = body.chars().take_while(|&c| c == self.ch).count();
        run >= self.len && body.get(run..).is_some_and(|rest| rest.trim().is_empty())
    }

    /// Emits the block whose content starts at `lines[first]` as WhatsApp monospace (the
    /// language tag is dropped) and returns the index of the line after it. An unclosed fence
    /// runs to the end, as in CommonMark.
    fn emit(&self, lines: &[&str], first: usize, out: &mut Vec<String>) -> usize {
        let mut content: Vec<&str> = Vec::new();
        let mut i = first;
        while let Some(&line) = lines.get(i) {
            i += 1;
            if self.closes(line) {
                break;
            }
            content.push(strip_spaces(line, self.indent));
        }
        // An empty block would render as a stray "``````".
        if content.iter().any(|l| !l.trim().is_empty()) {
            out.push(format!("{FENCE}{}{FENCE}", content.join("\n")));
        }
        i
    }
}

/// Removes up to `n` leading spaces: the fence's own indent, so nested code keeps its shape.
fn strip_spaces(line: &str, n: usize) -> &str {
    let spaces = line.bytes().take(n).take_while(|&b| b == b' ').count();
    line.get(spaces..).unwrap_or(line)
}

/// `---`, `***`, `___` (three or more, spaces allowed between).
fn is_thematic_break(body: &str) -> bool {
    let mut marks = body.chars().filter(|c| !c.is_whitespace());
    let Some(first) = marks.next().filter(|c| matches!(c, '-' | '*' | '_')) else {
        return false;
    };
    let mut count = 1;
    for c in marks {
        if c != first {
            return false;
        }
        count += 1;
    }
    count >= 3
}

/// The text of an ATX heading (`# Title ##`), without the closing hashes. `#hashtag` (no space)
/// is not a heading.
fn heading_text(body: &str) -> Option<&str> {
    let level = body.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = body.get(level..)?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let text = rest.trim();
    let unclosed = text.trim_end_matches('#');
    Some(if unclosed.is_empty() {
        ""
    } else if unclosed.ends_with([' ', '\t']) {
        unclosed.trim_end()
    } else {
        text
    })
}

/// Emits the quote starting at `lines[start]` and returns the index after it. WhatsApp shows a
/// single quote level, so nested `> >` markers are flattened; the inside is converted like any
/// other Markdown.
fn emit_quote(lines: &[&str], start: usize, out: &mut Vec<String>) -> usize {
    let mut inner: Vec<&str> = Vec::new();
    let mut i = start;
    while let Some(&line) = lines.get(i) {
        if indent_width(line) >= 4 || !line.trim_start().starts_with('>') {
            break;
        }
        inner.push(strip_quote_markers(line));
        i += 1;
    }
    let mut converted = Vec::new();
    convert_blocks(&inner, true, &mut converted);
    for element in collapse_blank_lines(converted) {
        for line in element.split('\n') {
            out.push(if line.is_empty() {
                ">".to_owned()
            } else {
                format!("> {line}")
            });
        }
    }
    i
}

fn strip_quote_markers(line: &str) -> &str {
    let mut rest = line.trim_start();
    while let Some(after) = rest.strip_prefix('>') {
        rest = after.strip_prefix(' ').unwrap_or(after);
        if !rest.trim_start().starts_with('>') {
            break;
        }
        rest = rest.trim_start();
    }
    rest
}

// --- lists -------------------------------------------------------------------------------------

enum Bullet<'a> {
    Dot,
    Number(&'a str),
}

struct ListItem<'a> {
    bullet: Bullet<'a>,
    task: Option<bool>,
    text: &'a str,
}

impl<'a> ListItem<'a> {
    /// `- x`, `* x`, `+ x`, `12. x`, `3) x`, each optionally a task (`[ ]`, `[x]`).
    fn parse(body: &'a str) -> Option<ListItem<'a>> {
        let marker_ends = |rest: &str| rest.is_empty() || rest.starts_with([' ', '\t']);
        let (bullet, rest) = if let Some(rest) = body.strip_prefix(['-', '*', '+']) {
            (Bullet::Dot, rest)
        } else {
            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
            let rest = body.get(digits..)?.strip_prefix(['.', ')'])?;
            if !(1..=9).contains(&digits) {
                return None;
            }
            (Bullet::Number(body.get(..digits)?), rest)
        };
        if !marker_ends(rest) {
            return None;
        }
        let mut text = rest.trim();
        let mut task = None;
        for (mark, done) in [("[ ]", false), ("[x]", true), ("[X]", true)] {
            if let Some(after) = text.strip_prefix(mark).filter(|a| marker_ends(a)) {
                task = Some(done);
                text = after.trim_start();
                break;
            }
        }
        Some(ListItem { bullet, task, text })
    }

    fn render(&self, level: usize) -> String {
        let mut line = "  ".repeat(level);
        match (&self.bullet, self.task) {
            // A checkbox is already a bullet; "• ☐" would be noise.
            (Bullet::Dot, Some(_)) => {}
            (Bullet::Dot, None) => line.push_str("• "),
            (Bullet::Number(n), _) => {
                line.push_str(n);
                line.push_str(". ");
            }
        }
        match self.task {
            Some(true) => line.push_str("☑ "),
            Some(false) => line.push_str("☐ "),
            None => {}
        }
        line.push_str(&inline(self.text, Style::WHATSAPP));
        line.trim_end().to_owned()
    }
}

// --- tables ------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Align {
    Left,
    Right,
    Center,
}

/// If a GitHub pipe table starts at `lines[start]`, the index of the line after it.
fn table_end(lines: &[&str], start: usize) -> Option<usize> {
    let header = lines.get(start)?;
    if !header.contains('|') {
        return None;
    }
    let aligns = delimiter_row(lines.get(start + 1)?)?;
    if split_cells(header).len() != aligns.len() {
        return None;
    }
    let mut end = start + 2;
    while lines
        .get(end)
        .is_some_and(|l| !l.trim().is_empty() && l.contains('|'))
    {
        end += 1;
    }
    Some(end)
}

/// Column alignments from a `|:---|---:|:-:|` row, or `None` when the line is not one.
fn delimiter_row(line: &str) -> Option<Vec<Align>> {
    split_cells(line)
        .iter()
        .map(|cell| {
            let cell = cell.trim();
            let left = cell.starts_with(':');
            let right = cell.ends_with(':') && cell.len() > 1;
            let dashes = cell.trim_start_matches(':').trim_end_matches(':');
            if dashes.is_empty() || !dashes.bytes().all(|b| b == b'-') {
                return None;
            }
            Some(match (left, right) {
                (true, true) => Align::Center,
                (false, true) => Align::Right,
                _ => Align::Left,
            })
        })
        .collect()
}

/// A row's cells: split on unescaped pipes, ignoring the optional outer ones. `\|` stays
/// escaped here and becomes `|` in the inline pass.
fn split_cells(line: &str) -> Vec<String> {
    let mut row = line.trim();
    row = row.strip_prefix('|').unwrap_or(row);
    if row.ends_with('|') && !row.ends_with("\\|") {
        row = row.get(..row.len() - 1).unwrap_or(row);
    }
    let mut cells = vec![String::new()];
    let mut escaped = false;
    for c in row.chars() {
        if c == '|' && !escaped {
            cells.push(String::new());
        } else if let Some(cell) = cells.last_mut() {
            cell.push(c);
        }
        escaped = c == '\\' && !escaped;
    }
    cells
}

/// Renders a table as a monospace block with padded columns. Cells are converted to plain text
/// because WhatsApp shows markers literally inside monospace. Rows longer than the header keep
/// their extra cells (GFM drops them, but losing an answer's data is worse than a ragged edge).
fn render_table(lines: &[&str]) -> String {
    let aligns = lines
        .get(1)
        .and_then(|l| delimiter_row(l))
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, line)| {
            split_cells(line)
                .iter()
                .map(|cell| inline(cell.trim(), Style::PLAIN))
                .collect()
        })
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(rows.len() + 1);
    for (r, row) in rows.iter().enumerate() {
        // Trailing empty cells would only leave dangling " | " separators.
        let used = row
            .iter()
            .rposition(|cell| !cell.is_empty())
            .map_or(0, |last| last + 1);
        let cells: Vec<String> = widths
            .iter()
            .take(used)
            .enumerate()
            .map(|(c, &width)| {
                let cell = row.get(c).map(String::as_str).unwrap_or_default();
                let align = aligns.get(c).copied().unwrap_or(Align::Left);
                pad(cell, width, align)
            })
            .collect();
        out.push(cells.join(" | ").trim_end().to_owned());
        if r == 0 {
            let dashes: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            out.push(dashes.join("-+-"));
        }
    }
    format!("{FENCE}{}{FENCE}", out.join("\n"))
}

/// Pads to `width` characters (not bytes, so Cyrillic and emoji line up as well as a monospace
/// font allows).
fn pad(cell: &str, width: usize, align: Align) -> String {
    let gap = width.saturating_sub(cell.chars().count());
    let (left, right) = match align {
        Align::Left => (0, gap),
        Align::Right => (gap, 0),
        Align::Center => (gap / 2, gap - gap / 2),
    };
    format!("{}{cell}{}", " ".repeat(left), " ".repeat(right))
}

// --- inline ------------------------------------------------------------------------------------

/// What the inline pass emits for emphasis.
#[derive(Clone, Copy)]
struct Style {
    /// Drop every marker (table cells, image alt text).
    plain: bool,
    /// Drop bold markers only: a heading is already bold as a whole.
    drop_bold: bool,
}

impl Style {
    const WHATSAPP: Style = Style {
        plain: false,
        drop_bold: false,
    };
    const HEADING: Style = Style {
        plain: false,
        drop_bold: true,
    };
    const PLAIN: Style = Style {
        plain: true,
        drop_bold: true,
    };
}

fn inline(text: &str, style: Style) -> String {
    let chars: Vec<char> = text.chars().collect();
    inline_chars(&chars, style, 0)
}

/// A run of `*`, `_` or `~` that may open or close emphasis (CommonMark's delimiter run).
struct Delim {
    ch: char,
    /// Length of the run as written; the rule of three looks at this.
    len: usize,
    /// Characters not yet used by a match; these stay literal.
    left: usize,
    can_open: bool,
    can_close: bool,
    /// WhatsApp markers that close spans, emitted before the leftover characters.
    closes: String,
    /// WhatsApp markers that open spans, innermost first, emitted reversed after them.
    opens: Vec<&'static str>,
}

enum Tok {
    Text(String),
    Delim(Delim),
}

/// Code spans, brackets and parentheses, matched once up front so the main pass never searches
/// ahead (searching ahead per opener is what makes naive converters quadratic).
struct Spans {
    /// Opening backtick position → (content start, content end, position after the closer).
    code: HashMap<usize, (usize, usize, usize)>,
    /// `[` → its `]`.
    brackets: HashMap<usize, usize>,
    /// `(` → its `)`.
    parens: HashMap<usize, usize>,
}

impl Spans {
    fn scan(c: &[char]) -> Spans {
        // Every backtick run by length, so an opener finds its closer by binary search.
        let mut runs: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut i = 0;
        while i < c.len() {
            let len = run_len(c, i, '`');
            if len > 0 {
                runs.entry(len).or_default().push(i);
                i += len;
            } else {
                i += 1;
            }
        }
        let mut spans = Spans {
            code: HashMap::new(),
            brackets: HashMap::new(),
            parens: HashMap::new(),
        };
        let (mut open_brackets, mut open_parens) = (Vec::new(), Vec::new());
        let mut i = 0;
        while let Some(&ch) = c.get(i) {
            match ch {
                '\\' if c.get(i + 1).is_some_and(char::is_ascii_punctuation) => i += 2,
                '`' => {
                    let len = run_len(c, i, '`');
                    let closer = runs.get(&len).and_then(|starts| {
                        let at = starts.partition_point(|&s| s <= i);
                        starts.get(at).copied()
                    });
                    match closer {
                        Some(close) => {
                            spans.code.insert(i, (i + len, close, close + len));
                            i = close + len;
                        }
                        None => i += len,
                    }
                }
                '[' | '(' => {
                    if ch == '[' {
                        &mut open_brackets
                    } else {
                        &mut open_parens
                    }
                    .push(i);
                    i += 1;
                }
                ']' => {
                    if let Some(open) = open_brackets.pop() {
                        spans.brackets.insert(open, i);
                    }
                    i += 1;
                }
                ')' => {
                    if let Some(open) = open_parens.pop() {
                        spans.parens.insert(open, i);
                    }
                    i += 1;
                }
                _ => i += 1,
            }
        }
        spans
    }
}

fn run_len(c: &[char], from: usize, ch: char) -> usize {
    c.get(from..)
        .map_or(0, |rest| rest.iter().take_while(|&&x| x == ch).count())
}

fn collect(c: &[char]) -> String {
    c.iter().collect()
}

/// Converts one line of inline Markdown.
fn inline_chars(c: &[char], style: Style, depth: u8) -> String {
    let spans = Spans::scan(c);
    let mut toks: Vec<Tok> = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        match ch {
            '\\' if c.get(i + 1).is_some_and(char::is_ascii_punctuation) => {
                // The escaped character is written bare: WhatsApp has no escapes.
                text.extend(c.get(i + 1));
                i += 2;
            }
            '`' => {
                if let Some(&(start, end, after)) = spans.code.get(&i) {
                    text.push_str(&code_span(c, i, start, end, after, style));
                    i = after;
                } else {
                    let len = run_len(c, i, '`').max(1);
                    text.extend(c.get(i..i + len).unwrap_or_default());
                    i += len;
                }
            }
            '<' => match autolink(c, i) {
                Some(end) => {
                    text.extend(c.get(i + 1..end).unwrap_or_default());
                    i = end + 1;
                }
                None => {
                    text.push('<');
                    i += 1;
                }
            },
            '!' | '[' => {
                let image = ch == '!';
                let open = if image { i + 1 } else { i };
                match link_at(c, &spans, open) {
                    Some(link) if !image || c.get(open) == Some(&'[') => {
                        let label = c.get(open + 1..link.close).unwrap_or_default();
                        text.push_str(&link.render(label, image, style, depth));
                        i = link.end;
                    }
                    _ => {
                        text.push(ch);
                        i += 1;
                    }
                }
            }
            '*' | '_' | '~' => {
                let len = run_len(c, i, ch);
                let prev = i.checked_sub(1).and_then(|p| c.get(p)).copied();
                let next = c.get(i + len).copied();
                let mut delim = delimiter(ch, len, prev, next);
                // `__init__.py`: an extension right after the run glues it into a file name.
                if ch == '_'
                    && next == Some('.')
                    && c.get(i + len + 1).is_some_and(|x| x.is_alphanumeric())
                {
                    delim.can_close = false;
                }
                if !text.is_empty() {
                    toks.push(Tok::Text(std::mem::take(&mut text)));
                }
                toks.push(Tok::Delim(delim));
                i += len;
            }
            _ => match bare_url_end(c, i) {
                Some(end) => {
                    text.extend(c.get(i..end).unwrap_or_default());
                    i = end;
                }
                None => {
                    text.push(ch);
                    i += 1;
                }
            },
        }
    }
    if !text.is_empty() {
        toks.push(Tok::Text(text));
    }
    match_emphasis(&mut toks, style);
    render_tokens(toks)
}

fn code_span(
    c: &[char],
    open: usize,
    start: usize,
    end: usize,
    after: usize,
    style: Style,
) -> String {
    let mut content = c.get(start..end).unwrap_or_default();
    // CommonMark strips one space each side so `` ` `x` ` `` can show backticks.
    if content.len() >= 2
        && content.first() == Some(&' ')
        && content.last() == Some(&' ')
        && content.iter().any(|&x| x != ' ')
    {
        content = content.get(1..content.len() - 1).unwrap_or(content);
    }
    if style.plain {
        collect(content)
    } else if content.contains(&'`') {
        // WhatsApp code cannot hold a backtick; keep the Markdown as written.
        collect(c.get(open..after).unwrap_or_default())
    } else {
        format!("`{}`", collect(content))
    }
}

/// `<scheme:…>` or `<user@host>`: returns the position of the closing `>`. The scan stops at
/// the first space or `<`, so failed attempts never overlap.
fn autolink(c: &[char], open: usize) -> Option<usize> {
    let body_start = open + 1;
    let mut end = body_start;
    while let Some(&ch) = c.get(end) {
        if ch.is_whitespace() || ch == '<' || ch == '>' {
            break;
        }
        end += 1;
    }
    if c.get(end) != Some(&'>') {
        return None;
    }
    let body = c.get(body_start..end)?;
    let colon = body.iter().position(|&ch| ch == ':');
    let scheme_ok = colon.is_some_and(|at| {
        (2..=32).contains(&at)
            && body.first().is_some_and(char::is_ascii_alphabetic)
            && body.get(..at).is_some_and(|s| {
                s.iter()
                    .all(|ch| ch.is_ascii_alphanumeric() || "+.-".contains(*ch))
            })
    });
    let at = body.iter().position(|&ch| ch == '@');
    let email_ok = colon.is_none() && at.is_some_and(|a| a > 0 && a + 1 < body.len());
    (scheme_ok || email_ok).then_some(end)
}

/// A bare `http://`, `https://` or `www.` URL starting at `i`: returns where it ends. It is
/// copied verbatim so `_` and `*` in it never turn into formatting. Trailing punctuation and an
/// unbalanced `)` are left out, as GitHub's autolink extension does.
fn bare_url_end(c: &[char], i: usize) -> Option<usize> {
    if !matches!(c.get(i), Some('h' | 'H' | 'w' | 'W')) {
        return None;
    }
    if i.checked_sub(1)
        .and_then(|p| c.get(p))
        .is_some_and(|p| p.is_alphanumeric())
    {
        return None;
    }
    let prefix = ["https://", "http://", "www."].into_iter().find(|p| {
        p.chars()
            .enumerate()
            .all(|(k, pc)| c.get(i + k).is_some_and(|ch| ch.eq_ignore_ascii_case(&pc)))
    })?;
    let min = i + prefix.len();
    let mut end = min;
    while c
        .get(end)
        .is_some_and(|ch| !ch.is_whitespace() && *ch != '<')
    {
        end += 1;
    }
    let (mut opens, mut closes) = (0usize, 0usize);
    for ch in c.get(i..end).unwrap_or_default() {
        match ch {
            '(' => opens += 1,
            ')' => closes += 1,
            _ => {}
        }
    }
    while end > min {
        match c.get(end - 1) {
            Some('?' | '!' | '.' | ',' | ':' | ';' | '*' | '_' | '~' | '\'' | '"') => end -= 1,
            Some(')') if closes > opens => {
                closes -= 1;
                end -= 1;
            }
            _ => break,
        }
    }
    (end > min).then_some(end)
}

/// A resolved `[text](destination)`.
struct Link {
    close: usize,
    url: String,
    end: usize,
}

fn link_at(c: &[char], spans: &Spans, open: usize) -> Option<Link> {
    if c.get(open) != Some(&'[') {
        return None;
    }
    let close = *spans.brackets.get(&open)?;
    let paren_close = *spans.parens.get(&(close + 1))?;
    let dest = collect(c.get(close + 2..paren_close)?);
    let dest = dest.trim();
    // `<url with spaces>`, otherwise the first word; an optional "title" after it is dropped.
    let url = match dest.strip_prefix('<').and_then(|d| d.split_once('>')) {
        Some((url, _)) => url,
        None => dest.split_whitespace().next().unwrap_or_default(),
    };
    Some(Link {
        close,
        url: url.to_owned(),
        end: paren_close + 1,
    })
}

impl Link {
    fn render(&self, label: &[char], image: bool, style: Style, depth: u8) -> String {
        let text = if depth >= MAX_LINK_NESTING {
            collect(label)
        } else if image {
            inline_chars(label, Style::PLAIN, depth + 1)
        } else {
            inline_chars(label, style, depth + 1)
        };
        let (text, url) = (text.trim(), self.url.as_str());
        if url.is_empty() {
            text.to_owned()
        } else if text.is_empty() || same_target(text, url) {
            url.to_owned()
        } else if image {
            format!("{text}: {url}")
        } else {
            format!("{text} ({url})")
        }
    }
}

/// `[example.com](https://example.com/)` says the same thing twice.
fn same_target(text: &str, url: &str) -> bool {
    fn bare(s: &str) -> &str {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        let scheme = ["https://", "http://", "mailto:"]
            .iter()
            .find(|p| lower.starts_with(*p))
            .map_or(0, |p| p.len());
        s.get(scheme..).unwrap_or(s).trim_end_matches('/')
    }
    bare(text).eq_ignore_ascii_case(bare(url))
}

fn is_punctuation(c: char) -> bool {
    !c.is_alphanumeric() && !c.is_whitespace()
}

/// Whether `c` counts as "inside a word" next to `*` or `~`. Stricter than CommonMark (which
/// lets `*` emphasise mid-word) so `2*3*4` and `a*b*c` stay literal, but scripts written
/// without spaces (CJK, Thai, …) are exempt, since there `这是**重要**的` is the only way to
/// bold a word.
fn is_word_for_star(c: char) -> bool {
    c.is_alphanumeric() && !(c >= '\u{2E80}' || ('\u{0E00}'..='\u{0EFF}').contains(&c))
}

/// Classifies a delimiter run by its neighbours (CommonMark's flanking rules, plus
/// [`is_word_for_star`]).
fn delimiter(ch: char, len: usize, prev: Option<char>, next: Option<char>) -> Delim {
    let space = |c: Option<char>| c.is_none_or(char::is_whitespace);
    let punct = |c: Option<char>| c.is_some_and(is_punctuation);
    let left_flanking = !space(next) && (!punct(next) || space(prev) || punct(prev));
    let right_flanking = !space(prev) && (!punct(prev) || space(next) || punct(next));
    let (can_open, can_close) = match ch {
        // `_` never works inside a word: snake_case_name stays as it is.
        '_' => (
            left_flanking && (!right_flanking || punct(prev)),
            right_flanking && (!left_flanking || punct(next)),
        ),
        // GFM strikethrough is one or two tildes; longer runs are literal.
        '~' if len > 2 => (false, false),
        _ => (
            left_flanking && !prev.is_some_and(is_word_for_star),
            right_flanking && !next.is_some_and(is_word_for_star),
        ),
    };
    Delim {
        ch,
        len,
        left: len,
        can_open,
        can_close,
        closes: String::new(),
        opens: Vec::new(),
    }
}

/// CommonMark's "process emphasis": each closer is matched with the nearest compatible opener.
/// `bottoms` remembers, per kind of closer, below which stack entry no opener can match, so
/// the search stays linear on input like `*a _b *c _d …`.
fn match_emphasis(toks: &mut [Tok], style: Style) {
    let mut stack: Vec<usize> = Vec::new();
    let mut bottoms = [0usize; 18];
    for ci in 0..toks.len() {
        let Some(Tok::Delim(closer)) = toks.get(ci) else {
            continue;
        };
        let (can_open, can_close) = (closer.can_open, closer.can_close);
        if can_close {
            while let Some(Tok::Delim(closer)) = toks.get(ci) {
                let kind = bottom_kind(closer);
                let bottom = bottoms.get(kind).copied().unwrap_or(0).min(stack.len());
                let found = (bottom..stack.len()).rev().find(|&j| {
                    let opener = stack.get(j).and_then(|&oi| toks.get(oi));
                    matches!(opener, Some(Tok::Delim(o)) if pairs(o, closer))
                });
                let Some(j) = found else {
                    if let Some(b) = bottoms.get_mut(kind) {
                        *b = stack.len();
                    }
                    break;
                };
                // Delimiters between the pair can no longer match anything.
                stack.truncate(j + 1);
                let Some(&oi) = stack.get(j) else { break };
                let (opener_left, closer_left) = apply_match(toks, oi, ci, style);
                if opener_left == 0 {
                    stack.pop();
                }
                for b in &mut bottoms {
                    *b = (*b).min(stack.len());
                }
                if closer_left == 0 {
                    break;
                }
            }
        }
        let left = match toks.get(ci) {
            Some(Tok::Delim(d)) => d.left,
            _ => 0,
        };
        if can_open && left > 0 {
            stack.push(ci);
        }
    }
}

fn bottom_kind(d: &Delim) -> usize {
    let ch = match d.ch {
        '*' => 0,
        '_' => 1,
        _ => 2,
    };
    ch * 6 + (d.len % 3) * 2 + usize::from(d.can_open)
}

fn pairs(opener: &Delim, closer: &Delim) -> bool {
    if opener.ch != closer.ch || opener.left == 0 {
        return false;
    }
    if opener.ch == '~' {
        return opener.len == closer.len;
    }
    // CommonMark's rule of three, which keeps `*a**b*` from pairing the wrong runs.
    let sum_of_three = (opener.len + closer.len).is_multiple_of(3);
    let both_of_three = opener.len.is_multiple_of(3) && closer.len.is_multiple_of(3);
    !((opener.can_close || closer.can_open) && sum_of_three && !both_of_three)
}

/// Records one match between `toks[oi]` and `toks[ci]` (`oi < ci`); returns how many characters
/// each has left.
fn apply_match(toks: &mut [Tok], oi: usize, ci: usize, style: Style) -> (usize, usize) {
    let (head, tail) = toks.split_at_mut(ci);
    let (Some(Tok::Delim(opener)), Some(Tok::Delim(closer))) = (head.get_mut(oi), tail.first_mut())
    else {
        return (0, 0);
    };
    let (used, marker) = match opener.ch {
        '~' => (
            opener.left.min(closer.left),
            if style.plain { "" } else { "~" },
        ),
        _ if opener.left >= 2 && closer.left >= 2 => (
            2,
            if style.plain || style.drop_bold {
                ""
            } else {
                "*"
            },
        ),
        _ => (1, if style.plain { "" } else { "_" }),
    };
    opener.left -= used;
    closer.left -= used;
    opener.opens.push(marker);
    closer.closes.push_str(marker);
    (opener.left, closer.left)
}

fn render_tokens(toks: Vec<Tok>) -> String {
    let mut out = String::new();
    for tok in toks {
        match tok {
            Tok::Text(text) => out.push_str(&text),
            Tok::Delim(d) => {
                out.push_str(&d.closes);
                out.extend(std::iter::repeat_n(d.ch, d.left));
                out.extend(d.opens.iter().rev().copied());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Splitting
// ---------------------------------------------------------------------------------------------

/// Splits a WhatsApp-formatted reply into messages of at most `max_chars` characters (not
/// bytes), as few as possible.
///
/// Paragraphs (blank lines) are the preferred cut, then line ends, then sentence ends, then
/// spaces; a word is cut only when it alone is longer than the limit. Cuts inside a `*…*`,
/// `_…_`, `~…~` or `` `…` `` span are avoided when another cut fits, and cuts inside a
/// ```` ```…``` ```` block only happen when nothing else fits; the block is then closed at the end
/// of one part and reopened at the start of the next. Small parts are merged back greedily,
/// paragraphs joined by a blank line. Parts are trimmed and never empty. A `max_chars` of 0 is
/// treated as 1.
pub fn split(text: &str, max_chars: usize) -> Vec<String> {
    let max = max_chars.max(1);
    let layout = Layout::new(text, max >= MIN_FENCED_LIMIT);
    let mut pieces = Vec::new();
    for (start, end) in layout.paragraphs() {
        layout.split_paragraph(start, end, max, &mut pieces);
    }
    merge(pieces, max)
}

/// Where a part may end, for a cut just before character `p`.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Cut {
    Outside,
    /// Inside a code block's content: the part must close the block and the next reopen it.
    InCode,
    /// Inside a fence, or leaving an empty block on either side.
    Never,
}

/// A part before merging. `join` is what goes between it and the part before it when they are
/// merged; `None` when they must stay apart (a code block was cut between them).
struct Piece {
    text: String,
    len: usize,
    join: Option<&'static str>,
}

struct Layout {
    chars: Vec<char>,
    /// Per character: inside a code block, fences included.
    code: Vec<bool>,
    /// Per cut position (`chars.len() + 1` entries).
    cuts: Vec<Cut>,
    /// Per character: strictly inside a formatting span.
    span: Vec<bool>,
}

/// Break quality within one search tier; higher is better.
const LINE: u8 = 3;
const SENTENCE: u8 = 2;
const WORD: u8 = 1;

#[derive(Clone, Copy, PartialEq)]
enum Tier {
    /// Whitespace outside code and spans.
    Clean,
    /// Whitespace inside a formatting span.
    Span,
    /// Whitespace inside a code block.
    Code,
}

impl Layout {
    fn new(text: &str, fenced: bool) -> Layout {
        let chars: Vec<char> = text.chars().collect();
        let n = chars.len();
        let mut code = vec![false; n];
        let mut cuts = vec![Cut::Outside; n + 1];
        if fenced {
            // Fences pair up in order; an odd last one is plain text.
            let mut fences = Vec::new();
            let mut i = 0;
            while i + 3 <= n {
                if chars
                    .get(i..i + 3)
                    .is_some_and(|f| f.iter().all(|&c| c == '`'))
                {
                    fences.push(i);
                    i += 3;
                } else {
                    i += 1;
                }
            }
            for pair in fences.chunks_exact(2) {
                let &[open, close] = pair else { continue };
                for c in code.iter_mut().take(close + 3).skip(open) {
                    *c = true;
                }
                for (p, cut) in cuts.iter_mut().enumerate().take(close + 3).skip(open + 1) {
                    *cut = if p > open + 3 && p < close {
                        Cut::InCode
                    } else {
                        Cut::Never
                    };
                }
            }
        }
        let span = spans_mask(&chars, &code);
        Layout {
            chars,
            code,
            cuts,
            span,
        }
    }

    fn cut(&self, p: usize) -> Cut {
        self.cuts.get(p).copied().unwrap_or(Cut::Never)
    }

    fn is_space(&self, i: usize) -> bool {
        self.chars.get(i).is_some_and(|c| c.is_whitespace())
    }

    /// Paragraphs: ranges separated by blank lines outside code, trimmed of whitespace.
    fn paragraphs(&self) -> Vec<(usize, usize)> {
        let n = self.chars.len();
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < n {
            if self.is_space(i) && !self.code.get(i).copied().unwrap_or(false) {
                let run_end = (i..n)
                    .find(|&j| !self.is_space(j) || self.code.get(j).copied().unwrap_or(false))
                    .unwrap_or(n);
                let newlines = self
                    .chars
                    .get(i..run_end)
                    .map_or(0, |run| run.iter().filter(|&&c| c == '\n').count());
                if newlines >= 2 {
                    self.push_trimmed(start, i, &mut out);
                    start = run_end;
                }
                i = run_end;
            } else {
                i += 1;
            }
        }
        self.push_trimmed(start, n, &mut out);
        out
    }

    fn push_trimmed(&self, mut start: usize, mut end: usize, out: &mut Vec<(usize, usize)>) {
        while start < end && self.is_space(start) {
            start += 1;
        }
        while end > start && self.is_space(end - 1) {
            end -= 1;
        }
        if start < end {
            out.push((start, end));
        }
    }

    fn split_paragraph(&self, start: usize, end: usize, max: usize, out: &mut Vec<Piece>) {
        let mut s = start;
        let mut join = Some("\n\n");
        while s < end {
            let reopen = self.cut(s) == Cut::InCode;
            let prefix = if reopen { 3 } else { 0 };
            if end - s + prefix <= max {
                self.push_piece(s, end, reopen, false, join, out);
                return;
            }
            let (p, next) = self.find_cut(s, end, max, prefix);
            let close = self.cut(p) == Cut::InCode;
            self.push_piece(s, p, reopen, close, join, out);
            join = if close {
                None
            } else {
                let gap = self.chars.get(p..next).unwrap_or_default();
                Some(if gap.contains(&'\n') {
                    "\n"
                } else if gap.is_empty() {
                    ""
                } else {
                    " "
                })
            };
            s = next;
        }
    }

    fn push_piece(
        &self,
        s: usize,
        p: usize,
        reopen: bool,
        close: bool,
        join: Option<&'static str>,
        out: &mut Vec<Piece>,
    ) {
        let mut text = String::new();
        if reopen {
            text.push_str(FENCE);
        }
        text.extend(self.chars.get(s..p).unwrap_or_default());
        if close {
            text.push_str(FENCE);
        }
        let text = text.trim();
        if !text.is_empty() {
            out.push(Piece {
                text: text.to_owned(),
                len: text.chars().count(),
                join,
            });
        }
    }

    /// Picks where the part starting at `s` ends: returns the cut position and where the next
    /// part starts. Only called when the rest of the paragraph does not fit.
    fn find_cut(&self, s: usize, end: usize, max: usize, prefix: usize) -> (usize, usize) {
        let budget = max.saturating_sub(prefix);
        // The rest does not fit, so hi < end and every candidate leaves something behind.
        let hi = (s + budget).min(end.saturating_sub(1));
        // Prefer a cut in the back half of the window so parts come out well filled.
        let half = (s + budget / 2).max(s + 1);
        let searches = [
            (Tier::Clean, half),
            (Tier::Clean, s + 1),
            (Tier::Span, s + 1),
            (Tier::Code, s + 1),
        ];
        for (tier, lo) in searches {
            if let Some(p) = self.best_break(tier, s, lo, hi, max, prefix) {
                let next = if tier == Tier::Code {
                    p + 1
                } else {
                    (p..end).find(|&q| !self.is_space(q)).unwrap_or(end)
                };
                return (p, next);
            }
        }
        // A single word (or code line) longer than the limit: cut it as late as allowed.
        let fits = |p: usize| match self.cut(p) {
            Cut::Outside => p - s + prefix <= max,
            Cut::InCode => p - s + prefix + 3 <= max,
            Cut::Never => false,
        };
        let p = (s + 1..=hi)
            .rev()
            .find(|&p| fits(p))
            // Unreachable for max >= MIN_FENCED_LIMIT; still guarantees progress.
            .or_else(|| (s + 1..end).find(|&p| self.cut(p) != Cut::Never))
            .unwrap_or(end);
        (p, p)
    }

    /// The best break in `lo..=hi` for `tier`: highest quality, then latest.
    fn best_break(
        &self,
        tier: Tier,
        s: usize,
        lo: usize,
        hi: usize,
        max: usize,
        prefix: usize,
    ) -> Option<usize> {
        let mut best: Option<(u8, usize)> = None;
        for p in (lo..=hi).rev() {
            let quality = self.break_quality(tier, p);
            if quality == 0 || best.is_some_and(|(q, _)| q >= quality) {
                continue;
            }
            if tier == Tier::Code && p - s + prefix + 3 > max {
                continue;
            }
            best = Some((quality, p));
            if quality == LINE {
                break;
            }
        }
        best.map(|(_, p)| p)
    }

    /// How good a cut just before `p` is in `tier` (0: not a break there).
    fn break_quality(&self, tier: Tier, p: usize) -> u8 {
        let Some(&c) = self.chars.get(p) else {
            return 0;
        };
        if tier == Tier::Code {
            // Dropping the whitespace at `p` must leave content on both sides of the cut.
            let inside = self.cut(p) == Cut::InCode && self.cut(p + 1) == Cut::InCode;
            return match (inside, c) {
                (true, '\n') => 2,
                (true, c) if c.is_whitespace() => 1,
                _ => 0,
            };
        }
        let in_span = |i: usize| self.span.get(i).copied().unwrap_or(false);
        let wanted = |i: usize| {
            !self.code.get(i).copied().unwrap_or(true) && in_span(i) == (tier == Tier::Span)
        };
        let prev = p.checked_sub(1);
        if c.is_whitespace() && wanted(p) {
            if c == '\n' {
                return LINE;
            }
            return if prev.is_some_and(|i| self.ends_sentence(i)) {
                SENTENCE
            } else {
                WORD
            };
        }
        // CJK sentences end without a space, so the cut goes right after the mark.
        match prev {
            Some(i) if wanted(i) && matches!(self.chars.get(i), Some('。' | '！' | '？')) => {
                SENTENCE
            }
            _ => 0,
        }
    }

    /// Whether a sentence ends at character `i`, allowing closing quotes, brackets and
    /// formatting markers after the mark (`"Done."`, `*Done!*`).
    fn ends_sentence(&self, mut i: usize) -> bool {
        for _ in 0..4 {
            match self.chars.get(i) {
                Some('.' | '!' | '?' | '…') => return true,
                Some('"' | '\'' | '”' | '’' | '»' | ')' | ']' | '*' | '_' | '~') if i > 0 => {
                    i -= 1
                }
                _ => return false,
            }
        }
        false
    }
}

/// Marks characters strictly inside WhatsApp formatting spans (`*…*`, `_…_`, `~…~`, `` `…` ``)
/// on one line, outside code blocks. Uses WhatsApp's own rule of thumb: a marker opens after a
/// non-word character and before a non-space, and closes after a non-space and before a
/// non-word character.
fn spans_mask(chars: &[char], code: &[bool]) -> Vec<bool> {
    let n = chars.len();
    let mut depth = vec![0i32; n + 1];
    let mut open: [Option<usize>; 4] = [None; 4];
    for (i, &ch) in chars.iter().enumerate() {
        if ch == '\n' || code.get(i).copied().unwrap_or(false) {
            open = [None; 4];
            continue;
        }
        let k = match ch {
            '*' => 0,
            '_' => 1,
            '~' => 2,
            '`' => 3,
            _ => continue,
        };
        let near = |j: Option<usize>| j.and_then(|j| chars.get(j)).copied().filter(|&c| c != '\n');
        let prev = near(i.checked_sub(1));
        let next = near(Some(i + 1));
        let Some(slot) = open.get_mut(k) else {
            continue;
        };
        match *slot {
            Some(o)
                if prev.is_some_and(|c| !c.is_whitespace())
                    && next.is_none_or(|c| !c.is_alphanumeric()) =>
            {
                if let Some(d) = depth.get_mut(o + 1) {
                    *d += 1;
                }
                if let Some(d) = depth.get_mut(i) {
                    *d -= 1;
                }
                *slot = None;
            }
            _ if prev.is_none_or(|c| !c.is_alphanumeric())
                && next.is_some_and(|c| !c.is_whitespace()) =>
            {
                *slot = Some(i);
            }
            _ => {}
        }
    }
    let mut running = 0;
    depth
        .iter()
        .take(n)
        .map(|d| {
            running += d;
            running > 0
        })
        .collect()
}

/// Greedily packs consecutive pieces into as few parts as fit.
fn merge(pieces: Vec<Piece>, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<(String, usize)> = None;
    for piece in pieces {
        match (&mut current, piece.join) {
            (Some((text, len)), Some(join)) if *len + join.chars().count() + piece.len <= max => {
                text.push_str(join);
                text.push_str(&piece.text);
                *len += join.chars().count() + piece.len;
            }
            _ => {
                out.extend(current.take().map(|(text, _)| text));
                current = Some((piece.text, piece.len));
            }
        }
    }
    out.extend(current.map(|(text, _)| text));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `(name, input, expected)` cases and reports every mismatch at once.
    fn check_conversions(cases: &[(&str, &str, &str)]) {
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|(name, input, expected)| {
                let got = to_whatsapp(input);
                (got != *expected)
                    .then(|| format!("{name}:\n  input:    {input:?}\n  expected: {expected:?}\n  got:      {got:?}"))
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn emphasis_code_and_strikethrough_map_to_whatsapp_markers() {
        check_conversions(&[
            ("bold stars", "**bold**", "*bold*"),
            ("bold underscores", "__bold__", "*bold*"),
            ("italic star", "*italic*", "_italic_"),
            ("italic underscore", "_italic_", "_italic_"),
            ("bold italic", "***both***", "_*both*_"),
            ("italic inside bold", "**a *b* c**", "*a _b_ c*"),
            ("strikethrough", "~~gone~~", "~gone~"),
            ("single tilde strike", "~gone~", "~gone~"),
            (
                "inline code",
                "run `cargo test` now",
                "run `cargo test` now",
            ),
            ("no formatting inside code", "`**x** _y_`", "`**x** _y_`"),
            ("double backtick code", "``a ` b``", "``a ` b``"),
            (
                "mid sentence",
                "This is **very** important.",
                "This is *very* important.",
            ),
            ("bold label", "**Note:** read this", "*Note:* read this"),
            ("bold then punctuation", "**Done**!", "*Done*!"),
            ("CJK bold", "这是**重要**的", "这是*重要*的"),
            ("Cyrillic", "Это **важно**", "Это *важно*"),
            ("escaped markers", "\\*not italic\\*", "*not italic*"),
        ]);
    }

    #[test]
    fn plain_text_words_and_urls_are_left_alone() {
        check_conversions(&[
            (
                "snake case",
                "call snake_case_name now",
                "call snake_case_name now",
            ),
            (
                "file names",
                "edit my_file_name.rs and __init__.py",
                "edit my_file_name.rs and __init__.py",
            ),
            (
                "asterisks in a word",
                "a*b*c and 2*3*4 = 24",
                "a*b*c and 2*3*4 = 24",
            ),
            (
                "url with underscores",
                "see https://x.io/a_b_c_d",
                "see https://x.io/a_b_c_d",
            ),
            ("url with stars", "https://x.io/*a*/b", "https://x.io/*a*/b"),
            ("bold url", "**https://x.io/a_b**", "*https://x.io/a_b*"),
            (
                "url in parentheses",
                "(see https://x.io/a_(b)_c)",
                "(see https://x.io/a_(b)_c)",
            ),
            (
                "www url",
                "go to www.x.io/_a_ today",
                "go to www.x.io/_a_ today",
            ),
            ("emoji", "Done 👍🏽 ✅ — really", "Done 👍🏽 ✅ — really"),
            ("arabic", "مرحبا بالعالم", "مرحبا بالعالم"),
            ("hashtag", "#rustlang rocks", "#rustlang rocks"),
            ("math", "5 * 3 = 15 and 2 * 2", "5 * 3 = 15 and 2 * 2"),
            ("html stays", "a <b>tag</b>", "a <b>tag</b>"),
            ("trailing spaces dropped", "line  \nnext", "line\nnext"),
            ("blank lines squeezed", "a\n\n\n\nb\n\n", "a\n\nb"),
            ("crlf", "a\r\n**b**\r\n", "a\n*b*"),
        ]);
    }

    #[test]
    fn unbalanced_markers_stay_literal() {
        check_conversions(&[
            ("open bold", "**bold", "**bold"),
            ("close bold", "bold**", "bold**"),
            ("lone star", "a * b", "a * b"),
            ("lone underscore", "_x", "_x"),
            ("open strike", "~~x", "~~x"),
            ("triple tilde", "a ~~~x~~~ y", "a ~~~x~~~ y"),
            ("mismatched", "**a*", "*_a_"),
            ("open backtick", "a `b", "a `b"),
            ("open bracket", "[a](b", "[a](b"),
            ("brackets only", "[1] and [2]", "[1] and [2]"),
            ("spaced stars", "** not bold **", "** not bold **"),
        ]);
    }

    #[test]
    fn fenced_code_blocks_become_monospace_blocks_verbatim() {
        check_conversions(&[
            (
                "with language",
                "```rust\nfn main() {}\n```",
                "```fn main() {}```",
            ),
            (
                "without language",
                "```\na **b** _c_\n```",
                "```a **b** _c_```",
            ),
            (
                "keeps lines and indentation",
                "Try:\n\n```python\ndef f():\n\n    return 1\n```\n\nDone.",
                "Try:\n\n```def f():\n\n    return 1```\n\nDone.",
            ),
            ("tilde fence", "~~~\nx\n~~~", "```x```"),
            ("unclosed fence runs to the end", "```\nx\ny", "```x\ny```"),
            (
                "longer fence holds shorter",
                "````\n```\ninner\n```\n````",
                "``````\ninner\n``````",
            ),
            (
                "indented under a list item",
                "1. Run:\n   ```sh\n   ls -la\n   ```",
                "1. Run:\n```ls -la```",
            ),
            ("empty block dropped", "a\n```\n```\nb", "a\nb"),
            (
                "one-line triple backticks are inline code",
                "say ```hi``` now",
                "say `hi` now",
            ),
        ]);
    }

    #[test]
    fn headings_become_bold_lines() {
        check_conversions(&[
            ("h1", "# Title", "*Title*"),
            ("h6", "###### Small", "*Small*"),
            ("closing hashes", "## Title ##", "*Title*"),
            ("bold inside", "### **Bold** part", "*Bold part*"),
            ("italic inside", "# The _real_ deal", "*The _real_ deal*"),
            ("followed by text", "# Intro\nHello", "*Intro*\nHello"),
            ("seven hashes", "####### x", "####### x"),
            ("empty heading dropped", "#\ntext", "text"),
        ]);
    }

    #[test]
    fn lists_become_bullets_numbers_and_checkboxes() {
        check_conversions(&[
            ("dash", "- one\n- two", "• one\n• two"),
            ("star and plus", "* one\n+ two", "• one\n• two"),
            (
                "nested two spaces",
                "- a\n  - b\n    - c\n- d",
                "• a\n  • b\n    • c\n• d",
            ),
            ("nested four spaces", "- a\n    - b", "• a\n  • b"),
            (
                "numbered",
                "1. one\n2. two\n10. ten",
                "1. one\n2. two\n10. ten",
            ),
            ("paren numbers", "1) one", "1. one"),
            (
                "numbered with bullets",
                "1. a\n   - b\n2. c",
                "1. a\n  • b\n2. c",
            ),
            (
                "tasks",
                "- [ ] todo\n- [x] done\n- [X] also",
                "☐ todo\n☑ done\n☑ also",
            ),
            ("nested task", "- a\n  - [ ] b", "• a\n  ☐ b"),
            (
                "formatting in items",
                "- **Bold** item\n- `code`",
                "• *Bold* item\n• `code`",
            ),
            (
                "continuation line",
                "- item\n  more text",
                "• item\n  more text",
            ),
            ("loose list", "- a\n\n- b", "• a\n\n• b"),
            (
                "not a list",
                "-5 degrees and 1.5 litres",
                "-5 degrees and 1.5 litres",
            ),
            ("italic at line start", "*not* a bullet", "_not_ a bullet"),
        ]);
    }

    #[test]
    fn links_and_images_become_text_and_url() {
        check_conversions(&[
            (
                "link",
                "[Docs](https://x.io/docs)",
                "Docs (https://x.io/docs)",
            ),
            (
                "text is the url",
                "[https://x.io](https://x.io)",
                "https://x.io",
            ),
            (
                "text is the url without scheme",
                "[x.io/a](https://x.io/a/)",
                "https://x.io/a/",
            ),
            ("autolink", "<https://x.io/a_b>", "https://x.io/a_b"),
            ("email autolink", "<me@x.io>", "me@x.io"),
            (
                "image",
                "![a cat](https://x.io/cat.png)",
                "a cat: https://x.io/cat.png",
            ),
            (
                "image without alt",
                "![](https://x.io/cat.png)",
                "https://x.io/cat.png",
            ),
            (
                "title dropped",
                "[a](https://x.io \"Title\")",
                "a (https://x.io)",
            ),
            (
                "parentheses in url",
                "[w](https://w.org/A_(b))",
                "w (https://w.org/A_(b))",
            ),
            (
                "formatting in text",
                "[**Docs**](https://x.io)",
                "*Docs* (https://x.io)",
            ),
            (
                "underscores in url",
                "[a](https://x.io/a_b_c)",
                "a (https://x.io/a_b_c)",
            ),
            (
                "inside sentence",
                "See [the guide](https://x.io).",
                "See the guide (https://x.io).",
            ),
            (
                "linked image",
                "[![logo](https://x.io/l.png)](https://x.io)",
                "logo: https://x.io/l.png (https://x.io)",
            ),
            (
                "bracket inside code",
                "[a `]` b](https://x.io)",
                "a `]` b (https://x.io)",
            ),
            ("empty destination", "[text]()", "text"),
        ]);
    }

    #[test]
    fn quotes_and_rules_are_kept_readable() {
        check_conversions(&[
            ("quote", "> quoted **text**", "> quoted *text*"),
            ("multi-line quote", "> a\n>\n> b", "> a\n>\n> b"),
            ("nested quote flattened", "> > deep", "> deep"),
            ("list in quote", "> - a\n> - b", "> • a\n> • b"),
            ("dash rule", "a\n\n---\n\nb", "a\n\n———\n\nb"),
            ("star rule", "* * *", "———"),
            ("underscore rule", "___", "———"),
        ]);
    }

    #[test]
    fn tables_become_aligned_monospace_blocks() {
        check_conversions(&[
            (
                "alignment row",
                "| Name | Qty |\n|:-----|----:|\n| Apple | 3 |\n| Kiwi | 12 |",
                "```Name  | Qty\n------+----\nApple |   3\nKiwi  |  12```",
            ),
            (
                "centre and markup stripped",
                "| **Alpha** | B |\n|:-:|---|\n| `x` | [l](https://u) |",
                "```Alpha | B\n------+--------------\n  x   | l (https://u)```",
            ),
            (
                "char widths not bytes",
                "| Город | n |\n|---|---|\n| Мск | 1 |\n| 東京 | 2 |",
                "```Город | n\n------+--\nМск   | 1\n東京    | 2```",
            ),
            (
                "no outer pipes, short and long rows",
                "a | b\n--|--\n1 |\n1 | 2 | 3",
                "```a | b\n--+---+--\n1\n1 | 2 | 3```",
            ),
            (
                "escaped pipe",
                "| a |\n|---|\n| x \\| y |",
                "```a\n-----\nx | y```",
            ),
            (
                "text around",
                "Prices:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nThat's all.",
                "Prices:\n\n```a | b\n--+--\n1 | 2```\n\nThat's all.",
            ),
            ("pipe without delimiter row", "a | b\nc | d", "a | b\nc | d"),
        ]);
    }

    #[test]
    fn a_typical_answer_converts_end_to_end() {
        let md = "## Summary\n\nHere is **what** to do:\n\n1. Install `parley`\n2. Run it:\n\n```bash\ncargo run -- serve\n```\n\n> Tip: read [the docs](https://parley.dev/docs).\n\n---\n\n- [x] done\n- [ ] not yet";
        let expected = "*Summary*\n\nHere is *what* to do:\n\n1. Install `parley`\n2. Run it:\n\n```cargo run -- serve```\n\n> Tip: read the docs (https://parley.dev/docs).\n\n———\n\n☑ done\n☐ not yet";
        assert_eq!(to_whatsapp(md), expected);
    }

    // --- split ---------------------------------------------------------------------------------

    /// Small deterministic PRNG (xorshift64*), so property tests need no crates and always
    /// replay the same inputs.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    fn non_space(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    fn lorem(rng: &mut Rng, chars: usize) -> String {
        const WORDS: &[&str] = &[
            "the",
            "quick",
            "brown",
            "fox",
            "jumps",
            "over",
            "lazy",
            "dog",
            "WhatsApp",
            "reply",
            "Привет",
            "日本語",
            "🙂",
            "snake_case",
            "https://x.io/a_b",
            "*bold*",
            "_it_",
            "ok.",
            "really?",
            "yes!",
            "well…",
        ];
        let mut out = String::new();
        while out.chars().count() < chars {
            out.push_str(rng.pick(WORDS));
            out.push_str(rng.pick(&[" ", " ", " ", " ", "\n", "\n\n"]));
        }
        out
    }

    /// Checks the invariants every split must keep, and returns the parts.
    fn checked_split(text: &str, max: usize) -> Vec<String> {
        let parts = split(text, max);
        for part in &parts {
            assert!(!part.is_empty(), "empty part splitting {text:?} at {max}");
            assert_eq!(
                part.trim(),
                part,
                "untrimmed part splitting {text:?} at {max}"
            );
            assert!(
                part.chars().count() <= max.max(1),
                "part of {} chars over {max}: {part:?}",
                part.chars().count()
            );
        }
        // Only added fences may differ, so compare without backticks; without any backticks in
        // the input, nothing at all may be added.
        let strip = |s: &str| non_space(s).replace('`', "");
        assert_eq!(
            strip(&parts.concat()),
            strip(text),
            "content changed splitting at {max}"
        );
        if !text.contains('`') {
            assert_eq!(non_space(&parts.concat()), non_space(text));
        }
        parts
    }

    #[test]
    fn split_cases() {
        // (name, input, max, expected parts)
        let cases: Vec<(&str, String, usize, Vec<String>)> = vec![
            (
                "short text is one part",
                "Hello there!".into(),
                4096,
                vec!["Hello there!".into()],
            ),
            (
                "edges trimmed",
                "  \n\nHi\n\n  ".into(),
                100,
                vec!["Hi".into()],
            ),
            ("empty text", "  \n ".into(), 100, vec![]),
            (
                "small paragraphs merge",
                "one\n\n\n\ntwo\n\nthree".into(),
                100,
                vec!["one\n\ntwo\n\nthree".into()],
            ),
            (
                "paragraphs merge greedily up to the limit",
                "aaaa\n\nbbbb\n\ncccc\n\ndddd".into(),
                10,
                vec!["aaaa\n\nbbbb".into(), "cccc\n\ndddd".into()],
            ),
            (
                "sentence boundary before word boundary",
                "One two three. Four five six seven".into(),
                25,
                vec!["One two three.".into(), "Four five six seven".into()],
            ),
            (
                "line boundary first",
                "• item one\n• item two\n• item three".into(),
                24,
                vec!["• item one\n• item two".into(), "• item three".into()],
            ),
            (
                "word boundary",
                "alpha beta gamma delta".into(),
                12,
                vec!["alpha beta".into(), "gamma delta".into()],
            ),
            (
                "bold span not cut",
                "aaaa bbbb *cc dd ee* ff".into(),
                16,
                vec!["aaaa bbbb".into(), "*cc dd ee* ff".into()],
            ),
            (
                "span cut when nothing else fits",
                "*aa bb cc dd*".into(),
                8,
                vec!["*aa bb".into(), "cc dd*".into()],
            ),
            (
                "code block closed and reopened",
                "```line1\nline2\nline3```".into(),
                17,
                vec!["```line1\nline2```".into(), "```line3```".into()],
            ),
            (
                "cut before a code block rather than inside",
                "Intro text\n```a b c```".into(),
                12,
                vec!["Intro text".into(), "```a b c```".into()],
            ),
            (
                "blank line inside code is not a paragraph break",
                "```a\n\nb``` c\n\nd".into(),
                12,
                vec!["```a\n\nb``` c".into(), "d".into()],
            ),
            (
                "code cut at a space when a line is too long",
                "```aa bb cc dd```".into(),
                12,
                vec!["```aa bb```".into(), "```cc dd```".into()],
            ),
            (
                "long word hard split",
                "abcdefghij".into(),
                4,
                vec!["abcd".into(), "efgh".into(), "ij".into()],
            ),
            (
                "chars not bytes",
                "ééé ééé".into(),
                3,
                vec!["ééé".into(), "ééé".into()],
            ),
            (
                "CJK sentences",
                "今日は晴れ。明日は雨。".into(),
                6,
                vec!["今日は晴れ。".into(), "明日は雨。".into()],
            ),
        ];
        let mut failures = Vec::new();
        for (name, input, max, expected) in &cases {
            let got = checked_split(input, *max);
            if &got != expected {
                failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn ten_thousand_chars_of_paragraphs_fit_whatsapp_and_keep_every_word() {
        let mut rng = Rng(7);
        let text = lorem(&mut rng, 10_000);
        let parts = checked_split(&text, WHATSAPP_TEXT_LIMIT);
        assert_eq!(parts.len(), 3, "10k chars should need three messages");
        let joined = parts.join("\n\n");
        assert_eq!(words(&joined), words(&text));
    }

    #[test]
    fn a_long_code_block_is_closed_and_reopened_in_every_part() {
        let code: Vec<String> = (0..400)
            .map(|i| format!("let value_{i} = compute({i});"))
            .collect();
        let text = format!(
            "Here is the code:\n\n```{}```\n\nThat's it.",
            code.join("\n")
        );
        let parts = checked_split(&text, WHATSAPP_TEXT_LIMIT);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        let code_parts: Vec<&String> = parts.iter().filter(|p| p.contains("let value_")).collect();
        for part in &code_parts {
            assert_eq!(
                part.matches(FENCE).count() % 2,
                0,
                "unbalanced fences in {part:?}"
            );
            let code = part.split(FENCE).nth(1).unwrap_or_default();
            // Cut at line ends: every code line arrives whole.
            assert!(
                code.lines()
                    .all(|l| l.starts_with("let value_") && l.ends_with(");"))
            );
        }
        let rejoined: Vec<String> = code_parts
            .iter()
            .flat_map(|p| {
                p.split(FENCE)
                    .nth(1)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(rejoined, code);
    }

    #[test]
    fn a_bold_span_is_not_cut_when_a_space_outside_it_fits() {
        let text = format!(
            "{} *{}* end",
            "word ".repeat(780),
            "bold words ".repeat(30).trim()
        );
        let parts = checked_split(&text, WHATSAPP_TEXT_LIMIT);
        assert_eq!(parts.len(), 2);
        assert!(parts[1].starts_with("*bold words"), "{:?}", &parts[1][..20]);
    }

    #[test]
    fn a_single_5000_char_word_is_hard_split() {
        let word = "x".repeat(5000);
        let parts = checked_split(&format!("short\n\n{word}\n\ntail"), WHATSAPP_TEXT_LIMIT);
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            vec![5, 4096, 904 + 2 + 4]
        );
    }

    #[test]
    fn a_zero_limit_is_treated_as_one() {
        assert_eq!(split("ab c", 0), vec!["a", "b", "c"]);
    }

    #[test]
    fn split_keeps_its_invariants_on_generated_text() {
        const TOKENS: &[&str] = &[
            "word",
            "another",
            "x",
            "a_b",
            "*bold*",
            "_it_",
            "~s~",
            "`c`",
            "```",
            "```code```",
            "*",
            "_",
            "~",
            "`",
            ".",
            "!",
            "?",
            "…",
            "。",
            "é",
            "日本",
            "👍🏽",
            "https://x.io/*a*",
            "averyveryverylongwordthatgoesonandon",
        ];
        const GAPS: &[&str] = &[" ", " ", " ", "", "\n", "\n\n", "  \n \n", "\t"];
        let mut rng = Rng(0x5EED);
        for _ in 0..400 {
            let mut text = String::new();
            for _ in 0..rng.below(120) {
                text.push_str(rng.pick(TOKENS));
                text.push_str(rng.pick(GAPS));
            }
            let max = match rng.below(4) {
                0 => 1 + rng.below(10),
                1 => 8 + rng.below(30),
                _ => 20 + rng.below(300),
            };
            checked_split(&text, max);
        }
    }

    #[test]
    fn converted_answers_split_cleanly() {
        let mut rng = Rng(42);
        for _ in 0..200 {
            let md = random_markdown(&mut rng, 60);
            let text = to_whatsapp(&md);
            checked_split(&text, 8 + rng.below(200));
        }
    }

    // --- robustness ----------------------------------------------------------------------------

    fn random_markdown(rng: &mut Rng, tokens: usize) -> String {
        const PIECES: &[&str] = &[
            "*",
            "**",
            "***",
            "_",
            "__",
            "~",
            "~~",
            "`",
            "``",
            "```",
            "[",
            "]",
            "(",
            ")",
            "![",
            "<",
            ">",
            "\\",
            "#",
            "# ",
            "- ",
            "* ",
            "1. ",
            "- [ ] ",
            "> ",
            "|",
            "|---|",
            ":",
            "---",
            "\n",
            "\n\n",
            " ",
            "  ",
            "\t",
            "word",
            "snake_case",
            "https://x.io/a_b",
            "www.",
            "<https://y>",
            "é",
            "日本",
            "👍🏽",
            "\u{200d}",
            "\r\n",
            "\u{0}",
            "0.",
            ")",
        ];
        let mut out = String::new();
        for _ in 0..rng.below(tokens) {
            out.push_str(rng.pick(PIECES));
        }
        out
    }

    #[test]
    fn to_whatsapp_never_panics_on_odd_input() {
        let mut rng = Rng(0xF00D);
        for _ in 0..2000 {
            let md = random_markdown(&mut rng, 80);
            let out = to_whatsapp(&md);
            // Words are not lost (fence info strings and links to themselves legitimately are).
            if md.contains("```") || md.contains("~~~") || md.contains("](") {
                continue;
            }
            for w in ["word", "snake_case"] {
                assert_eq!(
                    out.matches(w).count(),
                    md.matches(w).count(),
                    "{md:?} → {out:?}"
                );
            }
        }
        // Random characters, not just Markdown pieces.
        for _ in 0..500 {
            let s: String = (0..rng.below(100))
                .filter_map(|_| char::from_u32(rng.below(0x3000) as u32))
                .collect();
            to_whatsapp(&s);
        }
    }

    #[test]
    fn both_functions_handle_pathological_100_kb_replies() {
        let mut rng = Rng(99);
        let inputs = [
            lorem(&mut rng, 100_000),
            "[".repeat(100_000),
            "[a](".repeat(25_000),
            "`".repeat(50_000) + &"` `".repeat(16_000),
            "*a _b ".repeat(16_000),
            "**a ".repeat(25_000),
            "<a:".repeat(33_000),
            "~~a ".repeat(25_000),
            "| a ".repeat(25_000) + "\n|---|\n",
            "- ".repeat(50_000),
            "x".repeat(100_000),
            "```".repeat(33_000),
            ("  ".repeat(30) + "- a\n").repeat(1_500),
            ">".repeat(100_000),
            "[[[[[[[[[[x](u)](u)](u)](u)](u)](u)](u)](u)](u)](u) ".repeat(1_800),
        ];
        // No wall-clock assertion (these machines are noisy): a quadratic blow-up shows up as
        // this test hanging past the runner's timeout, and `make bench` measures speed.
        for input in &inputs {
            let text = to_whatsapp(input);
            let parts = split(&text, WHATSAPP_TEXT_LIMIT);
            let raw_parts = split(input, WHATSAPP_TEXT_LIMIT);
            assert!(
                parts
                    .iter()
                    .chain(&raw_parts)
                    .all(|p| p.chars().count() <= WHATSAPP_TEXT_LIMIT)
            );
        }
    }
}
