// A TS SDK (v1) client that keeps ONE session across a daemon restart.
// Used by tests/e2e/resume.rs.
//
// Usage: node resume_ts.mjs <command> [args...]
//
// Spawns `<command> [args...]` (the shim) as its stdio server, initializes,
// calls `alpha__echo` {"text": "before"}, prints {"phase":"ready"} and waits
// for one line on stdin (the test restarts the daemon meanwhile), then calls
// `alpha__echo` {"text": "after"} on the same session and prints
// {"phase":"done", "before": ..., "after": ..., "listChanged": <count>,
//  "serverInfo": ...}. Any error (or 60 s) exits 1 with the error on stderr.

import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const OVERALL_TIMEOUT_MS = 60_000;

function text(result) {
  return result.content?.[0]?.text ?? null;
}

async function run(command, args) {
  const transport = new StdioClientTransport({ command, args, stderr: "inherit" });
  const client = new Client({ name: "resume-ts", version: "1.0.0" }, { capabilities: {} });
  let listChanged = 0;
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    listChanged += 1;
  });
  let closed = false;
  client.onclose = () => {
    closed = true;
  };
  await client.connect(transport);
  const before = text(await client.callTool({ name: "alpha__echo", arguments: { text: "before" } }));
  const lines = createInterface({ input: process.stdin });
  const go = new Promise((resolve) => lines.once("line", resolve));
  process.stdout.write(JSON.stringify({ phase: "ready" }) + "\n");
  await go;
  lines.close();
  const after = text(await client.callTool({ name: "alpha__echo", arguments: { text: "after" } }));
  const report = {
    phase: "done",
    before,
    after,
    listChanged,
    closed,
    serverInfo: client.getServerVersion(),
  };
  await client.close();
  return report;
}

const [command, ...args] = process.argv.slice(2);
if (command === undefined) {
  console.error("usage: node resume_ts.mjs <command> [args...]");
  process.exit(2);
}
const timer = setTimeout(() => {
  console.error(`resume_ts.mjs: timed out after ${OVERALL_TIMEOUT_MS} ms`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);
try {
  const report = await run(command, args);
  clearTimeout(timer);
  process.stdout.write(JSON.stringify(report) + "\n");
  process.exit(0);
} catch (e) {
  console.error(`resume_ts.mjs: ${e?.stack ?? e}`);
  process.exit(1);
}
