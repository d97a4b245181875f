"""`adgraph mcp`: MCP over stdio for a local desktop client, either running the service in this process
(the embedded defaults, the machine's own user like every CLI command) or relaying every message to a
server's /mcp with an API key. stdout carries only MCP messages; logs go to stderr."""

from __future__ import annotations

import anyio
from mcp.server.stdio import stdio_server

from service.settings import Settings


async def serve_embedded(settings: Settings) -> None:
    """The tools over the job service in this process: it runs the jobs it is given, on this machine."""
    from service.jobs import open_service
    from service.mcp.server import build_mcp, local_caller

    async with open_service(settings, run_jobs=True, worker=True) as jobs:
        await build_mcp(lambda: jobs, local_caller).run_stdio_async()


async def relay(url: str, key: str | None) -> None:
    """stdio ↔ Streamable HTTP: each message from the desktop goes to `url` with the key as a Bearer token,
    each answer and notification comes back; the server does all the work (no tool logic here)."""
    from mcp.client.streamable_http import streamablehttp_client

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        stdio_server() as (local_read, local_write),
        streamablehttp_client(url, headers=headers) as (remote_read, remote_write, _),
    ):

        async def pump(source, sink) -> None:
            async for message in source:
                if isinstance(message, Exception):  # a transport problem: the peer sees no message
                    continue
                await sink.send(message)

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, remote_read, local_write)
            await pump(local_read, remote_write)
            tg.cancel_scope.cancel()
