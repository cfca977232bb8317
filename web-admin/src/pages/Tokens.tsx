import { useState } from "react";
import { get, post } from "../api/client";
import type { List, Schemas, Token } from "../api/client";
import { CopyButton, Empty, ErrorBanner, Field, useLoad, when } from "../ui";

export function TokensPage() {
  const list = useLoad(() => get<List<Token>>("/token/list", { take: 100 }), []);
  const [name, setName] = useState("");
  const [role, setRole] = useState("admin");
  const [created, setCreated] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  return (
    <section>
      <h1>API tokens</h1>
      <p className="muted">Tokens let scripts and the ChatBotKit SDK use the API. Each is shown once, when it is created.</p>
      <ErrorBanner error={error || list.error} />
      <form
        className="card form inline-form"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          try {
            const res = await post<Schemas["TokenCreateResponse"]>("/token/create", { name, role });
            setCreated(res.token);
            setName("");
            list.reload();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <Field label="Name">
          <input name="tokenName" value={name} onChange={(e) => setName(e.target.value)} required />
        </Field>
        <Field label="Role">
          <select value={role} onChange={(e) => setRole(e.target.value)}>
            <option value="admin">admin</option>
            <option value="agent">agent</option>
            <option value="viewer">viewer</option>
          </select>
        </Field>
        <button type="submit" className="primary">
          Create token
        </button>
      </form>
      {created && (
        <div className="card notice" role="status">
          <p>Copy this token now; it will not be shown again.</p>
          <code className="mono">{created}</code> <CopyButton value={created} label="token" />{" "}
          <button type="button" className="small" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      )}
      {list.data?.items.length === 0 && <Empty title="No API tokens">Create one above to use the API from scripts.</Empty>}
      {!!list.data?.items.length && (
        <table className="table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Role</th>
              <th>Prefix</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>{String(t.role)}</td>
                <td className="mono">{t.tokenPrefix}…</td>
                <td>{when(t.createdAt)}</td>
                <td className="row-actions">
                  <button
                    type="button"
                    className="small danger"
                    onClick={async () => {
                      if (!confirm(`Revoke token “${t.name}”? Scripts using it stop working.`)) return;
                      try {
                        await post(`/token/${t.id}/delete`);
                        list.reload();
                      } catch (e) {
                        setError(e);
                      }
                    }}
                  >
                    Revoke
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
