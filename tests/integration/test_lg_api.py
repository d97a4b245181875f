"""The LangGraph Platform API at /lg, driven by the real `langgraph_sdk` client: over ASGI in process and
over uvicorn on a loopback port. Assistants, a streamed ad run, history, a fork from `composite` with new
copy (only the text layer runs), update_state `__copy__`, cancel then resume, join-stream with
Last-Event-ID, the thread's run order (enqueue, reject), tenants, a homepage, Studio's text/plain bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from service.app import create_app
from tests.integration.api_support import AD_NODES, Faults, LiveServer
from tests.integration.test_mcp_http import make_key, settings_for
from tests.support import PHOTOS
from tests.unit.site_support import EN

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TEXT_LAYER = ["analyze", "plan", "design", "code", "render"]


def nodes_of(job: dict[str, Any]) -> list[str]:
    return [n["name"] for n in job["nodes"]]


async def upload(base_url: str, key: str | None = None, **client: Any) -> str:
    headers = {"x-api-key": key} if key else {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, **client) as rest:
        r = await rest.post(
            "/v1/artifacts", files={"file": ("banana.png", (PHOTOS / "banana.png").read_bytes())}
        )
        assert r.status_code == 201, r.text
        return r.json()["id"]


async def test_over_asgi_assistants_a_streamed_run_and_its_history(tmp_path) -> None:
    app = create_app(settings_for(tmp_path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        http = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1/lg", timeout=120)
        async with LangGraphClient(http) as lg:
            await asgi_session(lg, transport)


async def asgi_session(lg: LangGraphClient, transport: httpx.ASGITransport) -> None:
    found = await lg.assistants.search(metadata={"created_by": "system"})  # what Studio sends
    assert {a["graph_id"] for a in found} == {"ad", "homepage"}
    ad = next(a for a in found if a["graph_id"] == "ad")
    assert (await lg.assistants.get(ad["assistant_id"]))["graph_id"] == "ad"
    graph = await lg.assistants.get_graph("ad")
    assert [n["id"] for n in graph["nodes"]] == ["__start__", *AD_NODES, "__end__"]
    schemas = await lg.assistants.get_schemas(ad["assistant_id"])
    assert "product_image" in schemas["input_schema"]["properties"]  # the job's input, photo as an id
    with pytest.raises(httpx.HTTPStatusError) as e:
        await lg.assistants.get("no-such-graph")
    assert e.value.response.status_code == 404

    photo = await upload("http://127.0.0.1", transport=transport)
    thread = await lg.threads.create(metadata={"graph_id": "ad"})
    parts = [
        p
        async for p in lg.runs.stream(
            thread["thread_id"],
            "ad",
            input={"product_image": photo, "headline": "달콤한 바나나"},
            stream_mode=["values", "updates", "custom"],
        )
    ]
    events = [p.event for p in parts]
    assert events[0] == "metadata" and events[-1] == "end" and "error" not in events
    run_id = parts[0].data["run_id"]
    assert [next(iter(p.data)) for p in parts if p.event == "updates"] == AD_NODES  # in order, once each
    finished = [p.data["name"] for p in parts if p.event == "custom" and p.data["type"] == "node_finished"]
    assert finished == AD_NODES
    last_values = [p.data for p in parts if p.event == "values"][-1]
    assert last_values["copy"]["headline"] == "달콤한 바나나" and last_values["ad"]["id"]

    history = await lg.threads.get_history(thread["thread_id"], limit=100)
    assert len(history) == len(AD_NODES) + 2  # the input, the start, one per node; newest first
    assert [h["metadata"]["adgraph"]["node"] for h in history][:2] == ["render", "code"]
    state = await lg.threads.get_state(thread["thread_id"])
    assert (
        state["next"] == []
        and state["checkpoint"]["checkpoint_id"] == history[0]["checkpoint"]["checkpoint_id"]
    )
    composite = next(h for h in history if h["metadata"]["adgraph"]["node"] == "composite")
    at = await lg.threads.get_state(
        thread["thread_id"], checkpoint_id=composite["checkpoint"]["checkpoint_id"]
    )
    assert at["next"] == ["analyze"] and "scene" in at["values"]
    # the run is the job: the REST door shows the same one
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as rest:
        job = (await rest.get(f"/v1/jobs/{run_id}")).json()
    assert job["status"] == "succeeded" and nodes_of(job) == AD_NODES


# -- over uvicorn ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("lg-live")
    settings = settings_for(data_dir, max_concurrent_jobs=2)
    keys = {t: asyncio.run(make_key(settings, t)) for t in ("acme", "rival")}
    server = LiveServer(settings, Faults())
    server.start()
    try:
        yield server, keys
    finally:
        server.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def sdk(live) -> AsyncIterator[Callable[[str], LangGraphClient]]:
    """`sdk(tenant)`: the SDK's client for the live server with that tenant's key (closed after the test)."""
    server, keys = live
    made: list[LangGraphClient] = []

    def client(tenant: str) -> LangGraphClient:
        made.append(get_client(url=server.base_url + "/lg", api_key=keys[tenant], timeout=120))
        return made[-1]

    yield client
    for c in made:
        await c.aclose()


async def rest_job(server: LiveServer, key: str, job_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, headers={"x-api-key": key}) as rest:
        r = await rest.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()


async def first_ad(server: LiveServer, key: str, lg: LangGraphClient) -> tuple[str, str]:
    """(thread id, run id) of a finished ad made through runs.wait."""
    photo = await upload(server.base_url, key)
    thread = await lg.threads.create()
    done = await lg.runs.wait(
        thread["thread_id"], "ad", input={"product_image": photo, "headline": "첫 카피"}
    )
    assert done["copy"]["headline"] == "첫 카피"
    runs = await lg.runs.list(thread["thread_id"])
    return thread["thread_id"], runs[0]["run_id"]


async def test_a_fork_after_composite_with_new_copy_runs_only_the_text_layer(live, sdk) -> None:
    server, keys = live
    lg = sdk("acme")
    thread_id, first = await first_ad(server, keys["acme"], lg)
    history = await lg.threads.get_history(thread_id, limit=100)
    composite = next(h for h in history if h["metadata"]["adgraph"]["node"] == "composite")
    cid = composite["checkpoint"]["checkpoint_id"]

    run = await lg.runs.create(thread_id, "ad", input={"headline": "같은 장면, 새 카피"}, checkpoint_id=cid)
    values = await lg.runs.join(thread_id, run["run_id"])
    assert values["copy"]["headline"] == "같은 장면, 새 카피"
    job = await rest_job(server, keys["acme"], run["run_id"])
    assert nodes_of(job) == TEXT_LAYER  # segment, background and composite were not run again
    assert job["parent"] == {"job_id": first, "checkpoint_id": cid}
    before = await rest_job(server, keys["acme"], first)
    assert values["scene"]["id"] == before["result"]["scene"]["id"]  # the same scene, reused
    assert values["ad"]["id"] != before["result"]["ad"]["id"]  # a new ad
    thread = await lg.threads.get(thread_id)
    lineage = thread["metadata"]["jobs"]
    assert [j["job_id"] for j in lineage] == [first, run["run_id"]]
    assert lineage[1]["parent_checkpoint_id"] == cid and thread["status"] == "idle"
    assert thread["values"]["copy"]["headline"] == "같은 장면, 새 카피"  # the thread's newest state

    # Studio's "Re-run from here": a copy checkpoint, then a run with no input
    plan = next(h for h in history if h["metadata"]["adgraph"]["node"] == "plan")
    copy = await lg.threads.update_state(
        thread_id, None, as_node="__copy__", checkpoint_id=plan["checkpoint"]["checkpoint_id"]
    )
    staged = copy["checkpoint"]["checkpoint_id"]
    shown = await lg.threads.get_state(thread_id, checkpoint_id=staged)
    assert shown["next"] == ["design"]
    rerun = await lg.runs.create(thread_id, "ad", checkpoint_id=staged)
    await lg.runs.join(thread_id, rerun["run_id"])
    job = await rest_job(server, keys["acme"], rerun["run_id"])
    assert nodes_of(job) == ["design", "code", "render"] and job["status"] == "succeeded"
    # update_state with a change, then a run with nothing: the staged fork runs with that change
    await lg.threads.update_state(thread_id, {"headline": "스테이징"}, checkpoint_id=cid)
    staged_run = await lg.runs.create(thread_id, "ad")
    values = await lg.runs.join(thread_id, staged_run["run_id"])
    assert values["copy"]["headline"] == "스테이징"
    assert nodes_of(await rest_job(server, keys["acme"], staged_run["run_id"])) == TEXT_LAYER


async def test_cancel_mid_run_then_a_run_with_no_input_resumes_it(live, sdk) -> None:
    server, keys = live
    lg = sdk("acme")
    photo = await upload(server.base_url, keys["acme"])
    thread = await lg.threads.create(metadata={"graph_id": "ad"})
    tid = thread["thread_id"]
    with server.faults.gate.closed() as gate:  # the backdrop waits
        run = await lg.runs.create(tid, "ad", input={"product_image": photo, "headline": "취소"})
        assert await asyncio.to_thread(gate.entered.wait, 60)
        assert (await lg.threads.get(tid))["status"] == "busy"
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await lg.runs.create(tid, "ad", input={"headline": "또"}, multitask_strategy="reject")
        assert refused.value.response.status_code == 409
        assert refused.value.response.json()["error"]["code"] == "THREAD_BUSY"
        await lg.runs.cancel(tid, run["run_id"])
    stopped = await lg.runs.join(tid, run["run_id"])
    assert "ad" not in stopped
    assert (await lg.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    assert (await lg.threads.get(tid))["status"] == "interrupted"

    resumed = await lg.runs.create(tid, "ad")  # no input, no checkpoint: carry on
    assert resumed["run_id"] == run["run_id"]  # one run is one job: the same job goes on
    values = await lg.runs.join(tid, resumed["run_id"])
    assert values["ad"]["id"]
    job = await rest_job(server, keys["acme"], run["run_id"])
    done = [n["name"] for n in job["nodes"] if n["status"] == "succeeded"]
    assert done == AD_NODES  # each node finished once: segment and background did not run again


async def test_enqueued_runs_of_a_thread_run_one_after_another(live, sdk) -> None:
    server, keys = live
    lg = sdk("acme")
    thread_id, _ = await first_ad(server, keys["acme"], lg)
    with server.faults.gate.closed() as gate:
        held = await lg.runs.create(
            thread_id, "ad", input={"headline": "먼저", "background_prompt": "blue sky"}
        )
        assert await asyncio.to_thread(gate.entered.wait, 60)
        queued = await lg.runs.create(thread_id, "ad", input={"headline": "나중"})  # enqueue, the default
    await lg.runs.join(thread_id, queued["run_id"])
    async with httpx.AsyncClient(base_url=server.base_url, headers={"x-api-key": keys["acme"]}) as rest:
        first_events = _events(await rest.get(f"/v1/jobs/{held['run_id']}/events"))
        second_events = _events(await rest.get(f"/v1/jobs/{queued['run_id']}/events"))
    first_end = next(e["id"] for e in first_events if e["event"] == "job_finished")
    second_start = next(e["id"] for e in second_events if e["event"] == "job_started")
    assert second_start > first_end  # it was not taken while the first one ran (2 job slots were free)
    runs = await lg.runs.list(thread_id)
    assert [r["run_id"] for r in runs][:2] == [queued["run_id"], held["run_id"]]
    assert all(r["status"] == "success" for r in runs)


def _events(r: httpx.Response) -> list[dict[str, Any]]:
    out, current = [], {}
    for line in r.text.splitlines():
        if not line:
            if current:
                out.append(current)
            current = {}
        elif line.startswith("id:"):
            current["id"] = int(line[3:].strip())
        elif line.startswith("event:"):
            current["event"] = line[6:].strip()
    return out


async def test_join_stream_after_a_drop_resumes_from_last_event_id_without_duplicates(live, sdk) -> None:
    server, keys = live
    lg = sdk("acme")
    thread_id, run_id = await first_ad(server, keys["acme"], lg)
    whole = [
        (p.id, p.event)
        async for p in lg.runs.join_stream(thread_id, run_id, stream_mode=["updates", "custom"])
    ]
    assert whole[0][1] == "metadata" and whole[-1][1] == "end"
    # a client that drops after the fifth part, then reconnects the way the SDK does
    url = f"{server.base_url}/lg/threads/{thread_id}/runs/{run_id}/stream"
    params = {"stream_mode": ["updates", "custom"]}
    headers = {"x-api-key": keys["acme"], "Accept": "text/event-stream"}
    seen: list[tuple[str | None, str]] = []
    async with httpx.AsyncClient(timeout=60) as http:
        async with http.stream("GET", url, params=params, headers=headers) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            event_id, event = None, None
            async for line in r.aiter_lines():
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif not line and event:
                    seen.append((event_id, event))
                    event_id, event = None, None
                    if len(seen) == 5:
                        break
        last = seen[-1][0]
        assert last
        rest = [
            (p.id, p.event)
            async for p in lg.runs.join_stream(
                thread_id, run_id, stream_mode=["updates", "custom"], last_event_id=last
            )
        ]
    assert seen + rest == whole  # nothing twice, nothing missed
    assert rest[0][1] != "metadata"  # a reconnect goes on; it does not start over


async def test_another_tenant_sees_nothing_and_jobs_of_other_doors_are_threads(live, sdk) -> None:
    server, keys = live
    lg = sdk("acme")
    thread_id, run_id = await first_ad(server, keys["acme"], lg)
    rival = sdk("rival")
    for call in (
        rival.threads.get(thread_id),
        rival.threads.get_state(thread_id),
        rival.threads.get_history(thread_id),
        rival.runs.get(thread_id, run_id),
        rival.runs.create(thread_id, "ad", input={"headline": "남의 것"}),
    ):
        with pytest.raises(httpx.HTTPStatusError) as e:
            await call
        assert e.value.response.status_code == 404
    assert thread_id not in {t["thread_id"] for t in await rival.threads.search(limit=100)}

    # a job made over REST is a thread of its own: its history, and a fork from it that joins it
    photo = await upload(server.base_url, keys["acme"])
    async with httpx.AsyncClient(base_url=server.base_url, headers={"x-api-key": keys["acme"]}) as rest:
        made = await rest.post(
            "/v1/jobs", json={"workflow": "ad", "input": {"product_image": photo, "headline": "REST"}}
        )
        job_id = made.json()["id"]
    await lg.runs.join(job_id, job_id)
    assert job_id in {t["thread_id"] for t in await lg.threads.search(limit=100)}
    history = await lg.threads.get_history(job_id, limit=100)
    composite = next(h for h in history if h["metadata"]["adgraph"]["node"] == "composite")
    fork = await lg.runs.create(
        job_id, "ad", input={"headline": "포크"}, checkpoint_id=composite["checkpoint"]["checkpoint_id"]
    )
    await lg.runs.join(job_id, fork["run_id"])
    assert [j["job_id"] for j in (await lg.threads.get(job_id))["metadata"]["jobs"]] == [
        job_id,
        fork["run_id"],
    ]


async def test_a_homepage_run(live, sdk) -> None:
    server, keys = live
    lg = sdk("acme")
    values = await lg.runs.wait(None, "homepage", input={"profile": EN, "pages": ["about"]})
    assert "__error__" not in values, values
    assert values["site_zip"]["id"] and {"index-desktop", "index-mobile", "about-desktop"} <= set(
        values["screens"]
    )
    index = values["site"]["files"]["index.html"]["id"]
    async with httpx.AsyncClient(base_url=server.base_url, headers={"x-api-key": keys["acme"]}) as rest:
        page = await rest.get(f"/v1/artifacts/{index}")
    assert page.status_code == 200 and "Blue Door Bakery" in page.text


async def test_what_studio_sends_text_plain_bodies_uuid_thread_ids_info_and_ok(live) -> None:
    server, keys = live
    headers = {"x-api-key": keys["acme"]}
    async with httpx.AsyncClient(base_url=server.base_url + "/lg", headers=headers) as http:
        assert (await http.get("/ok")).json() == {"ok": True}
        assert "flags" in (await http.get("/info")).json()
        plain = await http.post(
            "/assistants/search",
            content=json.dumps({"metadata": {"created_by": "system"}}),
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        )
        assert plain.status_code == 200 and len(plain.json()) == 2
        bad = await http.post("/threads", json={"thread_id": "my-thread"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "INVALID_INPUT"
        made = await http.post("/threads", json={"thread_id": "9b3c4a4e-2f57-4a49-8a5f-0d6f4a0b7c11"})
        assert made.status_code == 200
        again = await http.post("/threads", json={"thread_id": "9b3c4a4e-2f57-4a49-8a5f-0d6f4a0b7c11"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "THREAD_EXISTS"
        empty = await http.post(
            "/threads/9b3c4a4e-2f57-4a49-8a5f-0d6f4a0b7c11/runs", json={"assistant_id": "ad"}
        )
        assert empty.status_code == 422  # a thread's first run needs an input
        junk = await http.post(
            "/threads/search", content=b"{not json", headers={"Content-Type": "text/plain"}
        )
        assert junk.status_code == 422
    async with httpx.AsyncClient(base_url=server.base_url + "/lg") as anonymous:
        assert (await anonymous.post("/threads/search", json={})).status_code == 401
