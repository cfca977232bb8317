import { useState } from "react";
import { Link } from "react-router-dom";
import {
  Bar,
  BarChart,
  CartesianGrid,
  Legend,
  Line,
  LineChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";
import { get } from "../api/client";
import type { Overview } from "../api/client";
import { Empty, ErrorBanner, useLoad } from "../ui";
import { describeMetaError } from "../wa/errors";

const day = (ms: number) => new Date(ms).toLocaleDateString([], { month: "short", day: "numeric", timeZone: "UTC" });

function Stat({ label, value }: { label: string; value: string | number }) {
  return (
    <div className="stat">
      <div className="stat-value">{value}</div>
      <div className="stat-label">{label}</div>
    </div>
  );
}

export function OverviewPage() {
  const [days, setDays] = useState(14);
  const o = useLoad(() => get<Overview>("/usage/overview/fetch", { days }), [days]);
  const d = o.data;
  const series = (d?.days ?? []).map((x) => ({ ...x, day: day(x.date), p95: x.p95ReplyMs ?? null }));
  const failures = (d?.failures ?? []).map((f) => ({ label: describeMetaError(f.code, f.title), count: f.count }));
  const tokens = (d?.tokensByBot ?? []).map((b) => ({
    bot: b.name ?? b.botId ?? "no bot",
    input: b.inputTokens,
    output: b.outputTokens,
  }));
  return (
    <section>
      <div className="page-head">
        <h1>Overview</h1>
        <label>
          Period{" "}
          <select value={days} onChange={(e) => setDays(Number(e.target.value))}>
            <option value={7}>7 days</option>
            <option value={14}>14 days</option>
            <option value={30}>30 days</option>
            <option value={90}>90 days</option>
          </select>
        </label>
      </div>
      <ErrorBanner error={o.error} />
      {d && (
        <div className="stats">
          <Stat label="messages received" value={d.messages} />
          <Stat label="replies sent" value={d.replies} />
          <Stat label="failed sends" value={d.failed} />
          <Stat label="p95 reply time" value={d.p95ReplyMs === null || d.p95ReplyMs === undefined ? "—" : `${(d.p95ReplyMs / 1000).toFixed(1)} s`} />
        </div>
      )}
      {d && d.messages === 0 && d.replies === 0 && (
        <Empty title="Nothing to chart yet">
          Chat with your bot in the <Link to="/sandbox">sandbox</Link> or connect a{" "}
          <Link to="/integrations">WhatsApp number</Link>; the charts fill in as messages arrive.
        </Empty>
      )}
      {d && (d.messages > 0 || d.replies > 0) && (
        <div className="charts">
          <div className="card chart" aria-label="Messages per day">
            <h2>Messages and replies per day</h2>
            <ResponsiveContainer width="100%" height={220}>
              <BarChart data={series}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="day" fontSize={12} />
                <YAxis allowDecimals={false} fontSize={12} />
                <Tooltip />
                <Legend />
                <Bar dataKey="messages" name="messages" fill="#25d366" />
                <Bar dataKey="replies" name="replies" fill="#128c7e" />
                <Bar dataKey="failures" name="failures" fill="#e5484d" />
              </BarChart>
            </ResponsiveContainer>
          </div>
          <div className="card chart" aria-label="p95 reply time">
            <h2>p95 reply time (ms)</h2>
            <ResponsiveContainer width="100%" height={220}>
              <LineChart data={series}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="day" fontSize={12} />
                <YAxis fontSize={12} />
                <Tooltip />
                <Line type="monotone" dataKey="p95" name="p95 ms" stroke="#075e54" connectNulls />
              </LineChart>
            </ResponsiveContainer>
          </div>
          <div className="card chart" aria-label="Failures by error code">
            <h2>Failures by Meta error code</h2>
            {failures.length === 0 ? (
              <p className="muted">No failed sends in this period.</p>
            ) : (
              <ResponsiveContainer width="100%" height={220}>
                <BarChart data={failures} layout="vertical">
                  <XAxis type="number" allowDecimals={false} fontSize={12} />
                  <YAxis type="category" dataKey="label" width={220} fontSize={11} />
                  <Tooltip />
                  <Bar dataKey="count" fill="#e5484d" />
                </BarChart>
              </ResponsiveContainer>
            )}
          </div>
          <div className="card chart" aria-label="Tokens per bot">
            <h2>Tokens per bot</h2>
            <ResponsiveContainer width="100%" height={220}>
              <BarChart data={tokens}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="bot" fontSize={12} />
                <YAxis fontSize={12} />
                <Tooltip />
                <Legend />
                <Bar dataKey="input" stackId="t" name="input" fill="#34b7f1" />
                <Bar dataKey="output" stackId="t" name="output" fill="#075e54" />
              </BarChart>
            </ResponsiveContainer>
          </div>
        </div>
      )}
    </section>
  );
}
