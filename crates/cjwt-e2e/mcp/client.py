"""An MCP client for the MCP suite (crates/cjwt-e2e/tests/envoy_mcp.rs): the official
Python SDK's (PyPI `mcp`) ClientSession over its streamable HTTP transport.

    client.py URL STEPS_JSON

The credential comes from the environment: MCP_TOKEN (sent as `Bearer`), or with
MCP_DPOP_PROOFS (a file holding a JSON list of DPoP proofs, one per POST, in order)
as `DPoP` with the next proof. STEPS_JSON is a list of steps: ["list"],
["call", TOOL, ARGUMENTS] or ["ping"]; the session is initialized first.

Each step runs in a session of its own (the SDK ends a session on any 4xx answer to a
POST). Prints one JSON line for a first bare session ("initialize") and one per step
({"step", "ok", "status", "result"}: status is the HTTP status of the session's last
POST), then {"http": [[method, status], ...]} for every HTTP request the SDK made.
"""

import asyncio
import json
import os
import sys
from datetime import timedelta

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

URL = sys.argv[1]
STEPS = json.loads(sys.argv[2])
TIMEOUT = timedelta(seconds=5)


class Credential(httpx.Auth):
    """Bearer, or DPoP with one pre-made proof per POST."""

    def __init__(self):
        self.token = os.environ["MCP_TOKEN"]
        path = os.environ.get("MCP_DPOP_PROOFS")
        self.proofs = json.load(open(path, encoding="utf-8")) if path else None

    def auth_flow(self, request):
        if self.proofs is None:
            request.headers["Authorization"] = f"Bearer {self.token}"
        else:
            request.headers["Authorization"] = f"DPoP {self.token}"
            if request.method == "POST" and self.proofs:
                request.headers["DPoP"] = self.proofs.pop(0)
        yield request


async def main():
    http = []

    async def record(response):
        http.append([response.request.method, response.status_code])

    auth = Credential()
    # The SDK ends the whole session when a POST is answered 4xx, so each step runs in
    # a session of its own (initialize, the initialized notification, the step).
    print(json.dumps(await session(auth, record, http, None)), flush=True)
    for step in STEPS:
        print(json.dumps(await session(auth, record, http, step)), flush=True)
    print(json.dumps({"http": http}), flush=True)


async def session(auth, record, http, step):
    """One session: initialize, then `step` (none: report the initialize)."""
    outcome = {"step": step or "initialize", "ok": False, "status": None, "result": None}
    try:
        client = httpx.AsyncClient(auth=auth, event_hooks={"response": [record]}, timeout=10)
        async with client, streamable_http_client(URL, http_client=client) as (read, write, _):
            async with ClientSession(read, write, read_timeout_seconds=TIMEOUT) as mcp:
                await mcp.initialize()
                outcome["status"] = last_post(http)
                if step is None:
                    outcome["ok"] = True
                elif step[0] == "list":
                    tools = await mcp.list_tools()
                    outcome["result"], outcome["ok"] = sorted(t.name for t in tools.tools), True
                elif step[0] == "ping":
                    await mcp.send_ping()
                    outcome["ok"] = True
                else:
                    called = await mcp.call_tool(step[1], step[2], read_timeout_seconds=TIMEOUT)
                    outcome["result"] = [c.text for c in called.content if hasattr(c, "text")]
                    outcome["ok"] = not called.isError
                outcome["status"] = last_post(http)
    except BaseException as exc:  # a refused request: the SDK raises (an exception group) or times out
        outcome["ok"], outcome["status"], outcome["result"] = False, last_post(http), repr(exc)
    return outcome


def last_post(http):
    posts = [status for method, status in http if method == "POST"]
    return posts[-1] if posts else None


asyncio.run(main())
