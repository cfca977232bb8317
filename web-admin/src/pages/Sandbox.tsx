// The sandbox: a phone that talks to the bot through Parley's real webhook pipeline, with
// Parley playing Meta. What the phone shows is what the sandbox's Graph endpoint received.
import { useEffect, useRef, useState } from "react";
import { Link } from "react-router-dom";
import { ApiError, get, post } from "../api/client";
import type { Bot, List, Sandbox, SandboxMessage } from "../api/client";
import { Empty, ErrorBanner, Field, useLoad } from "../ui";
import { WaBubble } from "../wa/Message";
import type { WaReply } from "../wa/Message";

/** Sandbox messages as the phone shows them: reactions attach to the message they react to. */
export function phoneView(messages: SandboxMessage[]) {
  const reactions = new Map<string, string[]>();
  for (const m of messages) {
    if (m.type === "reaction") {
      const r = (m.body as { reaction?: { message_id?: string; emoji?: string } }).reaction;
      if (r?.message_id && r.emoji) reactions.set(r.message_id, [...(reactions.get(r.message_id) ?? []), r.emoji]);
    }
  }
  const shown = messages.filter((m) => m.type !== "reaction");
  const last = shown[shown.length - 1];
  const typing = !!last && last.direction === "in" && last.status === "typing" && Date.now() - last.createdAt < 25_000;
  return { shown, reactions, typing };
}

function Phone({ sandbox, bot }: { sandbox: Sandbox; bot?: Bot }) {
  const [messages, setMessages] = useState<SandboxMessage[]>([]);
  const [text, setText] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const end = useRef<HTMLDivElement>(null);

  // Poll for what is new; statuses of earlier messages change too, so re-read the recent tail.
  useEffect(() => {
    let live = true;
    const load = async () => {
      try {
        // The newest 100, oldest first: statuses of recent messages change too, so the tail
        // is read again each time rather than only what is new.
        const res = await get<List<SandboxMessage>>("/sandbox/message/list", { order: "desc", take: 100 });
        if (live) setMessages([...res.items].reverse());
      } catch (e) {
        if (live) setError(e);
      }
    };
    void load();
    const timer = setInterval(load, 1000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [sandbox.whatsappIntegrationId]);

  useEffect(() => {
    end.current?.scrollIntoView?.({ block: "end" });
  }, [messages.length]);

  const send = async (input: Record<string, unknown>) => {
    setBusy(true);
    setError(null);
    try {
      const sent = await post<SandboxMessage>("/sandbox/message/send", input);
      setMessages((ms) => (ms.some((m) => m.id === sent.id) ? ms : [...ms, sent]));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const reply = (r: WaReply) => void send(r as unknown as Record<string, unknown>);
  const { shown, reactions, typing } = phoneView(messages);

  return (
    <div className="phone" aria-label="Sandbox phone">
      <div className="phone-head">
        <span className="avatar" aria-hidden>
          🤖
        </span>
        <div>
          <div className="phone-title">{bot?.name ?? "Your bot"}</div>
          <div className="phone-sub">{typing ? "typing…" : sandbox.displayPhoneNumber}</div>
        </div>
      </div>
      <div className="phone-chat" role="log" aria-live="polite" aria-label="Chat">
        {shown.length === 0 && <p className="phone-hint">Say hello: your message goes through Parley's webhook pipeline, like one from Meta.</p>}
        {shown.map((m) => (
          <WaBubble
            key={m.id}
            body={m.body as Record<string, unknown>}
            side={m.direction === "in" ? "right" : "left"}
            time={m.createdAt}
            wamid={m.wamid}
            status={m.direction === "in" ? (m.status === "typing" ? "read" : m.status) : undefined}
            reactions={reactions.get(m.wamid)}
            onReply={m.direction === "out" ? reply : undefined}
          />
        ))}
        {typing && (
          <div className="wa-row left">
            <div className="wa-bubble left typing" aria-label="The bot is typing">
              <span />
              <span />
              <span />
            </div>
          </div>
        )}
        <div ref={end} />
      </div>
      <ErrorBanner error={error} />
      <form
        className="phone-input"
        onSubmit={(e) => {
          e.preventDefault();
          if (!text.trim()) return;
          const t = text;
          setText("");
          void send({ type: "text", text: t });
        }}
      >
        <input
          aria-label="Message"
          placeholder="Message"
          value={text}
          onChange={(e) => setText(e.target.value)}
          autoComplete="off"
        />
        <button type="submit" className="send" aria-label="Send" disabled={busy && !text}>
          ➤
        </button>
      </form>
    </div>
  );
}

export function SandboxPage() {
  const sandbox = useLoad(async () => {
    try {
      return await get<Sandbox>("/sandbox/fetch");
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  }, []);
  const bots = useLoad(() => get<List<Bot>>("/bot/list", { take: 100 }), []);
  const [botId, setBotId] = useState("");
  const [error, setError] = useState<unknown>(null);
  const chosen = botId || bots.data?.items[0]?.id || "";

  const create = async (id: string) => {
    setError(null);
    try {
      sandbox.setData(await post<Sandbox>("/sandbox/create", { botId: id || null }));
    } catch (e) {
      setError(e);
    }
  };

  return (
    <section>
      <h1>Sandbox</h1>
      <p className="muted">
        Chat with a bot as a WhatsApp user would, without a Meta account. Parley plays Meta: your messages go in as
        signed webhooks, and the bot's replies come back through the same path real ones take.
      </p>
      <ErrorBanner error={error || sandbox.error || bots.error} />
      {sandbox.data === null && bots.data && bots.data.items.length === 0 && (
        <Empty title="No bot to chat with yet">
          Create a <Link to="/providers">provider</Link> and a <Link to="/bots">bot</Link> first.
        </Empty>
      )}
      {sandbox.data === null && !!bots.data?.items.length && (
        <form
          className="card form inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            void create(chosen);
          }}
        >
          <Field label="Bot">
            <select name="sandboxBot" value={chosen} onChange={(e) => setBotId(e.target.value)}>
              {bots.data.items.map((b) => (
                <option key={b.id} value={b.id}>
                  {b.name ?? b.id}
                </option>
              ))}
            </select>
          </Field>
          <button type="submit" className="primary">
            Create sandbox
          </button>
        </form>
      )}
      {sandbox.data && (
        <div className="sandbox">
          <Phone sandbox={sandbox.data} bot={bots.data?.items.find((b) => b.id === sandbox.data?.botId)} />
          <aside className="card sandbox-side">
            <Field label="Bot in the sandbox">
              <select
                value={sandbox.data.botId ?? ""}
                onChange={(e) => void create(e.target.value)}
                aria-label="Bot in the sandbox"
              >
                {bots.data?.items.map((b) => (
                  <option key={b.id} value={b.id}>
                    {b.name ?? b.id}
                  </option>
                ))}
              </select>
            </Field>
            <p className="muted">
              Replies with buttons, lists and location requests can be tapped. Send <code>/reset</code> to start a new
              session.
            </p>
            <p>
              <Link to={`/integrations/${sandbox.data.whatsappIntegrationId}`}>Sandbox integration</Link> ·{" "}
              <Link to="/conversations">Conversations</Link> · <Link to="/events">Event log</Link>
            </p>
          </aside>
        </div>
      )}
    </section>
  );
}
