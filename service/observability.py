"""Logs and traces.

Logs: `configure_logging` makes every line of `adgraph serve` / `adgraph worker` one JSON object (structlog
over the stdlib `logging`, so uvicorn's and every `logging.getLogger` line too) with `time`, `level`,
`logger`, `message` and, where known, `request_id`, `tenant`, `job_id`, `node` and `trace_id`, read from the
context variables below.

Traces: OpenTelemetry spans for each HTTP request (FastAPI instrumentation), each job run and each node of
it (`JobTrace`, fed the run's events), exported over OTLP/HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Unset, no tracer provider exists, the SDK is not even imported
and nothing is sent.

Request ids: `RequestIdMiddleware` (outermost, see `instrument`) takes a sane `X-Request-ID` or makes one,
echoes it in the response and puts it in `request_id_var`, which `service.api.errors` writes into every
error body as `error.request_id`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

request_id_var: ContextVar[str | None] = ContextVar("adgraph_request_id", default=None)
"""The id of the HTTP request being served (set by `RequestIdMiddleware`)."""
tenant_var: ContextVar[str | None] = ContextVar("adgraph_tenant", default=None)
"""The tenant the request acts for: set by authentication once the API key is known (`tenant_var.set(name)`);
every log line after that carries it."""
job_id_var: ContextVar[str | None] = ContextVar("adgraph_job_id", default=None)
"""The job being run (set by `job_trace` around a run)."""
node_var: ContextVar[str | None] = ContextVar("adgraph_node", default=None)
"""The node a log line is about, where the code logging it knows."""

_CONTEXT = (
    ("request_id", request_id_var),
    ("tenant", tenant_var),
    ("job_id", job_id_var),
    ("node", node_var),
)
_FIRST = ("time", "level", "logger", "message")
log = logging.getLogger("adgraph.jobs")


# -- logs ---------------------------------------------------------------------------------------------------


def _add_context(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
    for key, var in _CONTEXT:
        if key not in event and (value := var.get()) is not None:
            event[key] = value
    if _tracing.provider is not None and "trace_id" not in event:
        from opentelemetry import trace

        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            event["trace_id"], event["span_id"] = f"{span.trace_id:032x}", f"{span.span_id:016x}"
    return event


def _first_keys(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """time, level, logger, message first: a person reading the raw line sees those before the rest."""
    return {**{k: event.pop(k) for k in _FIRST if k in event}, **event}


def configure_logging(
    fmt: str = "json", level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """The root logger's one handler (returned), writing `fmt` ("json": a JSON object a line; "text": for a
    terminal) to `stream` (stderr). Called once at start-up; calling it again replaces the handler."""
    import structlog

    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        _add_context,
    ]
    if fmt == "json":
        render: list[Any] = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _first_keys,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    else:
        render = [structlog.dev.ConsoleRenderer(colors=False)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # 7 lines a start, saying nothing
    # structlog's own loggers (structlog.get_logger) go through the same handler
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


# -- request ids --------------------------------------------------------------------------------------------

_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
HEADER = b"x-request-id"


def sane_request_id(value: bytes | str | None) -> str | None:
    """A client's X-Request-ID if it is 1-64 of [A-Za-z0-9._-], else None (one is made instead)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if value and _SANE_ID.fullmatch(value) else None


class RequestIdMiddleware:
    """Pure ASGI: a request id for every HTTP request, in `request_id_var` while it is served and in the
    `X-Request-ID` response header."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope.get("headers") or () if k == HEADER), None)
        rid = sane_request_id(given) or uuid.uuid4().hex
        header = (HEADER, rid.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers") or () if h[0].lower() != HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = request_id_var.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def instrument(app: FastAPI) -> None:
    """Request ids on `app` and, when tracing is on, a span per request. The request-id middleware wraps
    the whole stack, Starlette's ServerErrorMiddleware included, so a 500 has the id in body and header."""
    if getattr(app.build_middleware_stack, "__func__", None) is not type(app).build_middleware_stack:
        # OpenTelemetry's instrumentation needs Starlette's own stack (ServerErrorMiddleware outermost)
        raise RuntimeError("observability.instrument(app) must come before any other wrapper of its stack")
    provider = configure_tracing()
    if provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=provider,
            excluded_urls="/healthz",
            server_request_hook=_tag_request,
            exclude_spans=["receive", "send"],  # an SSE stream would make a span per event
        )
    inner = app.build_middleware_stack
    app.build_middleware_stack = lambda: RequestIdMiddleware(inner())  # type: ignore[method-assign]


def _tag_request(span: Span, _: dict[str, Any]) -> None:
    if span.is_recording() and (rid := request_id_var.get()):
        span.set_attribute("http.request_id", rid)


# -- traces -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Tracing:
    configured: bool = False
    provider: TracerProvider | None = None
    exporter: SpanExporter | None = None


_tracing = _Tracing()


def otlp_endpoint() -> str | None:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )


