// The MCP surface beyond tools, driven by the official TypeScript SDK (v1)
// client through stdioproxy-shim, against server-everything as a shared
// child (configured as server `everything`, with roots = [<ROOT>]).
//
// Usage: node ts_surface.mjs <root-uri> <command> [args...]
//
// The client declares sampling, elicitation and roots (with handlers that
// answer canned results and record that they were called), then exercises
// prompts, completion, resources, templates, subscriptions, logging,
// sampling, elicitation, roots, progress and tasks. It prints ONE JSON line
// on stdout: {"<step>": <what it saw>, ...}; a step that threw has
// {"error": "<message>"} instead. Exit 0 when it ran (the test judges the
// report), 1 when it could not connect, or after 60 s.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CallToolResultSchema,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { cannedSampling } from "./canned.mjs";

const OVERALL_TIMEOUT_MS = 60_000;

function waitFor(list, pred, ms) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      const hit = list.find(pred);
      if (hit !== undefined) return resolve(hit);
      if (Date.now() - started > ms) return reject(new Error(`not seen within ${ms} ms`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

async function run(rootUri, command, args) {
  const transport = new StdioClientTransport({ command, args, stderr: "inherit" });
  const client = new Client(
    { name: "stdioproxy-interop-surface", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
  );
  const calls = { sampling: 0, elicitation: 0, roots: 0 };
  client.setRequestHandler(CreateMessageRequestSchema, cannedSampling(calls));
  client.setRequestHandler(ElicitRequestSchema, async () => {
    calls.elicitation += 1;
    return { action: "accept", content: { color: "red", number: 7, pets: "cats" } };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    calls.roots += 1;
    return { roots: [{ uri: "file:///client/should/not/be/asked", name: "client" }] };
  });
  const updates = [];
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updates.push(n.params));
  const logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params));

  await client.connect(transport);
  const report = { serverInfo: client.getServerVersion() ?? null, capabilities: client.getServerCapabilities() };
  const step = async (name, fn) => {
    try {
      report[name] = await fn();
    } catch (err) {
      report[name] = { error: String(err?.message ?? err) };
    }
  };
  try {
    const tools = (await client.listTools()).tools.map((t) => t.name);
    report.tools = tools;
    await step("prompts", async () => (await client.listPrompts()).prompts.map((p) => p.name));
    await step("prompt", async () =>
      client.getPrompt({ name: "everything__args-prompt", arguments: { city: "Paris", state: "TX" } }));
    await step("completion", async () =>
      (await client.complete({
        ref: { type: "ref/prompt", name: "everything__completable-prompt" },
        argument: { name: "department", value: "E" },
      })).completion.values);
    await step("resources", async () => (await client.listResources()).resources.slice(0, 3));
    await step("templates", async () =>
      (await client.listResourceTemplates()).resourceTemplates.map((t) => [t.uriTemplate, t.name]));
    await step("read_static", async () => {
      const first = (await client.listResources()).resources[0];
      return (await client.readResource({ uri: first.uri })).contents[0];
    });
    await step("read_template", async () =>
      (await client.readResource({ uri: "demo://resource/dynamic/text/42" })).contents[0]);
    await step("subscribe", async () => {
      const uri = (await client.listResources()).resources[0].uri;
      await client.subscribeResource({ uri });
      await client.callTool({ name: "everything__toggle-subscriber-updates", arguments: {} });
      const seen = await waitFor(updates, (u) => u.uri === uri, 15_000);
      await client.callTool({ name: "everything__toggle-subscriber-updates", arguments: {} });
      await client.unsubscribeResource({ uri });
      return seen;
    });
    await step("logging", async () => {
      await client.setLoggingLevel("debug");
      // server-everything acknowledges a subscribe with an info message.
      await client.subscribeResource({ uri: "demo://resource/dynamic/text/1" });
      await client.unsubscribeResource({ uri: "demo://resource/dynamic/text/1" });
      return await waitFor(logs, (l) => String(l.data).includes("Subscribe"), 10_000);
    });
    await step("sampling", async () => {
      const r = await client.callTool({
        name: "everything__trigger-sampling-request",
        arguments: { prompt: "hello", maxTokens: 10 },
      });
      return { text: r.content[0].text, handlerCalls: calls.sampling };
    });
    await step("elicitation", async () => {
      const r = await client.callTool({ name: "everything__trigger-elicitation-request", arguments: {} });
      return { text: r.content.map((c) => c.text ?? "").join("\n"), handlerCalls: calls.elicitation };
    });
    await step("roots", async () => {
      const r = await client.callTool({ name: "everything__get-roots-list", arguments: {} });
      return { text: r.content[0].text, rootUri, handlerCalls: calls.roots };
    });
    await step("progress", async () => {
      const seen = [];
      const r = await client.callTool(
        { name: "everything__trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
        CallToolResultSchema,
        { onprogress: (p) => seen.push(p.progress) },
      );
      return { progress: seen, text: r.content[0].text };
    });
    await step("task", async () => {
      const seen = [];
      const stream = client.experimental.tasks.callToolStream(
        { name: "everything__simulate-research-query", arguments: { topic: "proxies" } },
        CallToolResultSchema,
        { task: { ttl: 60_000 } },
      );
      let taskId = null;
      for await (const message of stream) {
        seen.push(message.type);
        if (message.type === "taskCreated") taskId = message.task.taskId;
        if (message.type === "result") {
          const listed = (await client.experimental.tasks.listTasks()).tasks.map((t) => t.taskId);
          const got = await client.experimental.tasks.getTask(taskId);
          return { taskId, seen, status: got.status, listed, text: message.result.content[0].text };
        }
        if (message.type === "error") throw message.error;
      }
      throw new Error(`stream ended without a result: ${seen}`);
    });
  } finally {
    await client.close();
  }
  return report;
}

async function main() {
  const [rootUri, command, ...args] = process.argv.slice(2);
  if (command === undefined) {
    process.stderr.write("usage: node ts_surface.mjs <root-uri> <command> [args...]\n");
    process.exit(1);
  }
  const timer = setTimeout(() => {
    process.stderr.write(`ts_surface: timed out after ${OVERALL_TIMEOUT_MS} ms\n`);
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  try {
    const report = await run(rootUri, command, args);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    clearTimeout(timer);
    process.exit(0);
  } catch (err) {
    process.stderr.write(`ts_surface: ${err?.stack ?? err}\n`);
    clearTimeout(timer);
    process.exit(1);
  }
}

main();
