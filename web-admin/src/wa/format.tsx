// WhatsApp's own text formatting: *bold*, _italic_, ~strikethrough~, ```monospace``` and
// `inline code`. A marker only counts when it hugs its text (no space just inside it) and
// stands at a word boundary, as in WhatsApp, so "2 * 3 * 4" and snake_case_names stay as typed.
import type { ReactNode } from "react";

const INLINE: Record<string, string> = { "*": "strong", _: "em", "~": "s", "`": "code" };

function isBoundary(ch: string | undefined): boolean {
  return ch === undefined || /[\s.,;:!?()[\]{}"'«»\-*_~`]/u.test(ch);
}

/** Finds the closing marker for the one at `open`, or -1. */
function findClose(text: string, open: number, marker: string): number {
  if (open + 1 >= text.length || /\s/u.test(text[open + 1])) return -1;
  for (let i = open + 2; i < text.length; i++) {
    if (text[i] === "\n" && marker !== "`") return -1;
    if (text[i] === marker && !/\s/u.test(text[i - 1]) && isBoundary(text[i + 1])) return i;
  }
  return -1;
}

function inline(text: string, keyBase: string): ReactNode[] {
  const out: ReactNode[] = [];
  let plain = "";
  let i = 0;
  let n = 0;
  while (i < text.length) {
    const ch = text[i];
    const tag = INLINE[ch];
    if (tag && isBoundary(text[i - 1])) {
      const close = findClose(text, i, ch);
      if (close > 0) {
        if (plain) out.push(plain);
        plain = "";
        const inner = text.slice(i + 1, close);
        const key = `${keyBase}.${n++}`;
        const children = tag === "code" ? inner : inline(inner, key);
        if (tag === "strong") out.push(<strong key={key}>{children}</strong>);
        else if (tag === "em") out.push(<em key={key}>{children}</em>);
        else if (tag === "s") out.push(<s key={key}>{children}</s>);
        else out.push(<code key={key} className="wa-code">{children}</code>);
        i = close + 1;
        continue;
      }
    }
    plain += ch;
    i++;
  }
  if (plain) out.push(plain);
  return out;
}

/** WhatsApp-formatted text as React nodes; newlines are kept (render with pre-wrap). */
export function formatWhatsApp(text: string): ReactNode[] {
  const out: ReactNode[] = [];
  const re = /```([\s\S]+?)```/g;
  let last = 0;
  let m: RegExpExecArray | null;
  let n = 0;
  while ((m = re.exec(text)) !== null) {
    if (m.index > last) out.push(...inline(text.slice(last, m.index), `t${n}`));
    out.push(
      <code key={`m${n}`} className="wa-mono">
        {m[1]}
      </code>,
    );
    n++;
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(...inline(text.slice(last), `t${n}`));
  return out;
}
