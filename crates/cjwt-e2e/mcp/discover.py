"""MCP authorization discovery as the official Python SDK (PyPI `mcp`) does it, for the MCP
suite (crates/cjwt-e2e/tests/envoy_mcp.rs).

    discover.py URL

POSTs an `initialize` to URL without a credential, reads the 401's `resource_metadata`
with the SDK's own helper, fetches that document (the URL's origin replaced by URL's: the
suite's Envoy listens on a local port while the document names the public origin) and
validates it as the SDK's RFC 9728 `ProtectedResourceMetadata`. Prints one JSON line:
{"status", "www_authenticate", "resource_metadata", "document"}.
"""

import asyncio
import json
import sys
from urllib.parse import urlsplit, urlunsplit

import httpx
from mcp.client.auth.utils import extract_resource_metadata_from_www_auth
from mcp.shared.auth import ProtectedResourceMetadata

URL = sys.argv[1]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "discover", "version": "1"}},
}


async def main():
    async with httpx.AsyncClient(timeout=10) as client:
        headers = {"accept": "application/json, text/event-stream"}
        refused = await client.post(URL, json=INITIALIZE, headers=headers)
        metadata_url = extract_resource_metadata_from_www_auth(refused)
        out = {"status": refused.status_code, "www_authenticate": refused.headers.get("www-authenticate"),
               "resource_metadata": metadata_url, "document": None}
        if metadata_url:
            local = urlsplit(URL)
            target = urlsplit(metadata_url)._replace(scheme=local.scheme, netloc=local.netloc)
            answer = await client.get(urlunsplit(target))
            document = ProtectedResourceMetadata.model_validate_json(answer.content)
            out["document"] = json.loads(document.model_dump_json(exclude_none=True))
        print(json.dumps(out), flush=True)


asyncio.run(main())
