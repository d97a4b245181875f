"""The GPU backends behind the real HTTP API, with tiny random-weight models on the CPU: clip-score (a CLIP
from a local directory, through the model runtime), a cancel that stops FLUX mid-diffusion, the runtime's
state in /v1/system and /metrics, and MODEL_UNAVAILABLE without weights."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpu_runtime.clip import THRESHOLDS, interpret
from service.settings import Settings
from service.wiring import make_models
from service.worker_stats import publish_stats
from tests.integration.api_support import Faults, LiveServer, error_of, sse_events, wait_for
from tests.support import PHOTOS, until

pytestmark = pytest.mark.integration

BANANA = (PHOTOS / "banana.png").read_bytes()
URL = "/v1/evaluations/clip-score"


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` whose labels include `labels` (None if there is none)."""
    found = []
    for m in re.finditer(r"^(\w+)\{(.*)\} (\S+)$", metrics, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if m.group(1) == name and labels.items() <= have.items():
            found.append(float(m.group(3)))
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def serve(settings: Settings) -> Iterator[httpx.Client]:
    server = LiveServer(settings, Faults())
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            http.settings = settings  # type: ignore[attr-defined]
            http.faults = server.faults  # type: ignore[attr-defined]
            yield http
    finally:
        server.stop()


def base_settings(data_dir, **kw) -> Settings:
    return Settings(
        data_dir=data_dir, database_url=None, checkpoint_url=None, models_dir=None, gpu_device="cpu", **kw
    )


@pytest.fixture(scope="module")
def http(tiny_models, tmp_path_factory) -> Iterator[httpx.Client]:
    """All three GPU backends forced on and CLIP, one job at a time, 3 diffusion steps."""
    yield from serve(
        tiny_models.settings(tmp_path_factory.mktemp("gpu-api"), max_concurrent_jobs=1, flux_steps=3)
    )


def test_clip_score_of_a_stored_image_and_of_an_upload(http):
    photo = http.post("/v1/artifacts", files={"file": ("banana.png", BANANA, "image/png")}).json()
    r = http.post(URL, data={"text": "a ripe banana on a plate", "artifact_id": photo["id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0.0 <= body["score"] <= 100.0
    assert body["interpretation"] == interpret(body["score"]) and body["thresholds"] == THRESHOLDS
    assert body["model"] == "openai/clip-vit-large-patch14" and body["image"] == photo["id"]

    # the same bytes uploaded with the request score the same
    r = http.post(
        URL, data={"text": "a ripe banana on a plate"}, files={"file": ("b.png", BANANA, "image/png")}
    )
    assert r.status_code == 200, r.text
    assert r.json()["score"] == body["score"] and r.json()["image"] is None

    # the model runtime shows CLIP loaded once, resident, used twice
    gpu = http.get("/v1/system").json()["gpu"]
    clip = gpu["runtime"]["models"]["clip"]
    assert (clip["loads"], clip["uses"], clip["state"]) == (1, 2, "device")
    assert "clip" in gpu["runtime"]["resident"] and gpu["runtime"]["used_bytes"] >= clip["bytes"] > 0
    assert gpu["backends"]["segment"] == {"backend": "birefnet", "reason": "ADGRAPH_SEGMENT_BACKEND=birefnet"}
    metrics = http.get("/metrics").text
    families = {f.name for f in text_string_to_metric_families(metrics)}  # valid exposition format
    assert {"adgraph_gpu_model_loads", "adgraph_gpu_model_resident", "adgraph_jobs"} <= families
    assert sample(metrics, "adgraph_gpu_model_loads_total", process="api", device="cpu", model="clip") == 1
    assert sample(metrics, "adgraph_gpu_model_uses_total", process="api", model="clip") == 2
    assert sample(metrics, "adgraph_gpu_model_resident", process="api", model="clip") == 1
    assert sample(metrics, "adgraph_gpu_used_bytes", process="api") >= clip["bytes"]
    assert sample(metrics, "adgraph_gpu_budget_bytes", process="api") == gpu["runtime"]["budget_bytes"]


async def test_worker_processes_publish_their_runtime_to_system_and_metrics(http, tiny_models):
    """With `serve --workers N` the models live in the workers; the API shows what they publish."""
    worker_settings = tiny_models.settings(http.settings.data_dir)
    models = make_models(worker_settings, evaluations=False)  # as `adgraph worker` makes them
    try:
        publisher = asyncio.create_task(publish_stats(models, worker_settings, every_s=0.05))

        async def published() -> dict | None:
            gpu = (await asyncio.to_thread(http.get, "/v1/system")).json()["gpu"]
            return gpu if gpu["workers"] else None

        system = await until(published, 30, interval=0.05, what="the worker's first summary in /v1/system")
        assert len(system["workers"]) == 1
        worker = system["workers"][0]
        assert worker["backends"]["background"] == {
            "backend": "flux",
            "reason": "ADGRAPH_BACKGROUND_BACKEND=flux",
        }
        assert set(worker["runtime"]["models"]) == {"birefnet", "flux", "qwen2vl"}
        metrics = (await asyncio.to_thread(http.get, "/metrics")).text
        process = worker["process"]
        assert sample(metrics, "adgraph_gpu_model_loads_total", process=process, model="flux") == 0
        assert sample(metrics, "adgraph_gpu_budget_bytes", process=process) == 64 * 2**20
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
        # a stopped worker's summary is gone
        assert (await asyncio.to_thread(http.get, "/v1/system")).json()["gpu"]["workers"] == []
    finally:
        await models.close()


def test_clip_score_refuses_bad_requests(http):
    error_of(http.post(URL, data={"text": "x"}), 422, "INVALID_INPUT")
    both = http.post(
        URL, data={"text": "x", "artifact_id": "0" * 64}, files={"file": ("b.png", BANANA, "image/png")}
    )
    assert "exactly one" in error_of(both, 422, "INVALID_INPUT")["message"]
    error_of(http.post(URL, data={"text": "x", "artifact_id": "0" * 64}), 404, "ARTIFACT_NOT_FOUND")
    not_image = http.post(URL, data={"text": "x"}, files={"file": ("a.png", b"not an image", "image/png")})
    error_of(not_image, 422, "INVALID_IMAGE")
    error_of(http.post(URL, data={"artifact_id": "0" * 64}), 422, "INVALID_INPUT")  # no text


def test_clip_score_without_weights_is_model_unavailable_naming_the_setting(tmp_path):
    for http in serve(base_settings(tmp_path, clip_path=None)):
        r = http.post(URL, data={"text": "x"}, files={"file": ("b.png", BANANA, "image/png")})
        error = error_of(r, 503, "MODEL_UNAVAILABLE")
        assert "ADGRAPH_CLIP_PATH" in error["message"] and error["details"]["setting"] == "ADGRAPH_CLIP_PATH"
        assert http.get("/v1/system").json()["gpu"]["runtime"] is None  # torch never loaded


def test_a_cancel_over_http_stops_flux_mid_diffusion_and_resume_finishes_the_job(http):
    photo = http.post("/v1/artifacts", files={"file": ("banana.png", BANANA, "image/png")}).json()
    body = {"workflow": "ad", "input": {"product_image": photo["id"], "headline": "달콤한 바나나", "seed": 5}}
    with http.faults.gate.closed():  # the job waits at the door of its background node
        job = http.post("/v1/jobs", json=body).json()
        assert http.faults.gate.entered.wait(60), "the job never reached its background node"
        assert http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    # the gate opens: FLUX starts, sees the cancel after its first step and stops
    cancelled = wait_for(http, job["id"])
    assert cancelled["status"] == "cancelled" and cancelled["result"] is None
    with http.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        events = list(sse_events(stream))
    steps = [
        e["data"]["message"] for e in events if e["event"] == "progress" and e["data"]["node"] == "background"
    ]
    assert steps == ["diffusion step 1/3"]
    assert [(n["name"], n["status"]) for n in cancelled["nodes"]] == [
        ("segment", "succeeded"),
        ("background", "interrupted"),
    ]

    assert http.post(f"/v1/jobs/{job['id']}/resume").status_code == 202
    done = wait_for(http, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["ad"]["backends"] == {
        "segment": "birefnet",
        "background": "flux",
        "analyze": "qwen2vl",
    }
    second = [n["name"] for n in done["nodes"] if n["attempt"] == 2]
    assert second[0] == "background" and "segment" not in second  # the matte was not made again
