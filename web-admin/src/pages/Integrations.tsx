import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { get, post } from "../api/client";
import type { Bot, List, WhatsappIntegration } from "../api/client";
import { CopyButton, Empty, ErrorBanner, Field, useLoad, when } from "../ui";

const STATUS: Record<string, string> = {
  needs_setup: "Needs setup: phone number id and access token missing",
  not_verified: "Not verified: run setup",
  ready: "Ready",
  setup_failed: "Setup failed",
  token_invalid: "Token expired or revoked: replace it",
};

export function StatusBadge({ status }: { status: string }) {
  const tone = status === "ready" ? "ok" : status === "not_verified" || status === "needs_setup" ? "warn" : "bad";
  return <span className={`badge ${tone}`}>{STATUS[status] ?? status}</span>;
}

export function IntegrationsPage() {
  const list = useLoad(() => get<List<WhatsappIntegration>>("/integration/whatsapp/list", { take: 100 }), []);
  const bots = useLoad(() => get<List<Bot>>("/bot/list", { take: 100 }), []);
  const [creating, setCreating] = useState(false);
  const [form, setForm] = useState({ name: "", botId: "", phoneNumberId: "", accessToken: "", appSecret: "" });
  const [error, setError] = useState<unknown>(null);
  const navigate = useNavigate();
  return (
    <section>
      <div className="page-head">
        <h1>WhatsApp integrations</h1>
        <button type="button" className="primary" onClick={() => setCreating(true)}>
          New integration
        </button>
      </div>
      <ErrorBanner error={error || list.error} />
      {creating && (
        <form
          className="card form"
          aria-label="New integration"
          onSubmit={async (e) => {
            e.preventDefault();
            setError(null);
            const body: Record<string, unknown> = { name: form.name };
            for (const k of ["botId", "phoneNumberId", "accessToken", "appSecret"] as const)
              if (form[k]) body[k] = form[k];
            try {
              const { id } = await post<{ id: string }>("/integration/whatsapp/create", body);
              setForm({ name: "", botId: "", phoneNumberId: "", accessToken: "", appSecret: "" });
              navigate(`/integrations/${id}`);
            } catch (err) {
              setError(err);
            }
          }}
        >
          <h2>New WhatsApp integration</h2>
          <Field label="Name">
            <input name="name" value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} required />
          </Field>
          <Field label="Bot">
            <select name="botId" value={form.botId} onChange={(e) => setForm({ ...form, botId: e.target.value })}>
              <option value="">(none yet)</option>
              {bots.data?.items.map((b) => (
                <option key={b.id} value={b.id}>
                  {b.name ?? b.id}
                </option>
              ))}
            </select>
          </Field>
          <Field label="Phone number id" hint="Meta's id of the number (not the number itself), from WhatsApp › API Setup.">
            <input
              name="phoneNumberId"
              inputMode="numeric"
              value={form.phoneNumberId}
              onChange={(e) => setForm({ ...form, phoneNumberId: e.target.value })}
            />
          </Field>
          <Field label="Access token" hint="A system-user token. Write-only: it is never shown again.">
            <input
              name="accessToken"
              type="password"
              autoComplete="off"
              value={form.accessToken}
              onChange={(e) => setForm({ ...form, accessToken: e.target.value })}
            />
          </Field>
          <Field label="App secret" hint="From App settings › Basic. Parley checks every webhook's signature with it.">
            <input
              name="appSecret"
              type="password"
              autoComplete="off"
              value={form.appSecret}
              onChange={(e) => setForm({ ...form, appSecret: e.target.value })}
            />
          </Field>
          <div className="actions">
            <button type="submit" className="primary">
              Create
            </button>
            <button type="button" onClick={() => setCreating(false)}>
              Cancel
            </button>
          </div>
        </form>
      )}
      {list.data?.items.length === 0 && (
        <Empty title="No WhatsApp integrations yet">
          Connect a WhatsApp Business number with “New integration”, or try your bot first in the{" "}
          <Link to="/sandbox">sandbox</Link>, no Meta account needed.
        </Empty>
      )}
      {!!list.data?.items.length && (
        <table className="table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Status</th>
              <th>Phone number id</th>
              <th>Created</th>
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((i) => (
              <tr key={i.id}>
                <td>
                  <Link to={`/integrations/${i.id}`}>{i.name ?? i.id}</Link>
                  {i.sandbox && <span className="badge">sandbox</span>}
                </td>
                <td>
                  <StatusBadge status={i.status} />
                </td>
                <td className="mono">{i.phoneNumberId ?? "—"}</td>
                <td>{when(i.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** A plain field shown as text, with an "Edit" action. */
function EditableText({
  label,
  value,
  mono,
  onSave,
}: {
  label: string;
  value: string;
  mono?: boolean;
  onSave: (v: string) => Promise<void>;
}) {
  const [editing, setEditing] = useState(false);
  const [next, setNext] = useState(value);
  return (
    <div className="secret-row">
      <span className="field-label">{label}</span>
      {!editing ? (
        <>
          <span className={mono ? "mono" : undefined}>{value || "not set"}</span>
          <button
            type="button"
            className="small"
            aria-label={`Edit ${label}`}
            onClick={() => {
              setNext(value);
              setEditing(true);
            }}
          >
            Edit
          </button>
        </>
      ) : (
        <form
          className="inline-form"
          onSubmit={async (e) => {
            e.preventDefault();
            await onSave(next.trim());
            setEditing(false);
          }}
        >
          <input aria-label={label} value={next} onChange={(e) => setNext(e.target.value)} autoFocus />
          <button type="submit" className="small primary">
            Save
          </button>
          <button type="button" className="small" onClick={() => setEditing(false)}>
            Cancel
          </button>
        </form>
      )}
    </div>
  );
}

/** A write-only secret: `********` when set, with a "replace" action. */
function Secret({
  label,
  field,
  value,
  onReplace,
}: {
  label: string;
  field: string;
  value?: string | null;
  onReplace: (field: string, v: string | null) => Promise<void>;
}) {
  const [editing, setEditing] = useState(false);
  const [next, setNext] = useState("");
  return (
    <div className="secret-row">
      <span className="field-label">{label}</span>
      {!editing ? (
        <>
          <code className="mono" data-secret={field}>
            {value ? "********" : "not set"}
          </code>
          <button type="button" className="small" onClick={() => setEditing(true)}>
            {value ? "Replace" : "Set"}
          </button>
        </>
      ) : (
        <form
          className="inline-form"
          onSubmit={async (e) => {
            e.preventDefault();
            await onReplace(field, next);
            setNext("");
            setEditing(false);
          }}
        >
          <input
            aria-label={`New ${label}`}
            type="password"
            autoComplete="off"
            value={next}
            onChange={(e) => setNext(e.target.value)}
            required
          />
          <button type="submit" className="small primary">
            Save
          </button>
          <button type="button" className="small" onClick={() => setEditing(false)}>
            Cancel
          </button>
        </form>
      )}
    </div>
  );
}

export function IntegrationPage() {
  const { id = "" } = useParams();
  const it = useLoad(() => get<WhatsappIntegration>(`/integration/whatsapp/${id}/fetch`), [id]);
  const bots = useLoad(() => get<List<Bot>>("/bot/list", { take: 100 }), []);
  const [error, setError] = useState<unknown>(null);
  const [setupResult, setSetupResult] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const navigate = useNavigate();
  const i = it.data;

  const update = async (body: Record<string, unknown>) => {
    setError(null);
    try {
      await post(`/integration/whatsapp/${id}/update`, body);
      it.reload();
    } catch (e) {
      setError(e);
    }
  };

  if (it.error) return <ErrorBanner error={it.error} />;
  if (!i) return <p className="muted">Loading…</p>;
  return (
    <section>
      <div className="page-head">
        <h1>{i.name ?? i.id}</h1>
        <StatusBadge status={i.status} />
      </div>
      {i.statusMessage && <p className="status-message">{i.statusMessage}</p>}
      {i.warnings.map((w) => (
        <p key={w} className="warning">
          ⚠ {w}
        </p>
      ))}
      <ErrorBanner error={error} />
      <div className="grid2">
        <div className="card">
          <h2>Connection</h2>
          <Field label="Bot">
            <select value={i.botId ?? ""} onChange={(e) => void update({ botId: e.target.value || null })}>
              <option value="">(none)</option>
              {bots.data?.items.map((b) => (
                <option key={b.id} value={b.id}>
                  {b.name ?? b.id}
                </option>
              ))}
            </select>
          </Field>
          <EditableText
            label="Name"
            value={i.name ?? ""}
            onSave={(v) => update({ name: v || null })}
          />
          <EditableText
            label="Phone number id"
            value={i.phoneNumberId ?? ""}
            mono
            onSave={(v) => update({ phoneNumberId: v || null })}
          />
          <Secret label="Access token" field="accessToken" value={i.accessToken} onReplace={(f, v) => update({ [f]: v })} />
          <Secret label="App secret" field="appSecret" value={i.appSecret} onReplace={(f, v) => update({ [f]: v })} />
          <div className="actions">
            <button
              type="button"
              className="primary"
              disabled={busy}
              onClick={async () => {
                setBusy(true);
                setSetupResult(null);
                setError(null);
                try {
                  await post(`/integration/whatsapp/${id}/setup`);
                  const fresh = await get<WhatsappIntegration>(`/integration/whatsapp/${id}/fetch`);
                  it.setData(fresh);
                  setSetupResult(`Meta says: ${fresh.statusMessage ?? "ready"}`);
                } catch (e) {
                  setError(e);
                  it.reload();
                } finally {
                  setBusy(false);
                }
              }}
            >
              {busy ? "Asking Meta…" : "Run setup"}
            </button>
          </div>
          {setupResult && (
            <p className="ok-message" role="status">
              {setupResult}
            </p>
          )}
        </div>
        <div className="card">
          <h2>Webhook</h2>
          <div className="secret-row">
            <span className="field-label">Callback URL</span>
            <code className="mono wrap">{i.callbackUrl}</code>
            <CopyButton value={i.callbackUrl} label="callback URL" />
          </div>
          <div className="secret-row">
            <span className="field-label">Verify token</span>
            <code className="mono wrap">{i.verifyToken}</code>
            <CopyButton value={i.verifyToken} label="verify token" />
          </div>
          {!i.sandbox && (
            <ol className="guide">
              <li>
                In Meta's developer portal, open your app and add the <strong>WhatsApp</strong> product.
              </li>
              <li>
                Under <strong>WhatsApp › API Setup</strong>, copy the <em>phone number id</em>; create a system user in
                Business Settings and generate a permanent token with <code>whatsapp_business_messaging</code>.
              </li>
              <li>
                Under <strong>App settings › Basic</strong>, copy the <em>app secret</em>. Enter all three here, then click
                “Run setup”.
              </li>
              <li>
                Under <strong>WhatsApp › Configuration</strong>, set the callback URL and verify token above, and subscribe
                to the <code>messages</code> field.
              </li>
              <li>Send a message to the number: it appears in Conversations and the event log.</li>
            </ol>
          )}
          {i.sandbox && (
            <p className="muted">
              This is the built-in sandbox: Parley plays Meta. Chat with it on the <Link to="/sandbox">Sandbox</Link>{" "}
              page.
            </p>
          )}
        </div>
      </div>
      <div className="card danger-zone">
        <h2>Delete</h2>
        <p className="muted">
          Deleting stops the callback at once. Conversations, contacts, messages and the event log are kept.
        </p>
        <button
          type="button"
          className="danger"
          onClick={async () => {
            if (
              !confirm(
                `Delete “${i.name ?? i.id}”? Meta's webhooks to it will be refused. Conversations, contacts, messages and the event log are kept.`,
              )
            )
              return;
            try {
              await post(`/integration/whatsapp/${id}/delete`);
              navigate("/integrations");
            } catch (e) {
              setError(e);
            }
          }}
        >
          Delete integration
        </button>
      </div>
    </section>
  );
}
