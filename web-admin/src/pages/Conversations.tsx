import { useMemo, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { get } from "../api/client";
import type { Contact, Conversation, EventLog, List, Message } from "../api/client";
import { Empty, ErrorBanner, useLoad, when } from "../ui";
import { WaBubble } from "../wa/Message";
import type { WaBody } from "../wa/Message";

/** The WhatsApp body of a stored message: the Cloud API JSON when the message kept it, else its text. */
export function messageBody(m: Message): WaBody {
  const meta = (m.meta ?? {}) as Record<string, unknown>;
  for (const key of ["whatsapp", "cloudApi", "body"]) {
    const v = meta[key];
    if (v && typeof v === "object" && typeof (v as WaBody).type === "string") return v as WaBody;
  }
  return { type: "text", text: { body: m.text } };
}

export function ConversationsPage() {
  const convs = useLoad(() => get<List<Conversation>>("/conversation/list", { take: 100 }), []);
  const contacts = useLoad(() => get<List<Contact>>("/contact/list", { take: 100 }), []);
  const [q, setQ] = useState("");
  const byId = useMemo(() => new Map((contacts.data?.items ?? []).map((c) => [c.id, c])), [contacts.data]);
  const shown = (convs.data?.items ?? []).filter((c) => {
    if (!q.trim()) return true;
    const contact = c.contactId ? byId.get(c.contactId) : undefined;
    const hay = [c.id, c.name, c.description, contact?.name, contact?.phone, contact?.fingerprint]
      .filter(Boolean)
      .join(" ")
      .toLowerCase();
    return hay.includes(q.trim().toLowerCase());
  });
  return (
    <section>
      <h1>Conversations</h1>
      <ErrorBanner error={convs.error} />
      <input
        className="search"
        type="search"
        aria-label="Search conversations"
        placeholder="Search by name, number or id"
        value={q}
        onChange={(e) => setQ(e.target.value)}
      />
      {convs.data?.items.length === 0 && (
        <Empty title="No conversations yet">
          They appear when someone writes to a WhatsApp number. Try it in the <Link to="/sandbox">sandbox</Link>.
        </Empty>
      )}
      {!!convs.data?.items.length && shown.length === 0 && <Empty title="Nothing matches your search" />}
      <ul className="conv-list">
        {shown.map((c) => {
          const contact = c.contactId ? byId.get(c.contactId) : undefined;
          return (
            <li key={c.id}>
              <Link to={`/conversations/${c.id}`} className="conv-item">
                <span className="avatar" aria-hidden>
                  👤
                </span>
                <span>
                  <span className="conv-name">{contact?.name ?? c.name ?? contact?.phone ?? c.id}</span>
                  <span className="muted small-text">
                    {contact?.phone ? `+${contact.phone.replace(/^\+/, "")} · ` : ""}
                    {c.endedAt ? "ended" : "active"} · last message {when(c.lastMessageAt ?? c.updatedAt)}
                  </span>
                </span>
              </Link>
            </li>
          );
        })}
      </ul>
    </section>
  );
}

export function ConversationPage() {
  const { id = "" } = useParams();
  const conv = useLoad(() => get<Conversation>(`/conversation/${id}/fetch`), [id]);
  const msgs = useLoad(() => get<List<Message>>(`/conversation/${id}/message/list`, { order: "asc", take: 100 }), [id]);
  const contactId = conv.data?.contactId;
  const contact = useLoad(
    () => (contactId ? get<Contact>(`/contact/${contactId}/fetch`) : Promise.resolve(null)),
    [contactId],
  );
  const c = contact.data;
  // The conversation's own events, plus what its integration logged about this user's
  // messages (received, ignored) during the conversation.
  const waId = c?.fingerprint?.startsWith("whatsapp:") ? c.fingerprint.slice("whatsapp:".length) : undefined;
  const events = useLoad(async () => {
    const own = await get<List<EventLog>>("/event/log/list", { conversationId: id, take: 50 });
    const cv = conv.data;
    if (!cv?.whatsappIntegrationId || !waId) return own.items;
    const theirs = await get<List<EventLog>>("/event/log/list", {
      whatsappIntegrationId: cv.whatsappIntegrationId,
      "meta.from": waId,
      take: 50,
    });
    const from = cv.createdAt - 60_000;
    const to = cv.endedAt ?? Number.MAX_SAFE_INTEGER;
    const inSpan = theirs.items.filter((e) => e.createdAt >= from && e.createdAt <= to);
    const seen = new Set(own.items.map((e) => e.id));
    return [...own.items, ...inSpan.filter((e) => !seen.has(e.id))].sort((a, b) => b.createdAt - a.createdAt);
  }, [id, conv.data?.whatsappIntegrationId, waId]);
  return (
    <section>
      <p>
        <Link to="/conversations">← Conversations</Link>
      </p>
      <ErrorBanner error={conv.error || msgs.error} />
      <div className="conversation">
        <div className="timeline wa-chat" role="log" aria-label="Timeline">
          {msgs.data?.items.length === 0 && <Empty title="No messages in this conversation" />}
          {msgs.data?.items.map((m) => (
            <WaBubble
              key={m.id}
              body={messageBody(m)}
              side={m.type === "user" ? "left" : "right"}
              time={m.createdAt}
              status={m.type === "user" ? undefined : m.deliveryStatus}
              errorCode={m.errorCode}
              errorTitle={m.errorTitle}
            />
          ))}
        </div>
        <aside className="side">
          <div className="card" aria-label="Contact">
            <h2>Contact</h2>
            {c ? (
              <dl className="dl">
                <dt>Name</dt>
                <dd>{c.name ?? "—"}</dd>
                <dt>Phone</dt>
                <dd>{c.phone ? `+${c.phone.replace(/^\+/, "")}` : "—"}</dd>
                <dt>Email</dt>
                <dd>{c.email ?? "—"}</dd>
                <dt>Known since</dt>
                <dd>{when(c.createdAt)}</dd>
              </dl>
            ) : (
              <p className="muted">No contact record (contact collection is off for this integration).</p>
            )}
          </div>
          <div className="card" aria-label="Conversation events">
            <h2>Events</h2>
            {events.data?.length === 0 && <p className="muted">No events.</p>}
            <ul className="events-mini">
              {events.data?.map((e) => (
                <li key={e.id} className={`level-${e.level}`}>
                  <span className="mono">{e.type}</span>
                  <span>{e.message}</span>
                  <span className="muted small-text">{when(e.createdAt)}</span>
                </li>
              ))}
            </ul>
          </div>
        </aside>
      </div>
    </section>
  );
}
