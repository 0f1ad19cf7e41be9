"""Headless MCP client on the official Python SDK 2.x (``mcp`` 2.3.0), for
stdioproxy's era tests.

Usage: python py_era_client.py <mode> <steps> <command> [args...]
  mode:  legacy | auto | 2026-07-28 (the SDK's ``Client.mode``)
  steps: comma-separated, run in order:
    list      list every tool
    echo      call echo / *__echo {"message": "hello era"}
    progress  call *__slow {steps: 3, ms: 50} (or
              *__trigger-long-running-operation {duration: 1, steps: 3})
              and record the progress values
    sample    call *__sample {prompt} (or *__trigger-sampling-request);
              sampling is answered with "canned reply"
    elicit    call *__ask-name (or *__trigger-elicitation-request);
              elicitation is accepted with {"name": "Ada"}

With env ERA_PREFER=<server>, that server's tool is picked first.

Prints ONE JSON line: {"version": ..., "results": {...}}; exits 1 with the
error on stderr on failure (or after 30 s).
"""

import asyncio
import json
import os
import sys

from mcp import Client, StdioServerParameters, types


def find(names, *suffixes):
    prefer = os.environ.get("ERA_PREFER")
    if prefer:
        for suffix in suffixes:
            if f"{prefer}__{suffix}" in names:
                return f"{prefer}__{suffix}"
    for suffix in suffixes:
        for n in names:
            if n == suffix or n.endswith("__" + suffix):
                return n
    raise RuntimeError(f"no tool named {' or '.join(suffixes)} in {names}")


def text(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def sampling(_context, params):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="canned reply"),
        model="stub",
        stop_reason="endTurn",
    )


async def elicitation(_context, params):
    return types.ElicitResult(action="accept", content={"name": "Ada"})


async def main():
    mode, steps, command, *args = sys.argv[1:]
    results = {}
    async with Client(
        StdioServerParameters(command=command, args=args),
        mode=mode,
        sampling_callback=sampling,
        elicitation_callback=elicitation,
    ) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        for step in steps.split(","):
            if step == "list":
                results["list"] = names
            elif step == "echo":
                r = await client.call_tool(find(names, "echo"), {"message": "hello era"})
                results["echo"] = text(r)
            elif step == "progress":
                slow = find(names, "slow", "trigger-long-running-operation")
                seen = []

                async def on_progress(progress, total, message):
                    seen.append(progress)

                arguments = {"steps": 3, "ms": 50} if slow.endswith("slow") else {"duration": 1, "steps": 3}
                r = await client.call_tool(slow, arguments, progress_callback=on_progress)
                results["progress"] = {"text": text(r), "progress": seen}
            elif step == "sample":
                name = find(names, "sample", "trigger-sampling-request")
                arguments = {"prompt": "say hi"} if name.endswith("sample") else {"prompt": "say hi", "maxTokens": 20}
                results["sample"] = text(await client.call_tool(name, arguments))
            elif step == "elicit":
                name = find(names, "ask-name", "trigger-elicitation-request")
                results["elicit"] = text(await client.call_tool(name, {}))
            else:
                raise RuntimeError(f"unknown step {step}")
        version = getattr(client.session, "protocol_version", None)
    print(json.dumps({"version": version, "results": results}), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    except Exception as e:  # noqa: BLE001 - one line for the test to show
        print(f"py_era_client: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
