// Browser end-to-end tests: the real `parley serve` binary on a temporary SQLite database, a
// mock OpenAI-compatible model server started here (Chat Completions, streamed as SSE), and
// Debian's Chromium driven by playwright-core. Nothing is downloaded.
//
// Run from web-admin/ after `npm run build` and `cargo build --bin parley`:
//   node e2e/run.mjs            (PARLEY_BIN and CHROMIUM override the binaries' paths)
// Screenshots go to ../target/e2e/. The last line is "N passed, N failed".
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startMockLlm } from "./mock-llm.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const webAdmin = resolve(here, "..");
const repo = resolve(webAdmin, "..");
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, "target");
const parleyBin = process.env.PARLEY_BIN ?? join(targetDir, "debug", "parley");
const chromiumBin = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = join(repo, "target", "e2e");
const dist = join(webAdmin, "dist");

// Secrets typed into the dashboard. None may ever come back in a page or a response.
const SECRETS = {
  providerKey: `sk-e2e-provider-${Math.random().toString(36).slice(2)}`,
  accessToken: `EAAGe2eAccessToken${Math.random().toString(36).slice(2)}`,
  appSecret: `e2e-app-secret-${Math.random().toString(36).slice(2)}`,
};

for (const [what, path] of [
  ["parley binary (cargo build --bin parley)", parleyBin],
  ["Chromium (apt-get install chromium)", chromiumBin],
  ["dashboard build (npm run build)", join(dist, "index.html")],
]) {
  if (!existsSync(path)) {
    console.error(`e2e: missing ${what} at ${path}`);
    process.exit(2);
  }
}

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

