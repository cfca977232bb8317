// A mock OpenAI-compatible model server speaking the real Chat Completions wire format:
// `POST /v1/chat/completions`, streamed as SSE chunks ending with `data: [DONE]` (or one JSON
// answer when `stream` is false).
//
// What it answers, from the newest user message:
// - "…buttons…", when the request offers a `send_buttons` tool: a call to it with a Yes and a
//   No button (arguments shaped by the tool's own JSON schema), then, given the tool's result,
//   a short text;
// - a tap on the "Yes" or "No" button (or just "Yes" or "No"): "You chose: Yes";
// - anything else: "Echo: " and the text.
import { createServer } from "node:http";

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (typeof p?.text === "string" ? p.text : "")).join("");
  return "";
}

function toolNamed(body, name) {
  return (body.tools ?? []).find((t) => t?.function?.name === name || t?.name === name);
}

/** Arguments for `send_buttons`, following whatever field names its schema uses. */
function buttonArgs(tool) {
  const props = tool?.function?.parameters?.properties ?? tool?.input_schema?.properties ?? {};
  const bodyKey = ["body", "text", "message", "body_text"].find((k) => k in props) ?? "body";
  const listKey = ["buttons", "options", "replies"].find((k) => k in props) ?? "buttons";
  const item = props[listKey]?.items?.properties ?? {};
  const idKey = ["id", "button_id", "payload"].find((k) => k in item) ?? "id";
  const titleKey = ["title", "text", "label"].find((k) => k in item) ?? "title";
  const button = (id, title) => ({ [idKey]: id, [titleKey]: title });
  return { [bodyKey]: "Do you want it?", [listKey]: [button("opt_yes", "Yes"), button("opt_no", "No")] };
}

function decide(body) {
  const messages = body.messages ?? [];
  const last = messages[messages.length - 1];
  if (last?.role === "tool") return { text: "Tap a button above." };
  const user = [...messages].reverse().find((m) => m.role === "user");
  const said = textOf(user?.content).trim();
  const tool = toolNamed(body, "send_buttons");
  // Parley spells a tap out with the button's title and id (and the message it answers).
  const tapped =
    said.match(/tapped the button "(Yes|No)"/) ?? (said.length <= 40 ? said.match(/\b(Yes|No)\b/) : null);
  if (tapped) return { text: `You chose: ${tapped[1]}` };
  // After the tap check: a tap quotes the buttons message, whose text mentions buttons.
  if (/buttons/i.test(said) && tool) return { tool: { name: "send_buttons", args: buttonArgs(tool) } };
  return { text: `Echo: ${said}` };
}

const usage = { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 };

function chunk(model, delta, finish = null, extra = {}) {
  return {
    id: "chatcmpl-e2e",
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, delta, finish_reason: finish }],
    ...extra,
  };
}

export async function startMockLlm() {
  const requests = [];
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", () => {
      if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "not found", type: "invalid_request_error" } }));
        return;
      }
      let body;
      try {
        body = JSON.parse(raw);
      } catch {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "invalid JSON", type: "invalid_request_error" } }));
        return;
      }
      requests.push(body);
      const model = body.model ?? "mock-model";
      const answer = decide(body);
      if (!body.stream) {
        const message = answer.tool
          ? {
              role: "assistant",
              content: null,
              tool_calls: [
                { id: "call_e2e_1", type: "function", function: { name: answer.tool.name, arguments: JSON.stringify(answer.tool.args) } },
              ],
            }
          : { role: "assistant", content: answer.text };
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            id: "chatcmpl-e2e",
            object: "chat.completion",
            created: Math.floor(Date.now() / 1000),
            model,
            choices: [{ index: 0, message, finish_reason: answer.tool ? "tool_calls" : "stop" }],
            usage,
          }),
        );
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      const send = (obj) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
      if (answer.tool) {
        const args = JSON.stringify(answer.tool.args);
        const cut = Math.floor(args.length / 2);
        send(
          chunk(model, {
            role: "assistant",
            content: null,
            tool_calls: [{ index: 0, id: "call_e2e_1", type: "function", function: { name: answer.tool.name, arguments: "" } }],
          }),
        );
        send(chunk(model, { tool_calls: [{ index: 0, function: { arguments: args.slice(0, cut) } }] }));
        send(chunk(model, { tool_calls: [{ index: 0, function: { arguments: args.slice(cut) } }] }));
        send(chunk(model, {}, "tool_calls"));
      } else {
        const words = answer.text.split(/(?<= )/);
        send(chunk(model, { role: "assistant", content: "" }));
        for (const w of words) send(chunk(model, { content: w }));
        send(chunk(model, {}, "stop"));
      }
      // With stream_options.include_usage, usage comes in a last chunk without choices.
      send({ id: "chatcmpl-e2e", object: "chat.completion.chunk", created: 0, model, choices: [], usage });
      res.end("data: [DONE]\n\n");
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    /** Whether any request so far offered the tool `name` to the model. */
    sawTool: (name) => requests.some((r) => !!toolNamed(r, name)),
    close: () => new Promise((ok) => server.close(() => ok())),
  };
}
