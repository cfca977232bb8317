// Renders WhatsApp messages as the app shows them: the Cloud API bodies a bot sends (text,
// reply buttons, lists, location requests, locations, media, reactions) and the message objects
// of webhooks (what a user sent: text, button and list replies, locations).
import { useState } from "react";
import type { ReactNode } from "react";
import { formatWhatsApp } from "./format";
import { describeMetaError } from "./errors";

/** A Cloud API message body or a webhook message object; both carry `type` and a same-named part. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type WaBody = Record<string, any>;

/** What a tap in a message sends back (the sandbox turns it into a webhook). */
export type WaReply =
  | { type: "button_reply"; id: string; title: string; context?: string }
  | { type: "list_reply"; id: string; title: string; description?: string; context?: string }
  | { type: "location"; latitude: number; longitude: number; name?: string; address?: string; context?: string };

export type Delivery = "pending" | "sending" | "sent" | "delivered" | "read" | "failed" | string;

/** Delivery ticks as WhatsApp draws them. */
export function Ticks({ status }: { status?: Delivery | null }) {
  switch (status) {
    case "pending":
    case "sending":
      return <span className="ticks pending" title="Sending" aria-label="sending">🕓</span>;
    case "sent":
      return <span className="ticks" title="Sent" aria-label="sent">✓</span>;
    case "delivered":
      return <span className="ticks" title="Delivered" aria-label="delivered">✓✓</span>;
    case "read":
      return <span className="ticks read" title="Read" aria-label="read">✓✓</span>;
    case "failed":
      return <span className="ticks failed" title="Failed" aria-label="failed">!</span>;
    default:
      return null;
  }
}

