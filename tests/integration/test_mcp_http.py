"""The MCP door over its real transports, with the SDK's own client: Streamable HTTP into the whole FastAPI
app in process (ASGI), over uvicorn on a loopback port (keys as Bearer tokens: 401 without one, another
tenant's job not found; the Host allowlist), and stdio (`adgraph mcp`, embedded or relayed to a server)."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ImageContent

from service.accounts import Accounts
from service.app import create_app
from service.db import make_engine, migrate
from service.settings import Settings
from service.store import JobStore
from tests.integration.api_support import AD_NODES, Faults, LiveServer
from tests.support import ADGRAPH, PHOTOS

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PHOTO = "data:image/png;base64," + base64.b64encode((PHOTOS / "banana.png").read_bytes()).decode()
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def settings_for(data_dir: Path, **kw: Any) -> Settings:
    return Settings(data_dir=data_dir, database_url=None, checkpoint_url=None, **kw)


async def make_key(settings: Settings, tenant: str) -> str:
    """A key in the server's database, as `adgraph keys create` makes one."""
    engine = make_engine(settings.database)
    store = JobStore(engine)
    try:
        await migrate(engine)
        key, _ = await Accounts(store, settings).create(tenant, ["submit"])
    finally:
        store.close()
        await engine.dispose()
    return key


@asynccontextmanager
async def session(url: str, key: str | None = None, **client: Any) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(60, read=300), **client) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as s,
    ):
        await s.initialize()
        yield s


async def make_ad(s: ClientSession) -> tuple[dict[str, Any], list[str]]:
    """generate_ad_image → wait_for_job (its notifications) → the job."""
    made = await s.call_tool("generate_ad_image", {"product_image": PHOTO, "text_content": "달콤한 바나나"})
    assert not made.isError, made.content
    seen: list[str] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    job_id = made.structuredContent["id"]
    done = await s.call_tool("wait_for_job", {"job_id": job_id, "timeout_s": 240}, progress_callback=progress)
    assert not done.isError, done.content
    return done.structuredContent, seen


def finished_nodes(seen: list[str]) -> list[str]:
    return [m.split()[1] for m in seen if m.startswith("node_finished")]


