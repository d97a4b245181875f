"""The MCP door: adgraph's tools for LLM desktops and agents, at /mcp (Streamable HTTP, in the API's app)
and over stdio (`adgraph mcp`). See server.py for the tools, auth.py for keys and hosts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.jobs import Jobs
from service.mcp.auth import PATH, OpenServer, body_limit, mcp_options
from service.mcp.server import AdgraphMCP, build_mcp, caller_from_request, local_caller
from service.settings import Settings

__all__ = ["PATH", "AdgraphMCP", "body_limit", "build_mcp", "http_door", "local_caller"]


def http_door(settings: Settings, jobs: Callable[[], Jobs]) -> tuple[Any, Any]:
    """(the ASGI app serving POST/GET/DELETE /mcp, its session manager). The host app's lifespan must enter
    `session_manager.run()` (a routed sub-app's own lifespan never runs), once per app: build one per app."""
    mcp = build_mcp(jobs, caller_from_request, **mcp_options(settings, jobs))
    inner = mcp.streamable_http_app()
    return OpenServer(inner), mcp.session_manager
