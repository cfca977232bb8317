// The dashboard's only way to the server: `/api/v1`, with the session token, and errors in
// ChatBotKit's `{"message","code"}` shape turned into `ApiError`s the pages show as they are.
import type { components } from "./schema";

export type Schemas = components["schemas"];
export type Provider = Schemas["Provider"];
export type Bot = Schemas["Bot"];
export type WhatsappIntegration = Schemas["WhatsappIntegration"];
export type Conversation = Schemas["Conversation"];
export type Message = Schemas["Message"];
export type Contact = Schemas["Contact"];
export type EventLog = Schemas["EventLog"];
export type Token = Schemas["Token"];
export type Sandbox = Schemas["Sandbox"];
export type SandboxMessage = Schemas["SandboxMessage"];
export type SandboxInput = Schemas["SandboxInput"];
export type Overview = Schemas["Overview"];
export type BotUsage = Schemas["BotUsage"];
export type TryResponse = Schemas["TryResponse"];
export interface List<T> {
  items: T[];
  cursor?: string | null;
}

const TOKEN_KEY = "parley.session";

export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export function sessionToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setSessionToken(token: string | null) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Called when the server says the session is gone, so the app can go to the login page. */
let onUnauthenticated: () => void = () => {};
export function setOnUnauthenticated(f: () => void) {
  onUnauthenticated = f;
}

async function toError(res: Response): Promise<ApiError> {
  try {
    const body = await res.json();
    if (body && typeof body.message === "string")
      return new ApiError(body.message, String(body.code ?? "ERROR"), res.status);
  } catch {
    // Not JSON: a proxy's page, say.
  }
  return new ApiError(`the server answered HTTP ${res.status}`, "HTTP_ERROR", res.status);
}

export async function raw(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const token = sessionToken();
  if (token) headers.set("authorization", `Bearer ${token}`);
  if (init.body && !headers.has("content-type")) headers.set("content-type", "application/json");
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}`, { ...init, headers });
  } catch {
    throw new ApiError("cannot reach the server", "NETWORK", 0);
  }
  if (!res.ok) {
    const err = await toError(res);
    if (res.status === 401 && token) onUnauthenticated();
    throw err;
  }
  return res;
}

export async function get<T>(path: string, query?: Record<string, string | number | undefined>): Promise<T> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== "") q.set(k, String(v));
  const qs = q.toString();
  const res = await raw(qs ? `${path}?${qs}` : path);
  return res.json() as Promise<T>;
}

export async function post<T>(path: string, body: unknown = {}): Promise<T> {
  const res = await raw(path, { method: "POST", body: JSON.stringify(body) });
  return res.json() as Promise<T>;
}

/** Streams `/event/log/subscribe`: calls `onItem` per event until `signal` aborts. */
export async function subscribeEvents(
  body: Record<string, unknown>,
  onItem: (e: EventLog) => void,
  signal: AbortSignal,
): Promise<void> {
  const res = await raw("/event/log/subscribe", { method: "POST", body: JSON.stringify(body), signal });
  const reader = res.body?.getReader();
  if (!reader) return;
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      try {
        const item = JSON.parse(line);
        if (item.type === "item") onItem(item.data as EventLog);
      } catch {
        // A torn line cannot happen with whole-line writes; skip anything unreadable.
      }
    }
  }
}
