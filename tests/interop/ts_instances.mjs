// Two official TypeScript SDK (v1) clients, each through its own
// stdioproxy-shim, against a per-client or per-workspace server; used by
// stdioproxy's instance interop tests (tests/e2e/instances.rs).
//
// Usage: node ts_instances.mjs <mode> <dir1> <dir2> <command> [args...]
//
// Client one runs `<command> [args...]` with working directory <dir1>,
// client two with <dir2>. Prints ONE JSON line on stdout:
//
// - mode "memory" (server-memory as `memory`, per-client): each client
//   creates an entity named after itself, then reads the whole graph:
//   {"one": [entity names client one sees], "two": [...]}
// - mode "filesystem" (server-filesystem as `fs`, per-workspace): each client
//   lists its allowed directories and its working directory, and tries to
//   read `<the other dir>/secret.txt`:
//   {"one": {"allowed": text, "listing": text, "other": {"isError", "text"}}, "two": ...}
//
// Exit 0 on success; on any error (or after 60 s) the error goes to stderr
// and the exit code is 1.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { exitWhenDone } from "./canned.mjs";

const OVERALL_TIMEOUT_MS = 60_000;

async function connect(command, args, cwd, name) {
  const transport = new StdioClientTransport({ command, args, cwd, stderr: "inherit" });
  const client = new Client({ name, version: "1.0.0" }, { capabilities: {} });
  await client.connect(transport);
  return client;
}

function text(result) {
  return (result.content ?? [])
    .filter((c) => c.type === "text")
    .map((c) => c.text)
    .join("\n");
}

async function memory(one, two) {
  await one.callTool({
    name: "memory__create_entities",
    arguments: { entities: [{ name: "made-by-one", entityType: "test", observations: ["1"] }] },
  });
  await two.callTool({
    name: "memory__create_entities",
    arguments: { entities: [{ name: "made-by-two", entityType: "test", observations: ["2"] }] },
  });
  const names = async (client) => {
    const graph = await client.callTool({ name: "memory__read_graph", arguments: {} });
    const parsed = graph.structuredContent ?? JSON.parse(text(graph));
    return parsed.entities.map((e) => e.name).sort();
  };
  return { one: await names(one), two: await names(two) };
}

async function filesystem(one, two, dir1, dir2) {
  const probe = async (client, own, other) => {
    // server-filesystem asks for its roots after it initialized and
    // answers calls meanwhile: wait (bounded) until it has them.
    let allowed;
    for (let i = 0; i < 100; i++) {
      allowed = await client.callTool({ name: "fs__list_allowed_directories", arguments: {} });
      if (text(allowed).includes("/")) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const listing = await client.callTool({ name: "fs__list_directory", arguments: { path: own } });
    const foreign = await client.callTool({
      name: "fs__read_text_file",
      arguments: { path: `${other}/secret.txt` },
    });
    return {
      allowed: text(allowed),
      listing: text(listing),
      other: { isError: foreign.isError === true, text: text(foreign) },
    };
  };
  return { one: await probe(one, dir1, dir2), two: await probe(two, dir2, dir1) };
}

async function main() {
  const [mode, dir1, dir2, command, ...args] = process.argv.slice(2);
  if (!command) {
    throw new Error("usage: node ts_instances.mjs <memory|filesystem> <dir1> <dir2> <command> [args...]");
  }
  const one = await connect(command, args, dir1, "interop-one");
  const two = await connect(command, args, dir2, "interop-two");
  try {
    const report =
      mode === "memory" ? await memory(one, two) : await filesystem(one, two, dir1, dir2);
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await one.close();
    await two.close();
  }
}

exitWhenDone("ts_instances.mjs", OVERALL_TIMEOUT_MS, main);
