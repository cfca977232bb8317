// The app shell: signed-out pages, then the navigation and one page per resource.
import { useEffect, useState } from "react";
import { NavLink, Navigate, Route, Routes, useNavigate } from "react-router-dom";
import { get, sessionToken, setOnUnauthenticated, setSessionToken } from "./api/client";
import type { Schemas } from "./api/client";
import { AuthPage } from "./pages/Auth";
import { OverviewPage } from "./pages/Overview";
import { ProvidersPage } from "./pages/Providers";
import { BotsPage } from "./pages/Bots";
import { IntegrationsPage, IntegrationPage } from "./pages/Integrations";
import { SandboxPage } from "./pages/Sandbox";
import { ConversationsPage, ConversationPage } from "./pages/Conversations";
import { EventsPage } from "./pages/Events";
import { TokensPage } from "./pages/Tokens";

const NAV: [string, string][] = [
  ["/", "Overview"],
  ["/sandbox", "Sandbox"],
  ["/bots", "Bots"],
  ["/providers", "Providers"],
  ["/integrations", "WhatsApp"],
  ["/conversations", "Conversations"],
  ["/events", "Event log"],
  ["/tokens", "API tokens"],
];

export function App() {
  const [token, setToken] = useState(sessionToken());
  const [me, setMe] = useState<Schemas["MeResponse"] | null>(null);
  const navigate = useNavigate();

  useEffect(() => {
    setOnUnauthenticated(() => {
      setSessionToken(null);
      setToken(null);
      navigate("/login");
    });
  }, [navigate]);

  useEffect(() => {
    if (!token) return;
    get<Schemas["MeResponse"]>("/auth/me")
      .then(setMe)
      .catch(() => setMe(null));
  }, [token]);

  const signedIn = (t: string) => {
    setSessionToken(t);
    setToken(t);
    navigate("/");
  };
  const logOut = () => {
    setSessionToken(null);
    setToken(null);
    setMe(null);
    navigate("/login");
  };

  if (!token)
    return (
      <Routes>
        <Route path="/signup" element={<AuthPage mode="signup" onSession={signedIn} />} />
        <Route path="*" element={<AuthPage mode="login" onSession={signedIn} />} />
      </Routes>
    );

  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">💬 Parley</span>
        <nav className="nav" aria-label="Main">
          {NAV.map(([to, label]) => (
            <NavLink key={to} to={to} end={to === "/"}>
              {label}
            </NavLink>
          ))}
        </nav>
        <div className="who">
          {me?.email && <span className="who-email">{me.email}</span>}
          <button type="button" className="small" onClick={logOut}>
            Log out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Routes>
          <Route path="/" element={<OverviewPage />} />
          <Route path="/sandbox" element={<SandboxPage />} />
          <Route path="/bots" element={<BotsPage />} />
          <Route path="/providers" element={<ProvidersPage />} />
          <Route path="/integrations" element={<IntegrationsPage />} />
          <Route path="/integrations/:id" element={<IntegrationPage />} />
          <Route path="/conversations" element={<ConversationsPage />} />
          <Route path="/conversations/:id" element={<ConversationPage />} />
          <Route path="/events" element={<EventsPage />} />
          <Route path="/tokens" element={<TokensPage />} />
          <Route path="/login" element={<Navigate to="/" replace />} />
          <Route path="/signup" element={<Navigate to="/" replace />} />
          <Route path="*" element={<p>No such page.</p>} />
        </Routes>
      </main>
    </div>
  );
}
