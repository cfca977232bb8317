import { describe, expect, it } from "vitest";
import { renderToStaticMarkup } from "react-dom/server";
import { Ticks, WaBubble, WaContent } from "./Message";
import type { WaBody } from "./Message";
import { describeMetaError } from "./errors";
import { phoneView } from "../pages/Sandbox";
import { messageBody } from "../pages/Conversations";

const html = (body: WaBody, onReply?: () => void) =>
  renderToStaticMarkup(<WaContent body={body} onReply={onReply} wamid="wamid.X" />);

// Cloud API bodies exactly as the rich-message tools send them.
const buttons: WaBody = {
  messaging_product: "whatsapp",
  to: "15550100001",
  type: "interactive",
  interactive: {
    type: "button",
    header: { type: "text", text: "Your order" },
    body: { text: "Ship it *today*?" },
    footer: { text: "Reply with a button" },
    action: {
      buttons: [
        { type: "reply", reply: { id: "yes", title: "Yes" } },
        { type: "reply", reply: { id: "later", title: "Later" } },
      ],
    },
  },
};

describe("WhatsApp message rendering", () => {
  it("renders reply buttons as clickable buttons with header, formatted body and footer", () => {
    const out = html(buttons, () => {});
    expect(out).toContain('<div class="wa-header">Your order</div>');
    expect(out).toContain("Ship it <strong>today</strong>?");
    expect(out).toContain('<div class="wa-footer">Reply with a button</div>');
    expect(out.match(/<button type="button" class="wa-button">/g)).toHaveLength(2);
    expect(out).toContain(">Yes</button>");
    expect(out).toContain(">Later</button>");
  });

  it("disables buttons where nobody can tap them (the conversation view)", () => {
    expect(html(buttons)).toContain('disabled="">Yes</button>');
  });

  it("renders a list message as its button (the rows open on tap)", () => {
    const out = html({
      type: "interactive",
      interactive: {
        type: "list",
        body: { text: "Pick a size" },
        action: { button: "Sizes", sections: [{ title: "All", rows: [{ id: "s", title: "Small" }] }] },
      },
    });
    expect(out).toContain("Pick a size");
    expect(out).toContain("☰ Sizes");
    expect(out).toContain('aria-expanded="false"');
  });

  it("renders a location request with a send-location button", () => {
    const out = html(
      { type: "interactive", interactive: { type: "location_request_message", body: { text: "Where are you?" }, action: { name: "send_location" } } },
      () => {},
    );
    expect(out).toContain("Where are you?");
    expect(out).toContain("📍 Send location");
  });

  it("renders a location with its name, address and coordinates", () => {
    const out = html({ type: "location", location: { latitude: 52.52, longitude: 13.405, name: "Office", address: "Main St 1" } });
    expect(out).toContain("Office");
    expect(out).toContain("Main St 1");
    expect(out).toContain("52.52000, 13.40500");
  });

  it("renders images as thumbnails with captions, and documents by file name", () => {
    const img = html({ type: "image", image: { link: "https://example.com/a.jpg", caption: "*Menu*" } });
    expect(img).toContain('<img class="wa-thumb" src="https://example.com/a.jpg" alt="*Menu*" loading="lazy"/>');
    expect(img).toContain("<strong>Menu</strong>");
    const doc = html({ type: "document", document: { link: "https://example.com/a.pdf", filename: "invoice.pdf" } });
    expect(doc).toContain('href="https://example.com/a.pdf"');
    expect(doc).toContain("invoice.pdf");
    expect(html({ type: "image", image: { id: "1234" } })).toContain("Photo");
  });

  it("renders what a user tapped: button and list replies", () => {
    expect(html({ type: "interactive", interactive: { type: "button_reply", button_reply: { id: "yes", title: "Yes" } } })).toContain(
      "Yes",
    );
    const list = html({
      type: "interactive",
      interactive: { type: "list_reply", list_reply: { id: "s", title: "Small", description: "30 cm" } },
    });
    expect(list).toContain("Small");
    expect(list).toContain("30 cm");
  });

  it("names unsupported kinds instead of failing", () => {
    expect(html({ type: "order", order: {} })).toContain("Unsupported message (order)");
  });
});

describe("delivery ticks and failures", () => {
  const ticks = (s: string) => renderToStaticMarkup(<Ticks status={s} />);
  it("draws WhatsApp's ticks per status", () => {
    expect(ticks("sent")).toContain(">✓<");
    expect(ticks("delivered")).toContain(">✓✓<");
    expect(ticks("read")).toContain('class="ticks read"');
    expect(ticks("pending")).toContain("🕓");
    expect(ticks("failed")).toContain('class="ticks failed"');
  });

  it("shows a failure in red with Meta's error code and its meaning", () => {
    const out = renderToStaticMarkup(
      <WaBubble body={{ type: "text", text: { body: "hi" } }} side="right" status="failed" errorCode={131047} errorTitle="Re-engagement message" />,
    );
    expect(out).toContain('class="wa-bubble right failed"');
    expect(out).toContain('role="alert"');
    expect(out).toContain("131047: more than 24 hours since the user last wrote");
  });

  it("falls back to Meta's title for codes it does not know", () => {
    expect(describeMetaError(999999, "Something new")).toBe("999999: Something new");
    expect(describeMetaError(null, "timed out")).toBe("timed out");
  });
});

describe("the sandbox phone", () => {
  const m = (id: string, direction: string, body: WaBody, status = "received", createdAt = Date.now()) => ({
    id,
    direction,
    wamid: `wamid.${id}`,
    type: String(body.type),
    // The schema types `body` as an opaque object.
    body: body as Record<string, never>,
    status,
    createdAt,
  });
  it("attaches reactions to the message they react to and shows typing", () => {
    const view = phoneView([
      m("1", "in", { type: "text", text: { body: "hi" } }, "typing"),
      m("2", "out", { type: "reaction", reaction: { message_id: "wamid.1", emoji: "👍" } }),
    ]);
    expect(view.shown.map((x) => x.id)).toEqual(["1"]);
    expect(view.reactions.get("wamid.1")).toEqual(["👍"]);
    expect(view.typing).toBe(true);
  });

  it("uses a stored message's Cloud API body when it kept one", () => {
    const base = { id: "m", createdAt: 1, updatedAt: 1, type: "bot", text: "Ship it?" };
    expect(messageBody({ ...base, meta: {} })).toEqual({ type: "text", text: { body: "Ship it?" } });
    expect(messageBody({ ...base, meta: { whatsapp: buttons } as unknown as Record<string, never> })).toBe(buttons);
  });
});
