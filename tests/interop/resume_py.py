"""A Python SDK (PyPI `mcp`, legacy ClientSession) client that keeps ONE
session across a daemon restart. Used by tests/e2e/resume.rs.

Usage: python resume_py.py <command> [args...]

Spawns `<command> [args...]` (the shim) as its stdio server, initializes,
calls `alpha__echo` {"text": "before"}, prints {"phase": "ready"} and waits
for one line on stdin (the test restarts the daemon meanwhile), then calls
`alpha__echo` {"text": "after"} on the same session and prints
{"phase": "done", "before": ..., "after": ..., "listChanged": <count>}.
Any error (or 60 s) exits 1 with the error on stderr.
"""

import json
import sys

import anyio
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

TIMEOUT_S = 60


def text(result):
    return result.content[0].text if result.content else None


async def run(command, args):
    list_changed = 0

    async def on_message(message):
        nonlocal list_changed
        root = getattr(message, "root", message)
        if getattr(root, "method", None) == "notifications/tools/list_changed":
            list_changed += 1

    params = StdioServerParameters(command=command, args=args)
    async with stdio_client(params) as (read, write):
        info = types.Implementation(name="resume-py", version="1.0.0")
        async with ClientSession(
            read, write, message_handler=on_message, client_info=info
        ) as session:
            init = await session.initialize()
            before = text(await session.call_tool("alpha__echo", {"text": "before"}))
            print(json.dumps({"phase": "ready"}), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            after = text(await session.call_tool("alpha__echo", {"text": "after"}))
            return {
                "phase": "done",
                "before": before,
                "after": after,
                "listChanged": list_changed,
                "serverInfo": init.server_info.name,
            }


async def main():
    if len(sys.argv) < 2:
        print("usage: python resume_py.py <command> [args...]", file=sys.stderr)
        sys.exit(2)
    with anyio.fail_after(TIMEOUT_S):
        report = await run(sys.argv[1], sys.argv[2:])
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    anyio.run(main)
