// Headless MCP client built on the official TypeScript SDK v2
// (`@modelcontextprotocol/client` 2.4.0), used by stdioproxy's era tests.
//
// Usage: node ts2_client.mjs <mode> <scenario> <command> [args...]
//   mode:     legacy | auto | pin   (pin = { pin: '2026-07-28' })
//   scenario: a comma-separated list of steps, run in order:
//     list      list every tool (all pages)
//     echo      call the tool named echo / *__echo {"message":"hello era"}
//     progress  call *__slow {steps:3, ms:50} (or *__trigger-long-running-operation
//               {duration:1, steps:3}) with an onprogress callback
//     cancel    start the same slow call with many steps and abort it after
//               the first progress notification
//     sample    call *__sample {prompt} (or *__trigger-sampling-request
//               {prompt, maxTokens}); the client answers sampling with
//               "canned reply"
//     elicit    call *__ask-name (or *__trigger-elicitation-request); the
//               client accepts with {name: "Ada"}
//     prompt    list prompts and get the first one with a "name" argument
//     read      list resources and read the first
//
// With env ERA_PREFER=<server>, a tool or prompt of that server is picked
// first (when several servers have one with the wanted name).
//
// Prints ONE JSON line on stdout: {"era": ..., "version": ...,
// "serverInfo": ..., "results": {<step>: ...}}; exit 1 with the error on
// stderr on failure (or after 30 s).

import { Client } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { exitWhenDone } from "./canned.mjs";

const OVERALL_TIMEOUT_MS = 30_000;

const PREFER = process.env.ERA_PREFER;

function findTool(names, ...suffixes) {
  if (PREFER !== undefined) {
    for (const suffix of suffixes) {
      const name = names.find((n) => n === `${PREFER}__${suffix}`);
      if (name !== undefined) return name;
    }
  }
  for (const suffix of suffixes) {
    const name = names.find((n) => n === suffix || n.endsWith(`__${suffix}`));
    if (name !== undefined) return name;
  }
  throw new Error(`no tool named ${suffixes.join(" or ")} in [${names.join(", ")}]`);
}

function text(result) {
  return (result.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
}

async function main() {
  const [mode, scenario, command, ...args] = process.argv.slice(2);
  const negotiation =
    mode === "pin" ? { mode: { pin: "2026-07-28" } } : mode === "auto" ? { mode: "auto" } : { mode: "legacy" };
  const client = new Client(
    { name: "stdioproxy-era-ts2-client", version: "1.0.0" },
    {
      capabilities: { sampling: {}, elicitation: { form: {} } },
      versionNegotiation: negotiation,
    },
  );
  const asked = { sampling: [], elicitation: [] };
  client.setRequestHandler("sampling/createMessage", async (req) => {
    asked.sampling.push(req.params);
    return { role: "assistant", content: { type: "text", text: "canned reply" }, model: "stub", stopReason: "endTurn" };
  });
  client.setRequestHandler("elicitation/create", async (req) => {
    asked.elicitation.push(req.params.message);
    return { action: "accept", content: { name: "Ada" } };
  });
  const transport = new StdioClientTransport({ command, args, stderr: "inherit" });
  await client.connect(transport);
  const results = {};
  let tools = [];
  const toolNames = async () => {
    if (tools.length === 0) tools = (await client.listTools()).tools.map((t) => t.name);
    return tools;
  };
  for (const step of scenario.split(",")) {
    switch (step) {
      case "list":
        results.list = await toolNames();
        break;
      case "echo": {
        const r = await client.callTool({ name: findTool(await toolNames(), "echo"), arguments: { message: "hello era" } });
        results.echo = text(r);
        break;
      }
      case "progress": {
        const names = await toolNames();
        const slow = findTool(names, "slow", "trigger-long-running-operation");
        const progress = [];
        const r = await client.callTool(
          { name: slow, arguments: slow.endsWith("slow") ? { steps: 3, ms: 50 } : { duration: 1, steps: 3 } },
          { onprogress: (p) => progress.push(p.progress) },
        );
        results.progress = { text: text(r), progress };
        break;
      }
      case "cancel": {
        const names = await toolNames();
        const slow = findTool(names, "slow", "trigger-long-running-operation");
        const controller = new AbortController();
        let first;
        const firstProgress = new Promise((resolve) => (first = resolve));
        const call = client.callTool(
          { name: slow, arguments: slow.endsWith("slow") ? { steps: 100, ms: 100 } : { duration: 20, steps: 100 } },
          { signal: controller.signal, onprogress: () => first() },
        );
        await firstProgress;
        controller.abort("stop");
        try {
          await call;
          results.cancel = "completed";
        } catch (e) {
          results.cancel = "aborted";
        }
        // The session must still work after a cancellation.
        const r = await client.callTool({ name: findTool(names, "echo"), arguments: { message: "after cancel" } });
        results.afterCancel = text(r);
        break;
      }
      case "sample": {
        const names = await toolNames();
        const name = findTool(names, "sample", "trigger-sampling-request");
        const r = await client.callTool({
          name,
          arguments: name.endsWith("__sample") || name === "sample" ? { prompt: "say hi" } : { prompt: "say hi", maxTokens: 20 },
        });
        results.sample = { text: text(r), asked: asked.sampling.length };
        break;
      }
      case "elicit": {
        const names = await toolNames();
        const r = await client.callTool({ name: findTool(names, "ask-name", "trigger-elicitation-request"), arguments: {} });
        results.elicit = { text: text(r), asked: asked.elicitation };
        break;
      }
      case "prompt": {
        const prompts = (await client.listPrompts()).prompts;
        const mine = PREFER === undefined ? prompts : prompts.filter((x) => x.name.startsWith(`${PREFER}__`));
        const p = mine.find((x) => (x.arguments ?? []).some((a) => a.name === "name")) ?? mine[0];
        const r = await client.getPrompt({ name: p.name, arguments: { name: "Ada" } });
        results.prompt = r.messages.map((m) => m.content.text);
        break;
      }
      case "read": {
        const all = (await client.listResources()).resources;
        const mine = PREFER === undefined ? all : all.filter((x) => x.name.startsWith(`${PREFER}__`));
        const r = await client.readResource({ uri: mine[0].uri });
        results.read = r.contents.map((c) => c.text ?? c.blob);
        break;
      }
      default:
        throw new Error(`unknown step ${step}`);
    }
  }
  const out = {
    era: client.getNegotiatedProtocolVersion?.() ?? null,
    serverInfo: client.getServerVersion?.() ?? null,
    results,
  };
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

exitWhenDone("ts2_client", OVERALL_TIMEOUT_MS, main);
