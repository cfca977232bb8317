// The live event log: `/event/log/subscribe` streams JSON lines; filters restart the stream.
import { useEffect, useState } from "react";
import { get, subscribeEvents } from "../api/client";
import type { EventLog, List, WhatsappIntegration } from "../api/client";
import { Empty, ErrorBanner, useLoad, when } from "../ui";

const MAX_SHOWN = 500;

export function EventsPage() {
  const integrations = useLoad(() => get<List<WhatsappIntegration>>("/integration/whatsapp/list", { take: 100 }), []);
  const [integration, setIntegration] = useState("");
  const [type, setType] = useState("");
  const [level, setLevel] = useState("");
  const [events, setEvents] = useState<EventLog[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState(false);

  useEffect(() => {
    const ctl = new AbortController();
    setEvents([]);
    setError(null);
    const filters: Record<string, unknown> = { historyLength: 100 };
    if (integration) filters.whatsappIntegrationId = integration;
    if (type.trim()) filters.type = type.trim();
    if (level) filters.level = level;
    setLive(true);
    subscribeEvents(
      filters,
      (e) => setEvents((es) => [e, ...es].slice(0, MAX_SHOWN)),
      ctl.signal,
    )
      .catch((e) => {
        if (!ctl.signal.aborted) setError(e);
      })
      .finally(() => {
        if (!ctl.signal.aborted) setLive(false);
      });
    return () => ctl.abort();
  }, [integration, type, level]);

  return (
    <section>
      <div className="page-head">
        <h1>Event log</h1>
        <span className={`badge ${live ? "ok" : "warn"}`} aria-live="polite">
          {live ? "● live" : "disconnected"}
        </span>
      </div>
      <div className="filters">
        <label>
          Integration{" "}
          <select value={integration} onChange={(e) => setIntegration(e.target.value)}>
            <option value="">all</option>
            {integrations.data?.items.map((i) => (
              <option key={i.id} value={i.id}>
                {i.name ?? i.id}
              </option>
            ))}
          </select>
        </label>
        <label>
          Type{" "}
          <input
            value={type}
            onChange={(e) => setType(e.target.value)}
            placeholder="e.g. whatsapp.setup.failed"
          />
        </label>
        <label>
          Level{" "}
          <select value={level} onChange={(e) => setLevel(e.target.value)}>
            <option value="">all</option>
            <option value="info">info</option>
            <option value="warning">warning</option>
            <option value="error">error</option>
          </select>
        </label>
      </div>
      <ErrorBanner error={error} />
      {events.length === 0 && !error && (
        <Empty title="No events yet">Events appear here as they happen: webhooks, setups, replies and failures.</Empty>
      )}
      {events.length > 0 && (
        <table className="table events">
          <thead>
            <tr>
              <th>Time</th>
              <th>Level</th>
              <th>Type</th>
              <th>Message</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <tr key={e.id} className={`level-${e.level}`}>
                <td>{when(e.createdAt)}</td>
                <td>
                  <span className={`badge ${e.level === "error" ? "bad" : e.level === "warning" ? "warn" : "ok"}`}>{e.level}</span>
                </td>
                <td className="mono">{e.type}</td>
                <td>{e.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