async def test_the_whole_app_in_process_over_asgi(tmp_path) -> None:
    settings = settings_for(tmp_path)
    key = await make_key(settings, "acme")
    app = create_app(settings)
    async with app.router.lifespan_context(app):  # ASGITransport runs no lifespan: the app's own, by hand
        transport = httpx.ASGITransport(app=app)
        async with session("http://127.0.0.1/mcp", key, transport=transport) as s:
            tools = {t.name for t in (await s.list_tools()).tools}
            assert {"generate_ad_image", "wait_for_job", "get_job_result"} <= tools
            job, seen = await make_ad(s)
            assert job["status"] == "succeeded"
            assert finished_nodes(seen) == AD_NODES
            result = await s.call_tool("get_job_result", {"job_id": job["id"]})
            assert any(isinstance(c, ImageContent) for c in result.content)
        # the same job through REST, with the same key: one core, several doors
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as rest:
            r = await rest.get(f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200 and r.json()["status"] == "succeeded"


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    import asyncio

    data_dir = tmp_path_factory.mktemp("mcp-live")
    hosts = ["localhost", "127.0.0.1", "::1", "ads.example"]
    settings = settings_for(data_dir, trusted_hosts=hosts)
    keys = {t: asyncio.run(make_key(settings, t)) for t in ("acme", "rival")}
    server = LiveServer(settings, Faults())
    server.start()
    try:
        yield server, keys
    finally:
        server.stop()


async def test_over_uvicorn_keys_are_bearer_tokens_scoped_to_their_tenant(live) -> None:
    server, keys = live
    url = server.base_url + "/mcp"
    async with httpx.AsyncClient() as raw:
        r = await raw.post(url, json=INIT, headers=MCP_HEADERS)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        bad = {**MCP_HEADERS, "Authorization": "Bearer adg_000000000000_forgedforgedforgedforged"}
        assert (await raw.post(url, json=INIT, headers=bad)).status_code == 401
        r = await raw.post(url + "/", json=INIT, headers=MCP_HEADERS)
        assert r.status_code == 404  # one URL, no redirect to follow
    async with session(url, keys["acme"]) as s:
        job, seen = await make_ad(s)
        assert job["status"] == "succeeded" and finished_nodes(seen) == AD_NODES
        mine = await s.call_tool("list_jobs", {})
        assert [j["id"] for j in mine.structuredContent["jobs"]] == [job["id"]]
    async with session(url, keys["rival"]) as s:
        for tool in ("check_generation_status", "get_job_result", "stop_generation", "list_checkpoints"):
            other = await s.call_tool(tool, {"job_id": job["id"]})
            assert other.isError and json.loads(other.content[0].text)["error"]["code"] == "JOB_NOT_FOUND"
        other = await s.call_tool("branch_job", {"job_id": job["id"], "from_node": "analyze"})
        assert json.loads(other.content[0].text)["error"]["code"] == "JOB_NOT_FOUND"
        with pytest.raises(Exception, match="no job"):
            await s.read_resource(f"job://{job['id']}")
        assert (await s.call_tool("list_jobs", {})).structuredContent["jobs"] == []


async def test_the_host_allowlist(live) -> None:
    server, keys = live
    url = server.base_url + "/mcp"
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {keys['acme']}"}
    async with httpx.AsyncClient() as raw:
        evil = await raw.post(url, json=INIT, headers={**headers, "Host": "evil.example"})
        assert evil.status_code == 400 and evil.json()["error"]["code"] == "INVALID_HOST"
        # a listed name passes the app's check and the SDK's own (DNS-rebinding) check alike
        ok = await raw.post(url, json=INIT, headers={**headers, "Host": f"ads.example:{server.port}"})
        assert ok.status_code == 200, ok.text
        cross = await raw.post(url, json=INIT, headers={**headers, "Origin": "http://evil.example"})
        assert cross.status_code == 403


def stdio_params(data_dir: Path, *args: str) -> StdioServerParameters:
    env = {**os.environ, "ADGRAPH_DATA_DIR": str(data_dir)}
    env.pop("ADGRAPH_DATABASE_URL", None)
    return StdioServerParameters(command=ADGRAPH, args=["mcp", *args], env=env)


async def test_stdio_embedded_makes_an_ad_in_process(tmp_path) -> None:
    async with (
        stdio_client(stdio_params(tmp_path / "data")) as (read, write),
        ClientSession(read, write) as s,
    ):
        await s.initialize()
        job, seen = await make_ad(s)
        assert job["status"] == "succeeded" and finished_nodes(seen) == AD_NODES
    assert (tmp_path / "data" / "jobs.db").exists()  # the embedded service's own database


async def test_stdio_relayed_to_a_server_with_a_key(live, tmp_path) -> None:
    server, keys = live
    args = ("--url", server.base_url + "/mcp", "--key", keys["rival"])
    async with (
        stdio_client(stdio_params(tmp_path / "unused", *args)) as (read, write),
        ClientSession(read, write) as s,
    ):
        await s.initialize()
        photo = await s.call_tool("upload_image", {"image": PHOTO})
        assert not photo.isError, photo.content
        listed = await s.call_tool("list_jobs", {})
        assert listed.structuredContent["jobs"] == []  # the key's tenant: acme's jobs are not listed
        wrong = await s.call_tool("check_generation_status", {"job_id": "../../etc/passwd"})
        assert json.loads(wrong.content[0].text)["error"]["code"] == "INVALID_INPUT"
    assert not (tmp_path / "unused").exists()  # nothing ran here
    assert sys.executable  # the console script of this interpreter


async def test_an_open_server_needs_no_key_over_mcp_either(tmp_path) -> None:
    app = create_app(settings_for(tmp_path))  # no key exists yet: open on loopback, like REST
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with session("http://127.0.0.1/mcp", transport=transport) as s:
            status = await s.call_tool("get_system_status", {})
            assert not status.isError and status.structuredContent["tenant"] == "local"
