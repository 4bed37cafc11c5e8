"""An MCP server for the MCP suite (crates/cjwt-e2e/tests/envoy_mcp.rs), built with the
official Python SDK (PyPI `mcp`), streamable HTTP transport at /mcp.

    server.py PORT CALL_LOG

Three tools over made-up orders. Every tool call the server runs appends one line
`<tool> <arguments as JSON>` to CALL_LOG: the suite reads it to prove what reached
the server and what did not.
"""

import json
import sys

from mcp.server.fastmcp import FastMCP

PORT = int(sys.argv[1])
CALL_LOG = sys.argv[2]

server = FastMCP("orders", host="127.0.0.1", port=PORT, log_level="WARNING")


def record(tool, arguments):
    with open(CALL_LOG, "a", encoding="utf-8") as log:
        log.write(f"{tool} {json.dumps(arguments, sort_keys=True)}\n")


@server.tool()
def get_order(customer_id: str, order_id: str = "1") -> str:
    """One order of a customer."""
    record("get_order", {"customer_id": customer_id, "order_id": order_id})
    return json.dumps({"customer_id": customer_id, "order_id": order_id, "total": 42})


@server.tool()
def search_orders(query: str) -> str:
    """Orders matching a query."""
    record("search_orders", {"query": query})
    return json.dumps({"query": query, "orders": ["1", "2"]})


@server.tool()
def delete_order(order_id: str) -> str:
    """Deletes an order: no agent token allows this one."""
    record("delete_order", {"order_id": order_id})
    return json.dumps({"deleted": order_id})


if __name__ == "__main__":
    server.run(transport="streamable-http")
