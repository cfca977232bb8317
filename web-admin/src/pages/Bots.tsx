import { useState } from "react";
import { Link } from "react-router-dom";
import { get, post } from "../api/client";
import type { Bot, BotUsage, List, Provider, TryResponse } from "../api/client";
import { Empty, ErrorBanner, Field, useLoad } from "../ui";
import { formatWhatsApp } from "../wa/format";

interface Draft {
  id?: string;
  name: string;
  providerId: string;
  model: string;
  backstory: string;
}

function TryIt({ bot }: { bot: Bot }) {
  const [prompt, setPrompt] = useState("");
  const [answer, setAnswer] = useState<TryResponse | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  return (
    <form
      className="try"
      aria-label={`Try ${bot.name ?? bot.id}`}
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(null);
        try {
          setAnswer(await post<TryResponse>(`/bot/${bot.id}/try`, { messages: [{ type: "user", text: prompt }] }));
        } catch (err) {
          setAnswer(null);
          setError(err);
        } finally {
          setBusy(false);
        }
      }}
    >
      <Field label="Try it">
        <textarea
          name="prompt"
          rows={2}
          value={prompt}
          onChange={(e) => setPrompt(e.target.value)}
          placeholder="Ask the bot something…"
          required
        />
      </Field>
      <button type="submit" disabled={busy}>
        {busy ? "Asking…" : "Send"}
      </button>
      <ErrorBanner error={error} />
      {answer && (
        <div className="try-answer" aria-live="polite">
          <div className="wa-text">{formatWhatsApp(answer.text)}</div>
          <div className="muted small-text">
            {answer.model} · {answer.usage.inputTokens} in / {answer.usage.outputTokens} out · {answer.durationMs} ms
          </div>
        </div>
      )}
    </form>
  );
}

function Usage({ bot }: { bot: Bot }) {
  const u = useLoad(() => get<BotUsage>(`/bot/${bot.id}/usage/fetch`), [bot.id]);
  if (!u.data) return null;
  return (
    <span className="muted small-text">
      {u.data.conversations} conversations · {u.data.messages} messages · {u.data.tokens} tokens
    </span>
  );
}

export function BotsPage() {
  const bots = useLoad(() => get<List<Bot>>("/bot/list", { take: 100 }), []);
  const providers = useLoad(() => get<List<Provider>>("/provider/list", { take: 100 }), []);
  const [draft, setDraft] = useState<Draft | null>(null);
  const [error, setError] = useState<unknown>(null);
  const providerName = (id?: string | null) => providers.data?.items.find((p) => p.id === id)?.name ?? id ?? "—";

  const save = async (d: Draft) => {
    setError(null);
    const body = {
      name: d.name,
      providerId: d.providerId || null,
      model: d.model || null,
      backstory: d.backstory || null,
    };
    try {
      if (d.id) await post(`/bot/${d.id}/update`, body);
      else await post("/bot/create", body);
      setDraft(null);
      bots.reload();
    } catch (e) {
      setError(e);
    }
  };

  return (
    <section>
      <div className="page-head">
        <h1>Bots</h1>
        <button
          type="button"
          className="primary"
          onClick={() =>
            setDraft({ name: "", providerId: providers.data?.items[0]?.id ?? "", model: "", backstory: "" })
          }
        >
          New bot
        </button>
      </div>
      <ErrorBanner error={error || bots.error} />
      {draft && (
        <form
          className="card form"
          aria-label="Bot"
          onSubmit={(e) => {
            e.preventDefault();
            void save(draft);
          }}
        >
          <h2>{draft.id ? "Edit bot" : "New bot"}</h2>
          <Field label="Name">
            <input name="name" value={draft.name} onChange={(e) => setDraft({ ...draft, name: e.target.value })} required />
          </Field>
          <Field label="Provider">
            <select name="providerId" value={draft.providerId} onChange={(e) => setDraft({ ...draft, providerId: e.target.value })}>
              <option value="">(the server's default)</option>
              {providers.data?.items.map((p) => (
                <option key={p.id} value={p.id}>
                  {p.name}
                </option>
              ))}
            </select>
          </Field>
          <Field label="Model" hint="name/param=value…, e.g. gpt-4o-mini/temperature=0.2. Empty: the provider's default model.">
            <input name="model" value={draft.model} onChange={(e) => setDraft({ ...draft, model: e.target.value })} />
          </Field>
          <Field label="Backstory" hint="The system prompt: who the bot is and how it answers.">
            <textarea
              name="backstory"
              rows={4}
              value={draft.backstory}
              onChange={(e) => setDraft({ ...draft, backstory: e.target.value })}
            />
          </Field>
          <div className="actions">
            <button type="submit" className="primary">
              Save
            </button>
            <button type="button" onClick={() => setDraft(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}
      {bots.data?.items.length === 0 && (
        <Empty title="No bots yet">
          {providers.data?.items.length ? (
            <>Click “New bot” and pick a provider.</>
          ) : (
            <>
              First <Link to="/providers">add a provider</Link>, then create a bot that uses it.
            </>
          )}
        </Empty>
      )}
      <div className="cards">
        {bots.data?.items.map((b) => (
          <article className="card" key={b.id} aria-label={`Bot ${b.name ?? b.id}`}>
            <div className="card-head">
              <h2>{b.name ?? b.id}</h2>
              <div className="row-actions">
                <button
                  type="button"
                  className="small"
                  onClick={() =>
                    setDraft({
                      id: b.id,
                      name: b.name ?? "",
                      providerId: b.providerId ?? "",
                      model: b.model ?? "",
                      backstory: b.backstory ?? "",
                    })
                  }
                >
                  Edit
                </button>
                <button
                  type="button"
                  className="small danger"
                  onClick={async () => {
                    if (!confirm(`Delete bot “${b.name ?? b.id}”? Its conversations are kept; integrations linked to it stop answering.`)) return;
                    try {
                      await post(`/bot/${b.id}/delete`);
                      bots.reload();
                    } catch (e) {
                      setError(e);
                    }
                  }}
                >
                  Delete
                </button>
              </div>
            </div>
            <p className="muted">
              {providerName(b.providerId)} · <span className="mono">{b.model ?? "default model"}</span>
            </p>
            <Usage bot={b} />
            <TryIt bot={b} />
          </article>
        ))}
      </div>
    </section>
  );
}
