import { useState } from "react";
import { Link } from "react-router-dom";
import { post } from "../api/client";
import type { Schemas } from "../api/client";
import { ErrorBanner, Field } from "../ui";

export function AuthPage({ mode, onSession }: { mode: "login" | "signup"; onSession: (token: string) => void }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const signup = mode === "signup";
  return (
    <div className="auth">
      <form
        className="card auth-card"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const res = signup
              ? await post<Schemas["SessionResponse"]>("/auth/signup", { email, password, name })
              : await post<Schemas["SessionResponse"]>("/auth/login", { email, password });
            onSession(res.token);
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <h1>💬 Parley</h1>
        <h2>{signup ? "Create your account" : "Log in"}</h2>
        <ErrorBanner error={error} />
        {signup && (
          <Field label="Your name">
            <input name="name" value={name} onChange={(e) => setName(e.target.value)} required autoComplete="name" />
          </Field>
        )}
        <Field label="Email">
          <input
            name="email"
            type="email"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            required
            autoComplete="email"
            autoFocus
          />
        </Field>
        <Field label="Password" hint={signup ? "At least 12 characters." : undefined}>
          <input
            name="password"
            type="password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
            autoComplete={signup ? "new-password" : "current-password"}
          />
        </Field>
        <button type="submit" className="primary" disabled={busy}>
          {signup ? "Sign up" : "Log in"}
        </button>
        <p className="muted">
          {signup ? (
            <>
              Have an account? <Link to="/login">Log in</Link>
            </>
          ) : (
            <>
              New here? <Link to="/signup">Create an account</Link>
            </>
          )}
        </p>
      </form>
    </div>
  );
}
