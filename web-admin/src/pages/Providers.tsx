import { useState } from "react";
import { get, post } from "../api/client";
import type { List, Provider } from "../api/client";
import { Empty, ErrorBanner, Field, useLoad, when } from "../ui";

interface Draft {
  id?: string;
  name: string;
  type: "openai" | "anthropic";
  baseUrl: string;
  defaultModel: string;
  /** Empty: keep the stored key (edit) or none (create). Never filled from the server. */
  apiKey: string;
}

const blank: Draft = { name: "", type: "openai", baseUrl: "", defaultModel: "", apiKey: "" };

export function ProvidersPage() {
  const list = useLoad(() => get<List<Provider>>("/provider/list", { take: 100 }), []);
  const [draft, setDraft] = useState<Draft | null>(null);
  const [error, setError] = useState<unknown>(null);

  const save = async (d: Draft) => {
    setError(null);
    const body: Record<string, unknown> = {
      name: d.name,
      type: d.type,
      baseUrl: d.baseUrl || null,
      defaultModel: d.defaultModel || null,
    };
    try {
      if (d.id) {
        delete body.type;
        // "********" keeps the stored key; only a new value replaces it.
        body.apiKey = d.apiKey ? d.apiKey : "********";
        await post(`/provider/${d.id}/update`, body);
      } else {
        if (d.apiKey) body.apiKey = d.apiKey;
        await post("/provider/create", body);
      }
      setDraft(null);
      list.reload();
    } catch (e) {
      setError(e);
    }
  };

  return (
    <section>
      <div className="page-head">
        <h1>Providers</h1>
        <button type="button" className="primary" onClick={() => setDraft({ ...blank })}>
          New provider
        </button>
      </div>
      <p className="muted">A provider is a model API: OpenAI or any Chat Completions server, or Anthropic.</p>
      <ErrorBanner error={error || list.error} />
      {draft && (
        <form
          className="card form"
          aria-label="Provider"
          onSubmit={(e) => {
            e.preventDefault();
            void save(draft);
          }}
        >
          <h2>{draft.id ? "Edit provider" : "New provider"}</h2>
          <Field label="Name">
            <input name="name" value={draft.name} onChange={(e) => setDraft({ ...draft, name: e.target.value })} required />
          </Field>
          <Field label="Type">
            <select
              name="type"
              value={draft.type}
              disabled={!!draft.id}
              onChange={(e) => setDraft({ ...draft, type: e.target.value as Draft["type"] })}
            >
              <option value="openai">OpenAI-compatible</option>
              <option value="anthropic">Anthropic</option>
            </select>
          </Field>
          <Field label="Base URL" hint="Empty: the vendor's public API. OpenAI-compatible URLs include the version path, e.g. http://localhost:11434/v1">
            <input name="baseUrl" value={draft.baseUrl} onChange={(e) => setDraft({ ...draft, baseUrl: e.target.value })} />
          </Field>
          <Field label="Default model">
            <input
              name="defaultModel"
              value={draft.defaultModel}
              onChange={(e) => setDraft({ ...draft, defaultModel: e.target.value })}
              placeholder="gpt-4o-mini"
            />
          </Field>
          <Field label="API key" hint={draft.id ? "Stored and never shown. Leave empty to keep it; type a new one to replace it." : "Write-only: it is never shown again."}>
            <input
              name="apiKey"
              type="password"
              autoComplete="off"
              value={draft.apiKey}
              onChange={(e) => setDraft({ ...draft, apiKey: e.target.value })}
              placeholder={draft.id ? "********" : ""}
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
      {list.data && list.data.items.length === 0 && (
        <Empty title="No providers yet">Add one to give your bots a model: click “New provider”.</Empty>
      )}
      {list.data && list.data.items.length > 0 && (
        <table className="table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Type</th>
              <th>Base URL</th>
              <th>API key</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((p) => (
              <tr key={p.id}>
                <td>{p.name}</td>
                <td>{String(p.type)}</td>
                <td className="mono">{p.baseUrl}</td>
                <td className="mono">{p.apiKey ? "********" : "—"}</td>
                <td>{when(p.createdAt)}</td>
                <td className="row-actions">
                  {!p.system && (
                    <>
                      <button
                        type="button"
                        className="small"
                        onClick={() =>
                          setDraft({
                            id: p.id,
                            name: p.name,
                            type: p.type as Draft["type"],
                            baseUrl: p.baseUrl,
                            defaultModel: p.defaultModel ?? "",
                            apiKey: "",
                          })
                        }
                      >
                        Edit
                      </button>
                      <button
                        type="button"
                        className="small danger"
                        onClick={async () => {
                          if (!confirm(`Delete provider “${p.name}”? Bots using it stop answering until they get another.`)) return;
                          try {
                            await post(`/provider/${p.id}/delete`);
                            list.reload();
                          } catch (e) {
                            setError(e);
                          }
                        }}
                      >
                        Delete
                      </button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