function text(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function Header({ header }: { header?: WaBody }) {
  if (!header) return null;
  if (header.type === "text") return <div className="wa-header">{formatWhatsApp(text(header.text))}</div>;
  if (header.type === "image" || header.type === "video" || header.type === "document")
    return <Media kind={header.type} part={header[header.type] ?? {}} />;
  return null;
}

function Media({ kind, part }: { kind: string; part: WaBody }) {
  const link = text(part.link);
  const caption = text(part.caption);
  let inner: ReactNode;
  if (kind === "image" || kind === "sticker") {
    inner = link ? (
      <img className="wa-thumb" src={link} alt={caption || kind} loading="lazy" />
    ) : (
      <div className="wa-media-placeholder">🖼️ {kind === "sticker" ? "Sticker" : "Photo"}</div>
    );
  } else if (kind === "document") {
    const name = text(part.filename) || "Document";
    inner = (
      <div className="wa-doc">
        <span aria-hidden>📄</span>{" "}
        {link ? (
          <a href={link} target="_blank" rel="noreferrer">
            {name}
          </a>
        ) : (
          name
        )}
      </div>
    );
  } else if (kind === "audio") {
    inner = <div className="wa-media-placeholder">🎤 Voice message</div>;
  } else {
    inner = <div className="wa-media-placeholder">🎬 Video</div>;
  }
  return (
    <div className={`wa-media wa-${kind}`}>
      {inner}
      {caption && <div className="wa-caption">{formatWhatsApp(caption)}</div>}
    </div>
  );
}

function Location({ loc }: { loc: WaBody }) {
  const lat = Number(loc.latitude);
  const lon = Number(loc.longitude);
  return (
    <div className="wa-location">
      <div className="wa-map" aria-hidden>
        📍
      </div>
      {loc.name && <div className="wa-loc-name">{text(loc.name)}</div>}
      {loc.address && <div className="wa-loc-address">{text(loc.address)}</div>}
      <div className="wa-loc-coords">
        {Number.isFinite(lat) ? lat.toFixed(5) : "?"}, {Number.isFinite(lon) ? lon.toFixed(5) : "?"}
      </div>
    </div>
  );
}

/** A location-request button: the sandbox asks for coordinates (prefilled) and sends them. */
function LocationRequest({ onReply, context }: { onReply?: (r: WaReply) => void; context?: string }) {
  const [open, setOpen] = useState(false);
  const [lat, setLat] = useState("52.52000");
  const [lon, setLon] = useState("13.40500");
  const [name, setName] = useState("Alexanderplatz");
  if (!open)
    return (
      <button type="button" className="wa-button" disabled={!onReply} onClick={() => setOpen(true)}>
        📍 Send location
      </button>
    );
  return (
    <form
      className="wa-location-form"
      onSubmit={(e) => {
        e.preventDefault();
        const latitude = Number(lat);
        const longitude = Number(lon);
        if (!Number.isFinite(latitude) || !Number.isFinite(longitude)) return;
        onReply?.({ type: "location", latitude, longitude, name: name || undefined, context });
        setOpen(false);
      }}
    >
      <label>
        Latitude <input value={lat} onChange={(e) => setLat(e.target.value)} inputMode="decimal" />
      </label>
      <label>
        Longitude <input value={lon} onChange={(e) => setLon(e.target.value)} inputMode="decimal" />
      </label>
      <label>
        Name <input value={name} onChange={(e) => setName(e.target.value)} />
      </label>
      <button type="submit" className="wa-button">
        Send this location
      </button>
    </form>
  );
}

/** A list message's button opens its sections; choosing a row replies with it. */
function ListAction({
  action,
  onReply,
  context,
}: {
  action: WaBody;
  onReply?: (r: WaReply) => void;
  context?: string;
}) {
  const [open, setOpen] = useState(false);
  const sections: WaBody[] = Array.isArray(action.sections) ? action.sections : [];
  return (
    <div className="wa-list">
      <button
        type="button"
        className="wa-button"
        aria-expanded={open}
        disabled={!onReply}
        onClick={() => setOpen((o) => !o)}
      >
        ☰ {text(action.button) || "Options"}
      </button>
      {open && (
        <div
          className="wa-list-sheet"
          role="listbox"
          aria-label={text(action.button) || "Options"}
          onKeyDown={(e) => {
            if (e.key === "Escape") setOpen(false);
          }}
        >
          {sections.map((s, si) => (
            <div key={si} className="wa-list-section">
              {s.title && <div className="wa-list-section-title">{text(s.title)}</div>}
              {(Array.isArray(s.rows) ? s.rows : []).map((r: WaBody) => (
                <button
                  type="button"
                  role="option"
                  aria-selected={false}
                  key={text(r.id)}
                  className="wa-list-row"
                  onClick={() => {
                    setOpen(false);
                    onReply?.({
                      type: "list_reply",
                      id: text(r.id),
                      title: text(r.title),
                      description: r.description ? text(r.description) : undefined,
                      context,
                    });
                  }}
                >
                  <span className="wa-list-row-title">{text(r.title)}</span>
                  {r.description && <span className="wa-list-row-desc">{text(r.description)}</span>}
                </button>
              ))}
            </div>
          ))}
        </div>
      )}
    </div>
  );
}

function Interactive({
  part,
  onReply,
  context,
}: {
  part: WaBody;
  onReply?: (r: WaReply) => void;
  context?: string;
}) {
  const kind = text(part.type);
  // What a user sent: a tap on a button or a list row.
  if (kind === "button_reply" || kind === "list_reply") {
    const reply = part[kind] ?? {};
    return (
      <div className="wa-reply">
        <span className="wa-reply-icon" aria-hidden>
          ↩
        </span>{" "}
        {text(reply.title)}
        {reply.description && <div className="wa-list-row-desc">{text(reply.description)}</div>}
      </div>
    );
  }
  if (kind === "nfm_reply") return <div className="wa-reply">📝 Form submitted</div>;
  const action: WaBody = part.action ?? {};
  let actions: ReactNode = null;
  if (kind === "button") {
    const buttons: WaBody[] = Array.isArray(action.buttons) ? action.buttons : [];
    actions = (
      <div className="wa-buttons">
        {buttons.map((b) => {
          const reply = b.reply ?? {};
          return (
            <button
              type="button"
              key={text(reply.id)}
              className="wa-button"
              disabled={!onReply}
              onClick={() =>
                onReply?.({ type: "button_reply", id: text(reply.id), title: text(reply.title), context })
              }
            >
              {text(reply.title)}
            </button>
          );
        })}
      </div>
    );
  } else if (kind === "list") {
    actions = <ListAction action={action} onReply={onReply} context={context} />;
  } else if (kind === "location_request_message") {
    actions = <LocationRequest onReply={onReply} context={context} />;
  } else if (kind === "cta_url") {
    const p = action.parameters ?? {};
    actions = (
      <a className="wa-button" href={text(p.url)} target="_blank" rel="noreferrer">
        ↗ {text(p.display_text)}
      </a>
    );
  }
  return (
    <div className="wa-interactive">
      <Header header={part.header} />
      {part.body?.text && <div className="wa-text">{formatWhatsApp(text(part.body.text))}</div>}
      {part.footer?.text && <div className="wa-footer">{text(part.footer.text)}</div>}
      {actions}
    </div>
  );
}

/** The content of one message, without the bubble. */
export function WaContent({
  body,
  onReply,
  wamid,
}: {
  body: WaBody;
  onReply?: (r: WaReply) => void;
  wamid?: string;
}) {
  const kind = text(body.type) || "text";
  const part: WaBody = body[kind] ?? {};
  switch (kind) {
    case "text":
      return <div className="wa-text">{formatWhatsApp(text(part.body))}</div>;
    case "interactive":
      return <Interactive part={part} onReply={onReply} context={wamid} />;
    case "location":
      return <Location loc={part} />;
    case "image":
    case "document":
    case "audio":
    case "video":
    case "sticker":
      return <Media kind={kind} part={part} />;
    case "reaction":
      return (
        <div className="wa-reaction-note">
          {part.emoji ? `Reacted ${text(part.emoji)}` : "Removed a reaction"}
        </div>
      );
    case "button":
      // A tap on a template's quick-reply button.
      return <div className="wa-reply">↩ {text(part.text)}</div>;
    case "template":
      return <div className="wa-text">📋 Template “{text(part.name)}”</div>;
    case "contacts":
      return <div className="wa-text">👤 {(body.contacts ?? []).length} contact(s)</div>;
    default:
      return <div className="wa-unsupported">Unsupported message ({kind})</div>;
  }
}

export interface BubbleProps {
  body: WaBody;
  /** `right` is the sender's own side (green), `left` the other party's. */
  side: "left" | "right";
  time?: number;
  status?: Delivery | null;
  errorCode?: number | null;
  errorTitle?: string | null;
  wamid?: string;
  reactions?: string[];
  onReply?: (r: WaReply) => void;
}

/** One chat bubble: content, time, ticks (own side), reactions, and a failure in red. */
export function WaBubble(p: BubbleProps) {
  const time = p.time ? new Date(p.time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  const failed = p.status === "failed";
  return (
    <div className={`wa-row ${p.side}`}>
      <div className={`wa-bubble ${p.side}${failed ? " failed" : ""}`} data-type={text(p.body.type) || "text"}>
        <WaContent body={p.body} onReply={p.onReply} wamid={p.wamid} />
        <div className="wa-meta">
          <span className="wa-time">{time}</span>
          {p.side === "right" && <Ticks status={p.status} />}
        </div>
        {p.reactions && p.reactions.length > 0 && <div className="wa-reactions">{p.reactions.join("")}</div>}
      </div>
      {failed && (
        <div className="wa-failure" role="alert">
          Not delivered · {describeMetaError(p.errorCode, p.errorTitle)}
        </div>
      )}
    </div>
  );
}