def configure_tracing(exporter: SpanExporter | None = None) -> TracerProvider | None:
    """This process's tracer provider, made on the first call: spans go to `exporter` as they end (tests),
    else in batches to the OTLP/HTTP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the exporter reads
    the OTEL_EXPORTER_OTLP_* settings; the service is OTEL_SERVICE_NAME, default adgraph); else None: no
    provider, no exporter, nothing sent. Later calls return the first answer (`reset_tracing` forgets it)."""
    if _tracing.configured and exporter is None:
        return _tracing.provider
    reset_tracing()
    _tracing.configured = True
    if exporter is None and not otlp_endpoint():
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create
    name = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "adgraph"}
    provider = TracerProvider(resource=Resource.create(name))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracing.provider, _tracing.exporter = provider, exporter
    return provider


def reset_tracing() -> None:
    """Flush and drop the tracer provider; the next `configure_tracing` reads the environment again."""
    if _tracing.provider is not None:
        _tracing.provider.shutdown()
    _tracing.configured, _tracing.provider, _tracing.exporter = False, None, None


def tracer() -> Tracer | None:
    provider = configure_tracing()
    return provider.get_tracer("adgraph") if provider is not None else None


Listener = Callable[[str, dict[str, Any]], Any]


class JobTrace:
    """One run of a job as a span `job <workflow>`, with a child span `node <name>` per node, made from the
    run's events (node_started, node_finished, checkpoint). A node's span ends when its checkpoint arrives
    (so it carries `checkpoint.id`), at the next node's start, or with the run. Without a tracer it only
    logs a line per finished node."""

    def __init__(self, tracer: Tracer | None, job_id: str, workflow: str, attempt: int | None = None) -> None:
        self.tracer = tracer
        self.base = {"job.id": job_id, "job.workflow": workflow}
        self.span: Span | None = None
        self._open: dict[str, Span] = {}
        self._ending: dict[str, tuple[Span, int]] = {}
        self._token: Any = None
        if tracer is not None:
            from opentelemetry import context, trace

            attrs = {**self.base, **({"job.attempt": attempt} if attempt is not None else {})}
            if tenant := tenant_var.get():
                attrs["tenant"] = tenant
            self.span = tracer.start_span(f"job {workflow}", attributes=attrs)
            self._parent = trace.set_span_in_context(self.span)
            self._token = context.attach(self._parent)  # spans made inside the run nest under the job

    def listen(self, listener: Listener | None) -> Listener:
        """`listener`, with this trace seeing each event first."""

        async def traced(kind: str, data: dict[str, Any]) -> None:
            self.event(kind, data)
            if listener is not None and inspect.isawaitable(out := listener(kind, data)):
                await out

        return traced

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "node_finished":
            name, status, seconds = data["name"], data["status"], data.get("seconds")
            log.info("node %s %s in %ss", name, status, seconds, extra={"node": name, "status": status})
        if self.span is None or self.tracer is None:
            return
        if kind == "node_started":
            self._end_finished()
            name = data["node"]
            attrs = {**self.base, "node.name": name}
            self._open[name] = self.tracer.start_span(f"node {name}", context=self._parent, attributes=attrs)
        elif kind == "node_finished":
            name, status = data["name"], data["status"]
            if (span := self._open.pop(name, None)) is None:
                return
            span.set_attribute("status", status)
            if data.get("seconds") is not None:
                span.set_attribute("node.seconds", data["seconds"])
            if status == "failed":
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, f"node {name} failed"))
            self._ending[name] = (span, time.time_ns())
        elif kind == "checkpoint":
            self.span.set_attribute("checkpoint.id", data["id"])
            if (ending := self._ending.pop(data.get("node") or "", None)) is not None:
                span, end = ending
                span.set_attribute("checkpoint.id", data["id"])
                span.end(end_time=end)
        elif kind == "fallback":
            with contextlib.suppress(Exception):
                target = self._open.get(data.get("node") or "") or self.span
                target.add_event("fallback", {k: str(v) for k, v in data.items() if v is not None})

    def end(self, status: str, error: Any = None, drained: str | None = None) -> None:
        """How the run ended: succeeded, failed (with its AdgraphError), cancelled (drained for a reason)."""
        if self.span is None:
            return
        self.span.set_attribute("status", status)
        if drained:
            self.span.set_attribute("job.drained", drained)
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            code = getattr(error, "code", type(error).__name__)
            self.span.set_attribute("error.code", code)
            self.span.set_status(Status(StatusCode.ERROR, code))

    def close(self) -> None:
        if self.span is None:
            return
        self._end_finished()
        for span in self._open.values():  # started and never finished: the run stopped inside it
            span.set_attribute("status", "interrupted")
            span.end()
        self._open.clear()
        from opentelemetry import context

        context.detach(self._token)
        self.span.end()
        self.span = None

    def _end_finished(self) -> None:
        for span, end in self._ending.values():
            span.end(end_time=end)
        self._ending.clear()


@contextlib.contextmanager
def job_trace(
    job_id: str, workflow: str, attempt: int | None = None, tenant: str | None = None
) -> Iterator[JobTrace]:
    """A run of job `job_id`: its id (and tenant) in every log line, and its span when tracing is on."""
    token = job_id_var.set(job_id)
    tenant_token = tenant_var.set(tenant) if tenant else None
    trace = JobTrace(tracer(), job_id, workflow, attempt)
    try:
        yield trace
    except BaseException as e:
        trace.end("failed", e)
        raise
    finally:
        trace.close()
        if tenant_token is not None:
            tenant_var.reset(tenant_token)
        job_id_var.reset(token)