async function waitReady(url, child, ms = 30_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`parley exited with ${child.exitCode}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`parley did not become ready at ${url}`);
}

// A tiny runner: tests run in order on one page; a failure is reported and the rest go on.
const results = [];
let onFailure = null;
async function test(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push({ name, status: "passed" });
    console.log(`  PASS  ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    results.push({ name, status: "failed" });
    await onFailure?.(name);
    console.log(`  FAIL  ${name}\n        ${String(e?.stack ?? e).split("\n").slice(0, 6).join("\n        ")}`);
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

const work = mkdtempSync(join(tmpdir(), "parley-e2e-"));
// Fresh artifacts each run, so a screenshot of an old failure cannot mislead.
rmSync(shots, { recursive: true, force: true });
mkdirSync(shots, { recursive: true });
const llm = await startMockLlm();
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const serverLog = [];
const server = spawn(parleyBin, ["serve"], {
  env: {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    PARLEY_LISTEN: `127.0.0.1:${port}`,
    PARLEY_DATABASE_URL: `sqlite://${join(work, "parley.db")}`,
    PARLEY_DATA_DIR: join(work, "data"),
    PARLEY_WEB_ADMIN_DIR: dist,
    PARLEY_COALESCE_WINDOW_MS: "100",
    PARLEY_LLM_TIMEOUT_SECS: "10",
    PARLEY_LLM_MAX_RETRIES: "0",
    PARLEY_HTTP_WORKERS: "2",
    PARLEY_SHUTDOWN_TIMEOUT_SECS: "2",
    PARLEY_LOG_FORMAT: "json",
    PARLEY_LOG_LEVEL: "info",
  },
  stdio: ["ignore", "pipe", "pipe"],
});
server.stdout.on("data", (d) => serverLog.push(String(d)));
server.stderr.on("data", (d) => serverLog.push(String(d)));

let browser;
let exitCode = 1;
try {
  await waitReady(`${base}/readyz`, server);
  browser = await chromium.launch({
    executablePath: chromiumBin,
    headless: true,
    // Containers run as root without user namespaces; Chromium's sandbox needs them.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const nav = page.getByRole("navigation", { name: "Main" });

  // Every API response body, to prove no secret ever comes back.
  const bodies = [];
  page.on("response", async (res) => {
    if (!res.url().startsWith(base)) return;
    const type = res.headers()["content-type"] ?? "";
    if (!type.includes("json")) return;
    try {
      bodies.push({ url: res.url(), text: await res.text() });
    } catch {
      // Streams that are still open (the event log) have no body yet.
    }
  });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  onFailure = (name) => shot(`FAILED-${name.replace(/\W+/g, "-")}`).catch(() => {});
  const noSecretInPage = async (where) => {
    const html = await page.content();
    for (const [what, value] of Object.entries(SECRETS))
      assert(!html.includes(value), `${what} is rendered on ${where}`);
  };

  console.log(`e2e: parley at ${base}, mock LLM at ${llm.url}, screenshots in ${shots}`);

  await test("sign up", async () => {
    await page.goto(`${base}/signup`);
    await page.getByLabel("Your name").fill("Erin Example");
    await page.getByLabel("Email").fill(`erin-${Date.now()}@example.com`);
    await page.getByLabel("Password").fill("a long enough password");
    await page.getByRole("button", { name: "Sign up" }).click();
    await page.getByRole("heading", { name: "Overview" }).waitFor();
    await page.getByText("Nothing to chart yet").waitFor();
    await shot("01-overview-empty");
  });

  await test("an API error is shown on the page with its message", async () => {
    // A provider with an invalid base URL: the server's 400 message appears as it is.
    await nav.getByRole("link", { name: "Providers" }).click();
    await page.getByRole("button", { name: "New provider" }).click();
    await page.getByLabel("Name", { exact: true }).fill("Broken");
    await page.getByLabel("Base URL").fill("not a url");
    await page.getByRole("button", { name: "Save" }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    const text = await alert.innerText();
    assert(/BAD_REQUEST/.test(text) && /baseUrl/i.test(text), `unexpected error banner: ${text}`);
    await shot("02-api-error");
    await page.getByRole("button", { name: "Cancel" }).click();
  });

  await test("create a provider pointing at the mock LLM", async () => {
    await page.getByRole("button", { name: "New provider" }).click();
    await page.getByLabel("Name", { exact: true }).fill("Mock LLM");
    await page.getByLabel("Base URL").fill(`${llm.url}/v1`);
    await page.getByLabel("Default model").fill("mock-model");
    await page.getByLabel("API key").fill(SECRETS.providerKey);
    await page.getByRole("button", { name: "Save" }).click();
    const row = page.getByRole("row", { name: /Mock LLM/ });
    await row.waitFor();
    assert((await row.innerText()).includes("********"), "the key is not shown masked");
    await noSecretInPage("providers");
    await shot("03-providers");
  });

  await test("create a bot and try it", async () => {
    await nav.getByRole("link", { name: "Bots" }).click();
    await page.getByText("No bots yet").waitFor();
    await page.getByRole("button", { name: "New bot" }).click();
    await page.getByLabel("Name", { exact: true }).fill("Helper");
    await page.getByLabel("Backstory").fill("You help people in the sandbox.");
    await page.getByRole("button", { name: "Save" }).click();
    const card = page.getByRole("article", { name: "Bot Helper" });
    await card.waitFor();
    await card.getByLabel("Try it").fill("ping");
    await card.getByRole("button", { name: "Send" }).click();
    await card.getByText("Echo: ping").waitFor();
    await shot("04-bots");
  });

  await test("create a sandbox integration and chat with the bot", async () => {
    await nav.getByRole("link", { name: "Sandbox" }).click();
    await page.getByRole("button", { name: "Create sandbox" }).click();
    const phone = page.getByLabel("Sandbox phone");
    await phone.waitFor();
    await phone.getByLabel("Message").fill("hello there");
    await phone.getByLabel("Message").press("Enter");
    await phone.getByText("Echo: hello there").waitFor();
    // The phone's own message got read receipts from the engine's mark-read.
    await phone.locator(".wa-row.right .ticks.read").first().waitFor();
    await shot("05-sandbox-chat");
  });

  await test("run setup on the sandbox integration shows Meta's answer", async () => {
    await page.getByRole("link", { name: "Sandbox integration" }).click();
    await page.getByRole("button", { name: "Run setup" }).click();
    const answer = page.getByRole("status").filter({ hasText: "Meta says" });
    await answer.waitFor();
    assert((await answer.innerText()).includes("Parley Sandbox"), "setup did not reach the sandbox's Graph API");
    await shot("05b-sandbox-integration");
    await nav.getByRole("link", { name: "Sandbox" }).click();
    await page.getByLabel("Sandbox phone").getByText("Echo: hello there").waitFor();
  });

  await test("click a reply button the bot sent and see the next reply", async () => {
    const phone = page.getByLabel("Sandbox phone");
    await phone.getByLabel("Message").fill("show me buttons");
    await phone.getByRole("button", { name: "Send" }).click();
    const yes = phone.getByRole("button", { name: "Yes", exact: true });
    await yes.waitFor({ timeout: 10_000 });
    assert(llm.sawTool("send_buttons"), "the model was never offered send_buttons");
    await yes.click();
    await phone.getByText("You chose: Yes").waitFor();
    const tap = llm.requests.find((r) => JSON.stringify(r.messages ?? []).includes("Yes"));
    assert(tap, "the model never saw the tapped button");
    await shot("06-sandbox-buttons");
  });

  await test("open the conversation and see its events", async () => {
    await nav.getByRole("link", { name: "Conversations" }).click();
    await page.getByLabel("Search conversations").fill("Sandbox");
    await page.locator(".conv-item").first().click();
    const timeline = page.getByRole("log", { name: "Timeline" });
    await timeline.getByText("hello there").first().waitFor();
    await timeline.getByText("Echo: hello there").waitFor();
    // Delivery ticks from the statuses the sandbox reported as Meta.
    await timeline.locator(".wa-row.right .ticks").first().waitFor();
    const events = page.getByLabel("Conversation events");
    await events.getByText("whatsapp.message.received").first().waitFor();
    await page.getByLabel("Contact").getByText("Sandbox user").waitFor();
    await shot("07-conversation");
  });

  await test("the event log streams live", async () => {
    await nav.getByRole("link", { name: "Event log" }).click();
    await page.getByText("● live").waitFor();
    await page.getByRole("cell", { name: "whatsapp.sandbox.created" }).waitFor();
    await page.getByLabel("Level").selectOption("error");
    await page.getByText("No events yet").waitFor();
    await shot("08-events");
  });

  await test("create a WhatsApp integration and see the masked token", async () => {
    await nav.getByRole("link", { name: "WhatsApp" }).click();
    await page.getByRole("button", { name: "New integration" }).click();
    await page.getByLabel("Name", { exact: true }).fill("Shop number");
    await page.getByLabel("Phone number id").fill("106540352242922");
    await page.getByLabel("Access token").fill(SECRETS.accessToken);
    await page.getByLabel("App secret").fill(SECRETS.appSecret);
    await page.getByRole("button", { name: "Create" }).click();
    await page.getByRole("heading", { name: "Shop number" }).waitFor();
    const token = page.locator('[data-secret="accessToken"]');
    assert((await token.innerText()) === "********", "the access token is not masked");
    assert((await page.locator('[data-secret="appSecret"]').innerText()) === "********", "the app secret is not masked");
    await page.getByText("Callback URL", { exact: true }).waitFor();
    await page.getByRole("button", { name: "Copy verify token" }).waitFor();
    await noSecretInPage("the integration");
    await shot("09-integration");
  });

  await test("the layout works at phone width with the keyboard", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await nav.getByRole("link", { name: "Sandbox" }).click();
    const phone = page.getByLabel("Sandbox phone");
    await phone.waitFor();
    const box = await phone.boundingBox();
    assert(box && box.width <= 390, `the phone is ${box?.width}px wide on a 390px screen`);
    // Keyboard: from the top of the page, the skip link is the first stop.
    await page.reload();
    await phone.waitFor();
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => document.activeElement?.textContent ?? "");
    assert(focused.includes("Skip to content"), `first Tab stop is ${focused}`);
    await shot("10-phone-width");
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  await test("no secret is ever rendered or returned", async () => {
    await noSecretInPage("the last page");
    for (const b of bodies)
      for (const [what, value] of Object.entries(SECRETS))
        assert(!b.text.includes(value), `${what} came back from ${b.url}`);
    assert(bodies.length > 10, `only ${bodies.length} responses were checked`);
    assert(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
  });

  await context.close();
  exitCode = results.some((r) => r.status === "failed") ? 1 : 0;
} catch (e) {
  console.error("e2e: could not run:", e);
  exitCode = 1;
} finally {
  await browser?.close().catch(() => {});
  server.kill("SIGTERM");
  await new Promise((r) => {
    if (server.exitCode !== null) return r();
    const t = setTimeout(() => {
      server.kill("SIGKILL");
      r();
    }, 5000);
    server.once("exit", () => {
      clearTimeout(t);
      r();
    });
  });
  await llm.close();
  writeFileSync(join(shots, "parley.log"), serverLog.join(""));
  if (exitCode !== 0) console.error(`e2e: the server's log is in ${join(shots, "parley.log")}`);
  rmSync(work, { recursive: true, force: true });
}
const count = (s) => results.filter((r) => r.status === s).length;
console.log(`${count("passed")} passed, ${count("failed")} failed`);
process.exit(exitCode);
