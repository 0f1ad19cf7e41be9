// A 2026-07-28-only MCP server built on the official TypeScript SDK v2
// (`@modelcontextprotocol/server` 2.4.0), used by stdioproxy's era tests as
// a modern-only child: `serveStdio(factory, { legacy: 'reject' })` answers a
// legacy `initialize` with -32022, so only a proxy that speaks 2026-07-28
// to it (per-request `_meta`, MRTR) can use it.
//
// Usage: node modern_server.mjs
//
// With env MODERN_TOOLS_TTL_MS=<n>, tools/list results carry ttlMs <n> and
// cacheScope "public" (the SDK's default is 0 and "private").
//
// Tools:
//   echo {message}            -> text "Echo: <message>"
//   get-sum {a, b}            -> text "<a+b>"
//   slow {steps, ms}          -> one progress notification per step, then
//                                "done after <steps> steps"; honours
//                                cancellation (stops early, never answers)
//   ask-name {}               -> MRTR: an embedded form elicitation
//                                ("What is your name?"), then
//                                "Hello, <name>!" (or "declined")
//   sample {prompt}           -> MRTR: an embedded sampling request, then
//                                "model said: <text>"
//   touch {}                  -> sends notifications/resources/updated for
//                                modern://note (to the listens that asked
//                                for it), then "touched"
// Prompt:  greet {name}       -> one user message "Say hello to <name>"
// Resource: modern://note     -> text "a note from a modern server"

import { McpServer, inputRequired, acceptedContent } from "@modelcontextprotocol/server";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import * as z from "zod";

const TOOLS_TTL = process.env.MODERN_TOOLS_TTL_MS;

function factory() {
  const server = new McpServer(
    { name: "modern-fixture", version: "1.0.0" },
    {
      capabilities: { tools: {}, prompts: {}, resources: { subscribe: true } },
      instructions: "A modern-only test server.",
      ...(TOOLS_TTL === undefined
        ? {}
        : { cacheHints: { "tools/list": { ttlMs: Number(TOOLS_TTL), cacheScope: "public" } } }),
    },
  );

  server.registerTool(
    "echo",
    { description: "Echoes its input", inputSchema: z.object({ message: z.string() }) },
    async ({ message }) => ({ content: [{ type: "text", text: `Echo: ${message}` }] }),
  );

  server.registerTool(
    "get-sum",
    { description: "Adds two numbers", inputSchema: z.object({ a: z.number(), b: z.number() }) },
    async ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }] }),
  );

  server.registerTool(
    "slow",
    {
      description: "Reports progress once per step",
      inputSchema: z.object({ steps: z.number(), ms: z.number() }),
    },
    async ({ steps, ms }, ctx) => {
      for (let i = 1; i <= steps; i++) {
        await new Promise((resolve) => setTimeout(resolve, ms));
        if (ctx.mcpReq.signal?.aborted) {
          process.stderr.write(`modern-fixture: slow cancelled at step ${i}\n`);
          throw new Error("cancelled");
        }
        await ctx.mcpReq.notify({
          method: "notifications/progress",
          params: { progressToken: ctx.mcpReq._meta?.progressToken, progress: i, total: steps },
        }).catch(() => {});
      }
      return { content: [{ type: "text", text: `done after ${steps} steps` }] };
    },
  );

  server.registerTool(
    "ask-name",
    { description: "Asks the user for a name (MRTR elicitation)", inputSchema: z.object({}) },
    async (_args, ctx) => {
      const responses = ctx.mcpReq.inputResponses;
      const answer = responses?.name;
      if (answer === undefined) {
        return inputRequired({
          inputRequests: {
            name: inputRequired.elicit({
              message: "What is your name?",
              requestedSchema: {
                type: "object",
                properties: { name: { type: "string" } },
                required: ["name"],
              },
            }),
          },
          requestState: "ask-name-round-1",
        });
      }
      const content = acceptedContent(responses, "name");
      const text = content ? `Hello, ${content.name}!` : `declined (${answer.action})`;
      return { content: [{ type: "text", text }] };
    },
  );

  server.registerTool(
    "sample",
    { description: "Asks the client's model (MRTR sampling)", inputSchema: z.object({ prompt: z.string() }) },
    async ({ prompt }, ctx) => {
      const answer = ctx.mcpReq.inputResponses?.llm;
      if (answer === undefined) {
        return inputRequired({
          inputRequests: {
            llm: inputRequired.createMessage({
              messages: [{ role: "user", content: { type: "text", text: prompt } }],
              maxTokens: 50,
            }),
          },
        });
      }
      const text = answer.content?.type === "text" ? answer.content.text : JSON.stringify(answer);
      return { content: [{ type: "text", text: `model said: ${text}` }] };
    },
  );

  server.registerTool(
    "touch",
    { description: "Reports an update of modern://note", inputSchema: z.object({}) },
    async () => {
      await server.server.sendResourceUpdated({ uri: "modern://note" });
      return { content: [{ type: "text", text: "touched" }] };
    },
  );

  server.registerPrompt(
    "greet",
    { description: "Greets someone", argsSchema: z.object({ name: z.string() }) },
    async ({ name }) => ({
      messages: [{ role: "user", content: { type: "text", text: `Say hello to ${name}` } }],
    }),
  );

  server.registerResource(
    "note",
    "modern://note",
    { mimeType: "text/plain", description: "A note" },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "a note from a modern server" }] }),
  );

  return server;
}

serveStdio(factory, { legacy: "reject" });
