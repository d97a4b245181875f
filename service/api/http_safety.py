"""What a browser and a hostile client may do with this server: CORS, security headers, trusted Host
headers, body and header read timeouts, and the uvicorn options `adgraph serve` runs with.

Header policy (one place for every response, errors and 500s included):
- every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options:
  DENY` and `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'; sandbox` — nothing we
  answer is meant to run in a browser, so even a stored file a browser were to render as HTML gets no
  script, no subresource and no origin;
- FastAPI's /docs, /redoc and the OAuth2 redirect page (the only HTML we serve ourselves) load Swagger
  UI / ReDoc from cdn.jsdelivr.net (and ReDoc its fonts from Google): their CSP allows exactly those
  hosts, inline scripts only by their SHA-256 (computed from the page as it is sent), inline styles
  (both UIs inject them) and `connect-src 'self'` for /openapi.json; still `frame-ancestors 'none'`.
- artifacts that are not images (the homepage's HTML pages, its stylesheet, fonts, the site zip) are
  sent as `Content-Disposition: attachment` (service/api/artifacts.py), never rendered at our origin.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http
import ipaddress
import logging
import mimetypes
import re
import socket
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response
from service.observability import request_id_var
from service.settings import Settings

log = logging.getLogger("adgraph.http")

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")

# -- security headers ------------------------------------------------------------------------------------

STATIC_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
DOCS_CSP = (
    "default-src 'none'; "
    "script-src https://cdn.jsdelivr.net {hashes}; "
    "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
    "font-src https://fonts.gstatic.com data:; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script\s*>", re.S | re.I)


def docs_csp(html: bytes) -> str:
    """The docs pages' CSP, with each inline <script> of `html` allowed by its hash."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return DOCS_CSP.format(hashes=hashes).replace("  ", " ")


class SecurityHeaders:
    """Adds the headers above to every response that does not set its own. Wraps the whole app (outside
    Starlette's ServerErrorMiddleware, see `install`), so 500s carry them too."""

    def __init__(self, app: ASGIApp, docs_paths: tuple[str, ...] = ()) -> None:
        self.app, self.docs_paths = app, frozenset(p for p in docs_paths if p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] in self.docs_paths:
            return await self._docs(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add(message, API_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A docs page is small and sent whole: hold its start until the body is here, to hash its scripts."""
        start: Message | None = None
        body: list[bytes] = []

        async def send_after_body(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                _add(start, docs_csp(b"".join(body)))
                await send(start)
                message = {"type": "http.response.body", "body": b"".join(body)}
                start = None
            await send(message)

        await self.app(scope, receive, send_after_body)


def attachment(artifact_id: str, mime: str) -> dict[str, str]:
    """Download headers for an artifact: images inline (their type is certain, and nosniff holds it), the
    rest (HTML pages, CSS, fonts, the site zip) as an attachment, never rendered at this origin."""
    if mime.startswith("image/"):
        return {}
    ext = mimetypes.guess_extension(mime) or ""
    return {"Content-Disposition": f'attachment; filename="{artifact_id[:16]}{ext}"'}


def _add(start: Message, csp: str) -> None:
    headers = MutableHeaders(scope=start)
    for name, value in STATIC_HEADERS:
        headers.setdefault(name.decode(), value.decode())
    headers.setdefault("content-security-policy", csp)


# -- trusted hosts ---------------------------------------------------------------------------------------


def default_trusted_hosts(bind_host: str) -> list[str]:
    """The Host names accepted when ADGRAPH_TRUSTED_HOSTS is unset: loopback names and the bind address;
    on a wildcard bind (0.0.0.0, ::) also this machine's host name, FQDN and their addresses."""
    hosts = [*LOOPBACK_HOSTS]
    if bind_host in WILDCARD_BINDS:
        names = {socket.gethostname(), socket.getfqdn()}
        for name in sorted(names):
            hosts.append(name)
            with contextlib.suppress(OSError):
                hosts.extend(socket.gethostbyname_ex(name)[2])
    else:
        hosts.append(bind_host.strip("[]"))
    return list(dict.fromkeys(h.lower() for h in hosts if h))


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's TrustedHostMiddleware, answering in the one error shape (400 INVALID_HOST, the Host not
    echoed) and never with its www redirect."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        super().__init__(app, allowed_hosts=[_bracketed(h) for h in allowed_hosts], www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = host_of(Headers(scope=scope).get("host"))
        if host is not None and any(
            host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in self.allowed_hosts
        ):
            return await self.app(scope, receive, send)
        response = error_response(
            "INVALID_HOST",
            "the Host header names no host this server answers for (ADGRAPH_TRUSTED_HOSTS)",
            400,
        )
        await response(scope, receive, send)


_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::\d{1,5})?")


def host_of(header: str | None) -> str | None:
    """The host of a Host header (IPv6 in brackets), lower case; None when it is missing or malformed."""
    match = _HOST.fullmatch((header or "").strip().lower())
    return match[1] if match else None


