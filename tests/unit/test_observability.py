"""Logs and traces without a server: JSON log lines carry the request id; X-Request-ID is echoed (given or
made) and in every error body, a 500 and the upload limit's 413 included; tracing is off, with no provider
or exporter, unless OTEL_EXPORTER_OTLP_ENDPOINT is set; a run's events make one job span and a child span
per node."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
import structlog
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kernel.errors import AdgraphError
from service import observability
from service.api import errors
from service.api.artifacts import UploadLimit


@pytest.fixture(autouse=True)
def no_tracing(monkeypatch) -> Iterator[None]:
    """Each test starts with tracing unconfigured and OTEL_EXPORTER_OTLP_* unset, and leaves it so."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    observability.reset_tracing()
    yield
    observability.reset_tracing()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """configure_logging("json") writing into a buffer; the root logger and structlog restored after."""
    root = logging.getLogger()
    others, level = root.handlers[:], root.level
    out = io.StringIO()
    handler = observability.configure_logging("json", "info", stream=out)
    for other in others:  # pytest's capture handlers stay
        root.addHandler(other)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


def small_app() -> FastAPI:
    """The real error handlers, upload limit and `instrument`, around three routes."""
    app = FastAPI()
    errors.install(app)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        logging.getLogger("adgraph.test").warning("hello %s", "there")
        return {"ok": "yes"}

    @app.get("/missing")
    async def missing() -> None:
        raise AdgraphError("JOB_NOT_FOUND", "no job j1")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("/secret/path")

    @app.post("/v1/artifacts")
    async def upload() -> None:
        raise AssertionError("the limit answers first")

    app.add_middleware(UploadLimit, limit=10)
    observability.instrument(app)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    # a 500 is an answer here, not an exception in the test
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_a_log_line_inside_a_request_is_one_json_object_with_the_request_id(log_lines) -> None:
    async with client(small_app()) as http:
        r = await http.get("/hello", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    hello = next(line for line in lines if line.get("logger") == "adgraph.test")
    assert list(hello)[:4] == ["time", "level", "logger", "message"]
    assert hello["message"] == "hello there" and hello["level"] == "warning"
    assert hello["request_id"] == "abc-123"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*Z", hello["time"])


def test_log_lines_carry_the_tenant_job_and_node_of_their_context(log_lines) -> None:
    token = observability.tenant_var.set("acme")
    try:
        with observability.job_trace("job-1", "ad"):
            logging.getLogger("adgraph.test").info("inside", extra={"node": "render"})
        logging.getLogger("adgraph.test").info("after")
    finally:
        observability.tenant_var.reset(token)
    inside, after = (json.loads(line) for line in log_lines.getvalue().splitlines())
    assert inside["job_id"] == "job-1" and inside["node"] == "render" and inside["tenant"] == "acme"
    assert "job_id" not in after and "trace_id" not in inside  # no tracing: no trace ids


async def test_a_request_id_is_echoed_when_sane_and_made_when_missing_or_not() -> None:
    async with client(small_app()) as http:
        given = await http.get("/hello", headers={"X-Request-ID": "Req_1.a-b"})
        made = await http.get("/hello")
        for bad in ("x" * 65, "has space", "semi;colon", "<script>"):
            r = await http.get("/hello", headers={"X-Request-ID": bad})
            assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), bad
    assert given.headers["x-request-id"] == "Req_1.a-b"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])


async def test_every_error_body_has_the_request_id_of_its_header() -> None:
    async with client(small_app()) as http:
        answers = [
            await http.get("/missing", headers={"X-Request-ID": "r-404"}),  # a domain error
            await http.get("/nowhere"),  # Starlette's 404
            await http.get("/boom"),  # an unexpected exception: ServerErrorMiddleware's 500
            await http.post("/v1/artifacts", content=b"x" * 100_000),  # the upload limit's own 413
        ]
    assert [r.status_code for r in answers] == [404, 404, 500, 413]
    for r in answers:
        error = r.json()["error"]
        assert set(error) == {"code", "message", "details", "request_id"}, error
        assert error["request_id"] == r.headers["x-request-id"], error
    assert answers[0].json()["error"]["request_id"] == "r-404"
    assert "/secret" not in answers[2].text


def test_without_an_otlp_endpoint_there_is_no_provider_no_exporter_and_no_instrumentation() -> None:
    assert observability.configure_tracing() is None
    assert observability.tracer() is None
    assert observability._tracing.provider is None and observability._tracing.exporter is None
    app = small_app()
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    with observability.job_trace("j", "ad") as trace:
        assert trace.span is None


def test_an_otlp_endpoint_turns_on_the_otlp_exporter(monkeypatch) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # nothing is sent: no spans
    monkeypatch.setenv("OTEL_SERVICE_NAME", "adgraph-test")
    provider = observability.configure_tracing()
    assert provider is not None and isinstance(observability._tracing.exporter, OTLPSpanExporter)
    assert provider.resource.attributes["service.name"] == "adgraph-test"
    assert observability.configure_tracing() is provider  # once per process


async def test_requests_get_server_spans_tagged_with_their_request_id() -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    exporter = InMemorySpanExporter()
    observability.configure_tracing(exporter)
    app = small_app()
    try:
        async with client(app) as http:
            await http.get("/hello", headers={"X-Request-ID": "traced-1"})
            await http.get("/healthz")  # excluded
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /hello" and span.attributes["http.request_id"] == "traced-1"


async def test_a_runs_events_make_a_job_span_with_a_child_span_per_node() -> None:
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    observability.configure_tracing(exporter)
    seen: list[str] = []
    events = [
        ("checkpoint", {"id": "cp0", "step": -1, "node": None}),
        ("node_started", {"node": "segment"}),
        ("node_finished", {"name": "segment", "status": "succeeded", "seconds": 0.5}),
        ("checkpoint", {"id": "cp1", "step": 1, "node": "segment"}),
        ("node_started", {"node": "render"}),
        ("node_finished", {"name": "render", "status": "failed", "seconds": 0.1}),
    ]
    with observability.job_trace("job-7", "ad", attempt=2) as trace:
        listen = trace.listen(lambda kind, _: seen.append(kind))
        for kind, data in events:
            await listen(kind, data)
        trace.end("failed", AdgraphError("RENDER_FAILED", "boom"))
    assert seen == [kind for kind, _ in events]  # the runner's own listener still sees every event
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"job ad", "node segment", "node render"}
    job, segment, render = spans["job ad"], spans["node segment"], spans["node render"]
    assert dict(job.attributes) == {
        "job.id": "job-7",
        "job.workflow": "ad",
        "job.attempt": 2,
        "checkpoint.id": "cp1",
        "status": "failed",
        "error.code": "RENDER_FAILED",
    }
    assert job.status.status_code is StatusCode.ERROR
    for node in (segment, render):
        assert node.parent.span_id == job.context.span_id
        assert node.context.trace_id == job.context.trace_id
    assert segment.attributes["node.name"] == "segment" and segment.attributes["job.id"] == "job-7"
    assert segment.attributes["checkpoint.id"] == "cp1" and segment.attributes["status"] == "succeeded"
    assert render.attributes["status"] == "failed" and "checkpoint.id" not in render.attributes
    assert render.status.status_code is StatusCode.ERROR
