import { describe, expect, it } from "vitest";
import { renderToStaticMarkup } from "react-dom/server";
import { formatWhatsApp } from "./format";

const html = (text: string) => renderToStaticMarkup(<>{formatWhatsApp(text)}</>);

describe("WhatsApp text formatting", () => {
  it("renders bold, italic, strikethrough and monospace", () => {
    expect(html("*bold* _italic_ ~gone~ ```mono```")).toBe(
      '<strong>bold</strong> <em>italic</em> <s>gone</s> <code class="wa-mono">mono</code>',
    );
  });

  it("nests markers and keeps punctuation after them", () => {
    expect(html("*very _nice_*!")).toBe("<strong>very <em>nice</em></strong>!");
  });

  it("leaves markers that do not hug their text, or sit inside words, as typed", () => {
    expect(html("2 * 3 * 4")).toBe("2 * 3 * 4");
    expect(html("snake_case_name")).toBe("snake_case_name");
    expect(html("* not bold*")).toBe("* not bold*");
    expect(html("*unclosed")).toBe("*unclosed");
  });

  it("does not format inside monospace blocks and keeps their newlines", () => {
    expect(html("```*a*\n_b_```")).toBe('<code class="wa-mono">*a*\n_b_</code>');
  });

  it("does not carry a marker across lines", () => {
    expect(html("*one\ntwo*")).toBe("*one\ntwo*");
  });

  it("renders inline code and escapes HTML", () => {
    expect(html("run `ls -la` <b>x</b>")).toBe('run <code class="wa-code">ls -la</code> &lt;b&gt;x&lt;/b&gt;');
  });
});
