// The official TypeScript SDK (v1) client through the shim's client-fitting
// modes, used by stdioproxy's interop tests (tests/e2e/clientfit_interop.rs).
//
// Usage: node ts_fit.mjs <mode> <command> [args...]
//
// Spawns `<command> [args...]` (the shim with its flags) as an MCP stdio
// server, declaring sampling (with a handler that gives a canned answer).
//
// mode "direct" (`--server everything`): lists every tool and prompt, runs
// `trigger-sampling-request` and `trigger-long-running-operation` (with
// progress) under server-everything's own names, calls `echo`.
// mode "search" (`--tools search`): lists tools (expecting the two
// meta-tools), searches for "echo", calls server-everything's hit through `call_tool`,
// and runs the progress tool through `call_tool` too.
//
// Prints ONE JSON line on stdout with what it saw; exit 0 on success, 1 on
// any error (or after 60 s), with the error on stderr.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CallToolResultSchema, CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

import { cannedSampling } from "./canned.mjs";
import { main } from "./report_main.mjs";

const OVERALL_TIMEOUT_MS = 60_000;

async function listAll(method, key, client) {
  const items = [];
  let cursor;
  do {
    const page = await client[method](cursor === undefined ? {} : { cursor });
    items.push(...page[key]);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return items;
}

async function direct(client, calls) {
  const tools = (await listAll("listTools", "tools", client)).map((t) => t.name);
  const prompts = (await listAll("listPrompts", "prompts", client)).map((p) => p.name);
  const echo = await client.callTool({ name: "echo", arguments: { message: "hello direct" } });
  const sampling = await client.callTool({
    name: "trigger-sampling-request",
    arguments: { prompt: "hello", maxTokens: 10 },
  });
  const seen = [];
  const progress = await client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
    CallToolResultSchema,
    { onprogress: (p) => seen.push(p.progress) },
  );
  return {
    serverInfo: client.getServerVersion() ?? null,
    tools,
    prompts,
    echo,
    sampling: { text: sampling.content[0].text, handlerCalls: calls.sampling },
    progress: { progress: seen, text: progress.content[0].text },
  };
}

async function search(client) {
  const tools = await listAll("listTools", "tools", client);
  const found = await client.callTool({ name: "search_tools", arguments: { query: "echo", limit: 5 } });
  const hits = found.structuredContent?.tools ?? [];
  if (hits.length === 0) throw new Error(`search_tools found nothing: ${JSON.stringify(found)}`);
  // Both servers have an echo; server-everything's takes {message}.
  const target = hits.find((h) => h.name === "everything__echo");
  if (target === undefined) throw new Error(`no everything__echo among ${hits.map((h) => h.name)}`);
  const echo = await client.callTool({
    name: "call_tool",
    arguments: { name: target.name, arguments: { message: "hello search" } },
  });
  const seen = [];
  const progress = await client.callTool(
    {
      name: "call_tool",
      arguments: {
        name: "everything__trigger-long-running-operation",
        arguments: { duration: 1, steps: 3 },
      },
    },
    CallToolResultSchema,
    { onprogress: (p) => seen.push(p.progress) },
  );
  return {
    tools: tools.map((t) => ({ name: t.name, description: t.description })),
    hits: hits.map((h) => h.name),
    target,
    echo,
    progress: { progress: seen, text: progress.content[0].text },
  };
}

async function run(mode, command, args) {
  const transport = new StdioClientTransport({ command, args, stderr: "inherit" });
  const client = new Client(
    { name: "stdioproxy-interop-fit", version: "1.0.0" },
    { capabilities: { sampling: {} } },
  );
  const calls = { sampling: 0 };
  client.setRequestHandler(CreateMessageRequestSchema, cannedSampling(calls));
  await client.connect(transport);
  try {
    if (mode === "direct") return await direct(client, calls);
    if (mode === "search") return await search(client);
    throw new Error(`unknown mode ${mode}`);
  } finally {
    await client.close();
  }
}

main("ts_fit", "usage: node ts_fit.mjs <direct|search> <command> [args...]", OVERALL_TIMEOUT_MS, async (argv) => {
  const [mode, command, ...args] = argv;
  if (command === undefined) return null;
  return await run(mode, command, args);
});
