#!/usr/bin/env python3
"""The benchmark's fast upstream: a minimal MCP server on stdio.

Standard library only. It reads newline-delimited JSON-RPC 2.0 on stdin and
writes one compact JSON message per line on stdout (nothing else ever goes to
stdout). It does as little as a server can, so that what the benchmark
measures is the path between client and server, not the server:

- ``initialize``: echoes the client's protocol version when it knows it;
- ``ping``: an empty result;
- ``tools/list``: one tool, ``echo``;
- ``tools/call`` of ``echo``: a text result holding ``arguments.text`` (or
  ``arguments.message``, the argument of server-everything's echo tool, so
  that one set of arguments works against both upstreams);
- notifications (``notifications/initialized``, ``notifications/cancelled``,
  ...) and responses are ignored; any other request gets -32601.

It exits 0 when stdin closes.
"""

import json
import os
import sys

VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")

TOOLS = {
    "tools": [
        {
            "name": "echo",
            "description": "Returns its text argument unchanged.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "The text to return"},
                    "message": {"type": "string", "description": "Same as text"},
                },
            },
        }
    ]
}


def main():
    loads = json.loads
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    write = os.write

    def reply(mid, key, value):
        line = dumps({"jsonrpc": "2.0", "id": mid, key: value}).encode() + b"\n"
        while line:  # a pipe may take less than everything
            line = line[write(1, line):]

    for line in sys.stdin.buffer:
        try:
            msg = loads(line)
        except ValueError:
            if line.strip():
                reply(None, "error", {"code": -32700, "message": "parse error"})
            continue
        if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
            continue  # a notification, or a response to nothing we asked
        mid, method = msg["id"], msg["method"]
        params = msg.get("params") or {}
        if method == "tools/call":
            args = params.get("arguments") or {}
            if params.get("name") == "echo":
                text = args.get("text", args.get("message", ""))
                reply(mid, "result", {"content": [{"type": "text", "text": str(text)}]})
            else:
                reply(mid, "error", {"code": -32602, "message": "Unknown tool: %s" % params.get("name")})
        elif method == "ping":
            reply(mid, "result", {})
        elif method == "tools/list":
            reply(mid, "result", TOOLS)
        elif method == "initialize":
            asked = params.get("protocolVersion")
            reply(mid, "result", {
                "protocolVersion": asked if asked in VERSIONS else VERSIONS[-1],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench-echo", "version": "1.0.0"},
            })
        else:
            reply(mid, "error", {"code": -32601, "message": "Method not found: %s" % method})


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
