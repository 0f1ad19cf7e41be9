// Headless MCP client built on the official TypeScript SDK (v1), used by
// stdioproxy's interop tests.
//
// Usage: node ts_client.mjs <command> [args...]
//
// Spawns `<command> [args...]` as an MCP stdio server (its stderr is
// inherited), initializes with empty client capabilities, lists every tool
// (following nextCursor), calls the tool named `echo` or ending in `__echo`
// with {"message": "hello interop"} and the tool named `get-sum` or ending in
// `__get-sum` with {"a": 2, "b": 3}, then prints ONE JSON line on stdout:
//
//   {"serverInfo": ..., "protocolVersion": ..., "tools": [...],
//    "echo": <CallToolResult>, "sum": <CallToolResult>}
//
// Exit 0 on success; on any error (or after 30 s) the error goes to stderr
// and the exit code is 1.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const OVERALL_TIMEOUT_MS = 30_000;

function findTool(names, suffix) {
  const name = names.find((n) => n === suffix || n.endsWith(`__${suffix}`));
  if (name === undefined) {
    throw new Error(`no tool named ${suffix} or *__${suffix} in [${names.join(", ")}]`);
  }
  return name;
}

async function listAllTools(client) {
  const names = [];
  let cursor;
  do {
    const page = await client.listTools(cursor === undefined ? {} : { cursor });
    for (const tool of page.tools) names.push(tool.name);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return names;
}

async function run(command, args) {
  const transport = new StdioClientTransport({ command, args, stderr: "inherit" });
  // The SDK calls transport.setProtocolVersion(v) (when defined) with the
  // version the server answered in initialize; the stdio transport does not
  // define it, so this hook is how the negotiated version is observed.
  let protocolVersion = null;
  transport.setProtocolVersion = (version) => {
    protocolVersion = version;
  };

  const client = new Client(
    { name: "stdioproxy-interop-ts-client", version: "1.0.0" },
    { capabilities: {} },
  );
  await client.connect(transport);
  try {
    const tools = await listAllTools(client);
    const echo = await client.callTool({
      name: findTool(tools, "echo"),
      arguments: { message: "hello interop" },
    });
    const sum = await client.callTool({
      name: findTool(tools, "get-sum"),
      arguments: { a: 2, b: 3 },
    });
    return {
      serverInfo: client.getServerVersion() ?? null,
      protocolVersion,
      tools,
      echo,
      sum,
    };
  } finally {
    await client.close();
  }
}

async function main() {
  const [command, ...args] = process.argv.slice(2);
  if (command === undefined) {
    process.stderr.write("usage: node ts_client.mjs <command> [args...]\n");
    process.exit(1);
  }
  const timer = setTimeout(() => {
    process.stderr.write(`ts_client: timed out after ${OVERALL_TIMEOUT_MS} ms\n`);
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  try {
    const report = await run(command, args);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    clearTimeout(timer);
    process.exit(0);
  } catch (err) {
    process.stderr.write(`ts_client: ${err?.stack ?? err}\n`);
    clearTimeout(timer);
    process.exit(1);
  }
}

main();