def _bracketed(host: str) -> str:
    """IPv6 literals as a Host header spells them ([::1]); Starlette's parser keeps the brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


# -- cross-site writes ------------------------------------------------------------------------------------

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CrossSiteWrites:
    """A browser's write from another site's page is refused (403 FORBIDDEN) before it reaches a route.

    A "simple" cross-site request (a form post, `fetch` with `text/plain` or multipart) is sent without a
    CORS preflight; the page cannot read the answer, but the write would be done. With keys on, such a
    request carries no key (keys travel in headers, never cookies) and is refused anyway; on a server open
    on loopback (no key yet) it would cancel jobs or fill the store from any web page. Browsers say where a
    request comes from (`Origin`, `Sec-Fetch-Site`): a write is let through when it names no origin (not
    from a browser: curl, the SDKs), its own (this server's page) or one in ADGRAPH_CORS_ORIGINS. The
    opaque origin `null` (a sandboxed frame, a file: page, our homepage preview) is another site."""

    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app, self.allowed = app, {o.lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = (headers.get("origin") or "").strip().lower()
        fetch_site = (headers.get("sec-fetch-site") or "").strip().lower()
        if origin:
            own = {f"{scheme}://{(headers.get('host') or '').lower()}" for scheme in ("http", "https")}
            allowed = origin in own or origin in self.allowed
        else:  # an old browser without Origin on this request still says whether the site is another
            allowed = fetch_site not in ("cross-site", "same-site")
        if allowed:
            return await self.app(scope, receive, send)
        response = error_response(
            "FORBIDDEN",
            "a write from another site's page is refused (list its origin in ADGRAPH_CORS_ORIGINS)",
            403,
            {"origin": origin[:200] or None},
        )
        await response(scope, receive, send)


# -- request body timeout --------------------------------------------------------------------------------


class BodyTimeout:
    """Bounds how slowly a request body may arrive. Pure ASGI, around `receive`: a client that sends no
    body bytes for `idle_s`, or after the first `idle_s` falls below `min_rate` bytes/s on average, gets
    408 REQUEST_TIMEOUT (and the connection is closed); the app is told the client left.

    Only while the body is still arriving and nothing has been answered: once the body is complete the
    app's later `receive` calls (Starlette waiting for a disconnect during SSE) pass straight through.
    """

    def __init__(self, app: ASGIApp, idle_s: float, min_rate: float) -> None:
        self.app, self.idle_s, self.min_rate = app, idle_s, min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        first: float | None = None
        seen, complete, answered, timed_out = 0, False, False, False

        async def timed_receive() -> Message:
            nonlocal first, seen, complete, timed_out
            if timed_out:
                return {"type": "http.disconnect"}
            if complete or answered:
                return await receive()
            now = loop.time()
            first = now if first is None else first
            # the average rate falls below min_rate at first + idle_s + seen / min_rate
            wait = min(self.idle_s, first + self.idle_s + seen / self.min_rate - now)
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                await self._refuse(scope, receive, send)
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if timed_out:
                return
            answered = True
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not timed_out:
                raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            "REQUEST_TIMEOUT",
            f"the request body came too slowly: nothing for {self.idle_s:g} s, or under "
            f"{self.min_rate:g} bytes/s after the first {self.idle_s:g} s (ADGRAPH_BODY_TIMEOUT_S, "
            "ADGRAPH_BODY_MIN_RATE)",
            408,
            {"timeout_s": self.idle_s, "min_bytes_per_s": self.min_rate},
        )
        # no `Connection: close` (uvicorn would close at once, and a client still sending its body would
        # get a reset instead of this): the guarded protocol half-closes and drops the rest (LINGER_S)
        await response(scope, receive, send)


# -- the app and the server ------------------------------------------------------------------------------

CORS_HEADERS = [
    "Authorization",
    "x-api-key",
    "Content-Type",
    "Idempotency-Key",
    "Last-Event-ID",
    "X-Request-ID",
]
CORS_EXPOSE = ["X-Request-ID", "Retry-After"]
CORS_METHODS = ["GET", "HEAD", "POST", "DELETE"]


def install(app: FastAPI, settings: Settings) -> None:
    """The middlewares, outermost first: security headers (around everything, 500s included), trusted
    hosts, CORS (only with ADGRAPH_CORS_ORIGINS), cross-site writes refused, the body timeout."""
    app.add_middleware(BodyTimeout, idle_s=settings.body_timeout_s, min_rate=settings.body_min_rate)
    app.add_middleware(CrossSiteWrites, allowed_origins=settings.cors_origins)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSE,
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(TrustedHosts, allowed_hosts=settings.trusted_hosts or list(LOOPBACK_HOSTS))
    docs = (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url if app.docs_url else None)
    paths = tuple(p for p in docs if p)
    build: Callable[[], ASGIApp] = app.build_middleware_stack
    # Starlette builds its stack (ServerErrorMiddleware outermost) on the first request; wrap the result,
    # as OpenTelemetry's FastAPI instrumentation does, so the headers reach its 500s as well.
    app.build_middleware_stack = lambda: SecurityHeaders(build(), docs_paths=paths)  # type: ignore[method-assign]


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `adgraph serve` (and the tests' live server) pass to uvicorn: keep-alive timeout, connection
    cap, and the HTTP protocol with a header timeout and header size limit."""
    return {
        "http": guarded_protocol(settings.header_timeout_s, settings.max_header_bytes),
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }


LINGER_S = 5.0
"""After an answer sent before its request was all read: how long the rest is read and dropped before the
socket is closed, so the client reads the answer instead of a connection reset."""


def guarded_protocol(header_timeout_s: float, max_header_bytes: int) -> Any:
    """uvicorn's httptools protocol with what uvicorn lacks:
    - a deadline for a request's line and headers, from the connection's opening or the request's first
      byte: a silent new socket is closed, a slowloris gets 408 (uvicorn only times out idle keep-alive);
    - a cap on their size: 431 (llhttp has none);
    - a lingering close after an answer sent before its request body was read (413, 408, 401, ...): the
      connection is half-closed and what the client still sends is dropped for LINGER_S, where uvicorn kept
      it alive and let a body dripping in after the answer hold it for good.
    Without httptools: uvicorn's h11, whose size cap is `h11_max_incomplete_event_size` and which has no
    header timeout (a reverse proxy must provide it)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is a dependency
        log.warning("httptools is missing: no header timeout (put a reverse proxy in front)")
        return "h11"

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            self._header_timer: asyncio.TimerHandle | None = None
            self._header_bytes, self._awaiting_headers, self._started, self._completed = 0, True, False, 0
            self._lingering, self._linger_after = False, False
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                return  # the rest of a request already answered: dropped
            awaiting, completed = self._awaiting_headers, self._completed
            super().data_received(data)
            # still inside the same request's headers: count the chunk (one that also ended a request is not
            # counted, so a whole request in one read never looks like a huge header)
            if awaiting and self._awaiting_headers and completed == self._completed and not self._lingering:
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes and not self.transport.is_closing():
                    message = f"the request line and headers are over {max_header_bytes} bytes"
                    self._refuse(431, "HEADERS_TOO_LARGE", message)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._started = True
            if self._header_timer is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            self._awaiting_headers, self._header_bytes = False, 0
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is None or cycle.scope is not self.scope:  # an upgrade: no request cycle
                return
            send = cycle.send

            async def send_closing_if_unread(message: Any) -> None:
                # An answer that starts before its request body is all read: `Connection: close`, so the
                # client does not reuse the connection; the close itself lingers (on_response_complete).
                if message["type"] == "http.response.start" and cycle.more_body:
                    headers = [h for h in message.get("headers") or () if h[0].lower() != b"connection"]
                    await send({**message, "headers": [*headers, (b"connection", b"close")]})
                    cycle.keep_alive, self._linger_after = True, True  # uvicorn would close at once
                    return
                await send(message)

            cycle.send = send_closing_if_unread  # type: ignore[method-assign]

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._awaiting_headers, self._started, self._header_bytes = True, False, 0
            self._completed += 1

        def on_response_complete(self) -> None:
            unread = self._linger_after or (self.cycle is not None and self.cycle.more_body)
            super().on_response_complete()
            if unread and not self.transport.is_closing():
                self._linger()

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or self._lingering:
                return
            if not self._started and not self._header_bytes:
                self.transport.close()  # a socket that never said anything
                return
            self._refuse(408, "REQUEST_TIMEOUT", f"the request's headers took over {header_timeout_s:g} s")

        def _refuse(self, status: int, code: str, message: str) -> None:
            """Answer in the one error shape, straight on the transport, and close (lingering)."""
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.close()  # a pipelined request behind one still being answered: no room
                return
            rid = uuid.uuid4().hex
            token = request_id_var.set(rid)
            try:
                body = error_response(code, message, status).body
            finally:
                request_id_var.reset(token)
            lines = [
                f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
                "content-type: application/json",
                f"content-length: {len(body)}",
                "connection: close",
                f"x-request-id: {rid}",
                *(f"{k.decode()}: {v.decode()}" for k, v in STATIC_HEADERS),
                f"content-security-policy: {API_CSP}",
            ]
            self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            self._linger()

        def _linger(self) -> None:
            self._lingering = True
            self._disarm()
            self._unset_keepalive_if_required()
            if self.transport.can_write_eof():
                self.transport.write_eof()  # FIN once the answer is out; the client may still send
            self.loop.call_later(LINGER_S, self.transport.close)

    return GuardedHttpToolsProtocol
