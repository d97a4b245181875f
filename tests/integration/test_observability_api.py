"""Logs and traces of the real server: an ad job through the real runner makes one job span and one child
span per node (with its checkpoint id), the requests their server spans; the runner's JSON log lines carry
the job and node; X-Request-ID is echoed and in a real 404's body."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import observability
from service.settings import Settings
from tests.integration.api_support import AD_NODES, Faults, LiveServer, error_of, wait_for
from tests.support import PHOTOS

pytestmark = pytest.mark.integration

BANANA = (PHOTOS / "banana.png").read_bytes()


class Traced:
    def __init__(
        self, server: LiveServer, http: httpx.Client, spans: InMemorySpanExporter, logs: io.StringIO
    ):
        self.server, self.http, self.spans, self.logs = server, http, spans, logs


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> Iterator[Traced]:
    """A live server made while tracing goes to an in-memory exporter and JSON logs to a buffer."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    root = logging.getLogger()
    others, level = root.handlers[:], root.level
    logs = io.StringIO()
    handler = observability.configure_logging("json", "info", stream=logs)
    for other in others:  # pytest's capture handlers stay
        root.addHandler(other)
    exporter = InMemorySpanExporter()
    observability.configure_tracing(exporter)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("observability"), database_url=None, checkpoint_url=None
    )
    server = LiveServer(settings, Faults())
    try:
        server.start()
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            yield Traced(server, http, exporter, logs)
    finally:
        server.stop()
        FastAPIInstrumentor.uninstrument_app(server.server.config.app)
        observability.reset_tracing()
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()


def finished_job_span(spans: InMemorySpanExporter, job_id: str, timeout: float = 10) -> Any:
    """The job's span ends just after its status is written: wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            s for s in spans.get_finished_spans() if s.name == "job ad" and s.attributes["job.id"] == job_id
        ]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no span for job {job_id}")


def test_an_ad_job_makes_one_job_span_and_a_child_span_per_node_with_its_checkpoint(traced) -> None:
    up = traced.http.post("/v1/artifacts", files={"file": ("banana.png", BANANA, "image/png")})
    assert up.status_code == 201, up.text
    body = {"workflow": "ad", "input": {"product_image": up.json()["id"], "headline": "달콤한 바나나"}}
    submitted = traced.http.post("/v1/jobs", json=body, headers={"X-Request-ID": "submit-1"})
    assert submitted.status_code == 202, submitted.text
    assert submitted.headers["x-request-id"] == "submit-1"
    job = wait_for(traced.http, submitted.json()["id"])
    assert job["status"] == "succeeded", job

    (job_span,) = finished_job_span(traced.spans, job["id"])
    assert job_span.attributes["job.workflow"] == "ad" and job_span.attributes["status"] == "succeeded"
    assert job_span.attributes["job.attempt"] == 1
    nodes = [
        s
        for s in traced.spans.get_finished_spans()
        if s.name.startswith("node ") and s.attributes["job.id"] == job["id"]
    ]
    assert sorted(s.attributes["node.name"] for s in nodes) == sorted(AD_NODES)  # one span per node
    by_name = {s.attributes["node.name"]: s for s in nodes}
    checkpoints = {c["node"]: c["id"] for c in traced.http.get(f"/v1/jobs/{job['id']}/checkpoints").json()}
    for name in AD_NODES:
        span = by_name[name]
        assert span.name == f"node {name}"
        assert span.parent is not None and span.parent.span_id == job_span.context.span_id
        assert span.attributes["job.workflow"] == "ad" and span.attributes["status"] == "succeeded"
        assert span.attributes["checkpoint.id"] == checkpoints[name], name  # the checkpoint it wrote
    assert job_span.attributes["checkpoint.id"] == checkpoints["render"]

    # the requests have server spans, tagged with their request ids
    submit = [s for s in traced.spans.get_finished_spans() if s.name == "POST /v1/jobs"]
    assert [s.attributes["http.request_id"] for s in submit] == ["submit-1"]

    # the runner's JSON log lines say which job and node
    lines = [json.loads(line) for line in traced.logs.getvalue().splitlines()]
    rendered = [ln for ln in lines if ln.get("job_id") == job["id"] and ln.get("node") == "render"]
    assert rendered and rendered[0]["logger"] == "adgraph.jobs" and rendered[0]["level"] == "info"
    assert rendered[0]["trace_id"] == f"{job_span.context.trace_id:032x}"


def test_the_request_id_is_echoed_and_in_a_real_404s_body(traced) -> None:
    given = traced.http.get("/v1/jobs/00000000-0000-0000-0000-000000000000", headers={"X-Request-ID": "r-1"})
    assert error_of(given, 404, "JOB_NOT_FOUND")["request_id"] == "r-1"
    made = traced.http.get("/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert len(error_of(made, 404, "JOB_NOT_FOUND")["request_id"]) == 32
    assert traced.http.get("/healthz").headers["x-request-id"]
