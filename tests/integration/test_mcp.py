"""The MCP door in memory, with the SDK's own client over the real job service (real u2netp, Chromium,
SQLite): the tool list and its schemas, an ad made end to end with progress, a branch with new copy that
runs only the text layer, a homepage, the resources, the prompt and the error codes."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import ImageContent, ResourceLink
from PIL import Image

from service.jobs import open_service
from service.mcp import build_mcp
from service.settings import Settings
from tests.integration.api_support import AD_NODES
from tests.support import PHOTOS
from tests.unit.site_support import EN

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MISSING = str(uuid.uuid4())  # a job id no job has
BANANA = (PHOTOS / "banana.png").read_bytes()
REPLACED = {  # the replaced system's tools and their parameters: its clients keep working
    "generate_ad_image": {"product_image", "text_content", "bg_prompt", "use_qwen_analysis"},
    "check_generation_status": {"job_id"},
    "analyze_image": {"image"},
    "calculate_clip_score": {"image", "prompt"},
    "list_fonts": set(),
    "generate_homepage": {"business_info", "style"},
    "get_system_status": set(),
    "stop_generation": {"job_id"},
}
OWN = {
    "upload_image",
    "list_jobs",
    "get_job_result",
    "list_checkpoints",
    "branch_job",
    "resume_job",
    "wait_for_job",
}
TEXT_LAYER = ["plan", "design", "code", "render"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def jobs(tmp_path_factory) -> AsyncIterator[Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("mcp"), database_url=None, checkpoint_url=None)
    async with open_service(settings, worker=True) as service:
        yield service


@pytest.fixture
def server(jobs) -> Any:
    return build_mcp(lambda: jobs)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def error(result: Any) -> dict[str, Any]:
    assert result.isError, result
    return json.loads(result.content[0].text)["error"]


async def call(client: Any, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.isError, result.content
    return result.structuredContent


async def wait(client: Any, job_id: str) -> tuple[dict[str, Any], list[tuple[float, str]]]:
    seen: list[tuple[float, str]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, message or ""))

    result = await client.call_tool(
        "wait_for_job", {"job_id": job_id, "timeout_s": 240}, progress_callback=progress
    )
    assert not result.isError, result.content
    return result.structuredContent, seen


async def test_tools_have_generated_schemas_and_the_replaced_names(server) -> None:
    async with create_connected_server_and_client_session(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(REPLACED) | OWN <= set(tools)
        for name, params in REPLACED.items():
            assert params <= set(tools[name].inputSchema.get("properties", {})), name
        ad = tools["generate_ad_image"]
        assert ad.inputSchema["required"] == ["product_image", "text_content"]
        assert "ctx" not in ad.inputSchema["properties"]
        assert {"id", "status", "progress"} <= set(ad.outputSchema["properties"])  # structured output
        home = tools["generate_homepage"].inputSchema
        assert "store_name" in json.dumps(home)  # the profile's own schema, generated
        assert tools["wait_for_job"].inputSchema["properties"]["timeout_s"]["maximum"] == 600
        templates = {t.uriTemplate for t in (await client.list_resource_templates()).resourceTemplates}
        assert templates == {"job://{job_id}", "job://{job_id}/artifacts/{name}"}
        prompts = (await client.list_prompts()).prompts
        assert [(p.name, p.title) for p in prompts] == [("plan_ad", "Plan an ad for my product")]
        text = (await client.get_prompt("plan_ad", {"product": "banana chips"})).messages[0].content.text
        for step in ("upload_image", "generate_ad_image", "wait_for_job", "get_job_result", "branch_job"):
            assert step in text


async def test_an_ad_end_to_end_then_a_branch_with_new_copy(server) -> None:
    async with create_connected_server_and_client_session(server) as client:
        job = await call(
            client, "generate_ad_image", product_image=data_url(BANANA), text_content="달콤한 바나나",
            bg_prompt="warm yellow kitchen", cta="지금 주문하기", priority=3,
        )  # fmt: skip
        assert job["status"] in ("queued", "running") and job["priority"] == 3
        done, seen = await wait(client, job["id"])
        assert done["status"] == "succeeded", done["error"]
        # every node's start and finish came as a notification, in the graph's order, progress rising
        finished = [m.split()[1] for _, m in seen if m.startswith("node_finished")]
        assert finished == AD_NODES
        assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len({d for d, _ in seen}) == len(seen)
        assert seen[-1][1].startswith("job_finished")

        result = await client.call_tool("get_job_result", {"job_id": job["id"]})
        assert not result.isError and result.structuredContent["status"] == "succeeded"
        previews = [c for c in result.content if isinstance(c, ImageContent)]
        links = {c.name: c for c in result.content if isinstance(c, ResourceLink)}
        assert set(links) == {"ad", "scene", "cutout"}
        assert sum(len(p.data) for p in previews) < 200_000  # previews, not megabytes of base64
        preview = Image.open(io.BytesIO(base64.b64decode(previews[-1].data)))
        assert max(preview.size) == 256
        full = (await client.read_resource(links["ad"].uri)).contents[0]
        assert full.mimeType == "image/png"
        assert Image.open(io.BytesIO(base64.b64decode(full.blob))).size == (1080, 1080)
        status = json.loads((await client.read_resource(f"job://{job['id']}")).contents[0].text)
        assert status["id"] == job["id"] and status["status"] == "succeeded"

        cps = await call(client, "list_checkpoints", job_id=job["id"])
        assert "analyze" in [c["node"] for c in cps["checkpoints"]]
        child = await call(
            client, "branch_job", job_id=job["id"], from_node="analyze", overrides={"headline": "새 문구"}
        )
        assert child["parent"]["job_id"] == job["id"]
        branched, _ = await wait(client, child["id"])
        assert branched["status"] == "succeeded"
        assert [n["name"] for n in branched["nodes"]] == TEXT_LAYER  # step 1 did not run again
        assert branched["result"]["scene"]["id"] == done["result"]["scene"]["id"]
        assert branched["result"]["ad"]["id"] != done["result"]["ad"]["id"]

        listed = await call(client, "list_jobs", workflow="ad")
        assert {job["id"], child["id"]} <= {j["id"] for j in listed["jobs"]}
        status = await call(client, "get_system_status")
        assert status["backends"]["segment"] == "u2netp" and status["jobs"]["succeeded"] >= 2
        analysis = await call(client, "analyze_image", image=done["result"]["cutout"]["id"])
        assert analysis["width"] > 0 and analysis["dominant"].startswith("#")


async def test_a_homepage(server) -> None:
    async with create_connected_server_and_client_session(server) as client:
        photo = await call(client, "upload_image", image=base64.b64encode(BANANA).decode(), name="banana.png")
        job = await call(client, "generate_homepage", business_info=EN, style="warm", images=[photo["id"]])
        done, seen = await wait(client, job["id"])
        assert done["status"] == "succeeded", done["error"]
        assert [m.split()[1] for _, m in seen if m.startswith("node_finished")] == TEXT_LAYER
        result = await client.call_tool("get_job_result", {"job_id": job["id"]})
        links = [c for c in result.content if isinstance(c, ResourceLink)]
        assert links and any(link.mimeType == "text/html" or "zip" in link.mimeType for link in links)


async def test_errors_carry_adgraph_codes(server) -> None:
    async with create_connected_server_and_client_session(server) as client:
        png = data_url(BANANA)
        cases = [
            ("generate_ad_image", {"product_image": "/etc/passwd", "text_content": "x"}, "INVALID_IMAGE"),
            (
                "generate_ad_image",
                {"product_image": data_url(b"not a png"), "text_content": "x"},
                "INVALID_IMAGE",
            ),
            (
                "generate_ad_image",
                {"product_image": png, "text_content": "x", "size": "3x3"},
                "INVALID_INPUT",
            ),
            ("generate_ad_image", {"product_image": png, "text_content": "x", "seed": -1}, "INVALID_INPUT"),
            ("generate_ad_image", {"product_image": "0" * 64, "text_content": "x"}, "ARTIFACT_NOT_FOUND"),
            (
                "generate_ad_image",
                {"product_image": png, "text_content": "x", "font": "NoSuch"},
                "INVALID_INPUT",
            ),
            ("check_generation_status", {"job_id": MISSING}, "JOB_NOT_FOUND"),
            ("stop_generation", {"job_id": MISSING}, "JOB_NOT_FOUND"),
            ("check_generation_status", {"job_id": "../etc"}, "INVALID_INPUT"),
            ("branch_job", {"job_id": MISSING, "from_node": "composite"}, "JOB_NOT_FOUND"),
            ("resume_job", {"job_id": MISSING}, "JOB_NOT_FOUND"),
            ("list_jobs", {"cursor": "garbage"}, "INVALID_INPUT"),
            ("calculate_clip_score", {"image": png, "prompt": "a banana"}, "MODEL_UNAVAILABLE"),
            ("generate_homepage", {"business_info": {"store_name": ""}}, "INVALID_INPUT"),
        ]
        before = (await call(client, "list_jobs", limit=200))["jobs"]
        for tool, args, code in cases:
            err = error(await client.call_tool(tool, args))
            assert err["code"] == code, (tool, args, err)
            assert err["message"] and "/etc" not in err["message"]
        assert (await call(client, "list_jobs", limit=200))["jobs"] == before  # bad input never made a job

        job = await call(client, "generate_ad_image", product_image=png, text_content="그만")
        await call(client, "stop_generation", job_id=job["id"])
        done, _ = await wait(client, job["id"])
        assert done["status"] == "cancelled"
        assert (
            error(await client.call_tool("stop_generation", {"job_id": job["id"]}))["code"]
            == "JOB_NOT_CANCELLABLE"
        )
        first = await call(client, "list_checkpoints", job_id=job["id"])
        if first["checkpoints"]:  # it ran far enough to have checkpoints: the same input is nothing to change
            err = error(await client.call_tool("branch_job", {"job_id": job["id"], "from_node": "segment"}))
            assert err["code"] in ("INVALID_INPUT", "CHECKPOINT_NOT_FOUND")
        resumed = await call(client, "resume_job", job_id=job["id"])
        assert resumed["status"] in ("queued", "running")
        assert (await wait(client, job["id"]))[0]["status"] == "succeeded"
        err = error(await client.call_tool("resume_job", {"job_id": job["id"]}))
        assert err["code"] == "JOB_NOT_RESUMABLE"
