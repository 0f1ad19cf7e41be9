"""Headless MCP client on the official Python SDK (PyPI `mcp`, pinned in
requirements.txt), used by stdioproxy's interop tests.

Usage: python py_client.py <shim> --socket <socket>

Starts `<shim> --socket <socket>` as an MCP stdio server through the SDK's
own stdio_client, and with a ClientSession: initializes, lists every tool
(following nextCursor), calls everything__echo, lists the resources and reads
the first, and calls everything__trigger-long-running-operation with a
progress callback. Prints ONE JSON line on stdout:

  {"serverInfo": ..., "protocolVersion": ..., "tools": [...],
   "echo": "...", "resources": [...], "read": {...},
   "progress": [...], "longRunning": "..."}

Exit 0 on success; on any error (or after 60 s) the error goes to stderr
and the exit code is 1.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters, stdio_client

OVERALL_TIMEOUT_S = 60


async def run(command: str, args: list[str]) -> dict:
    params = StdioServerParameters(command=command, args=args)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools: list[str] = []
            cursor = None
            while True:
                page = await session.list_tools(cursor=cursor) if cursor else await session.list_tools()
                tools.extend(t.name for t in page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break

            echo = await session.call_tool("everything__echo", {"message": "hello python"})

            resources = (await session.list_resources()).resources
            read = await session.read_resource(resources[0].uri)
            first = read.contents[0]

            seen: list[float] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                seen.append(progress)

            long = await session.call_tool(
                "everything__trigger-long-running-operation",
                {"duration": 1, "steps": 3},
                progress_callback=on_progress,
            )
            return {
                "serverInfo": init.server_info.model_dump(mode="json"),
                "protocolVersion": init.protocol_version,
                "tools": tools,
                "echo": echo.content[0].text,
                "echoIsError": bool(echo.is_error),
                "resources": [{"uri": str(r.uri), "name": r.name} for r in resources],
                "read": {"uri": str(first.uri), "hasText": bool(getattr(first, "text", None))},
                "progress": seen,
                "longRunning": long.content[0].text,
            }


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: py_client.py <shim> [args...]", file=sys.stderr)
        return 1
    try:
        report = asyncio.run(asyncio.wait_for(run(sys.argv[1], sys.argv[2:]), OVERALL_TIMEOUT_S))
    except BaseException as e:  # report every failure, including timeouts
        print(f"py_client: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
