"""What browsers and slow or hostile clients get from a live server (service/api/http_safety.py): CORS for
listed origins only, security headers on every response, a forged Host refused, and slow bodies, slow
headers, silent sockets and idle keep-alive connections cut off. Real HTTP over loopback; raw sockets
where a client library would normalise or hide what is sent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from service.api.http_safety import LINGER_S, attachment, default_trusted_hosts, uvicorn_options
from service.app import create_app
from service.settings import Settings
from tests.integration.api_support import Faults, LiveServer, error_of, sse_events, wait_for
from tests.support import PHOTOS, wait_until

pytestmark = pytest.mark.integration

BANANA = (PHOTOS / "banana.png").read_bytes()
STUDIO = "https://studio.example"
KEEP_ALIVE_S, HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 1.0, 2.0, 2.0
SLACK_S = 5.0  # on top of a bound: a busy 2-core machine may be late, never this late


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("http-safety"),
        database_url=None,
        checkpoint_url=None,
        max_concurrent_jobs=1,
        cors_origins=[STUDIO],
        keep_alive_s=KEEP_ALIVE_S,
        header_timeout_s=HEADER_TIMEOUT_S,
        body_timeout_s=BODY_TIMEOUT_S,
    )
    live = LiveServer(settings, Faults())
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def photo(http) -> dict[str, Any]:
    r = http.post("/v1/artifacts", files={"file": ("banana.png", BANANA, "image/png")})
    assert r.status_code == 201, r.text
    return r.json()


# -- raw HTTP ----------------------------------------------------------------------------------------------


def connect(server: LiveServer, timeout: float = 30) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (status, headers, body) off a socket, by its Content-Length: the socket stays usable."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside a response body"
        body += chunk
    return int(lines[0].split(" ")[1]), headers, body


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection (EOF) before `seconds` pass; reads and drops any bytes."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def raw_error(body: bytes, code: str) -> dict[str, Any]:
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"], error
    return error


def request(path: str, host: str = "127.0.0.1", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def assert_security_headers(headers: httpx.Headers | dict[str, str]) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


# -- CORS ------------------------------------------------------------------------------------------------


def test_cors_preflight_answers_a_listed_origin_and_refuses_any_other(http) -> None:
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, x-api-key, content-type, idempotency-key",
    }
    ok = http.options("/v1/jobs", headers={"Origin": STUDIO, **asked})
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == STUDIO
    allowed = ok.headers["access-control-allow-headers"].lower()
    assert {"authorization", "x-api-key", "content-type", "idempotency-key", "last-event-id"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert "access-control-allow-credentials" not in ok.headers  # keys travel in headers, never cookies
    assert_security_headers(ok.headers)

    for origin in (
        "https://evil.example",
        "null",
        "https://studio.example.evil.example",
        "http://studio.example",
    ):
        bad = http.options("/v1/jobs", headers={"Origin": origin, **asked})
        assert bad.status_code == 400, (origin, bad.status_code)
        assert "access-control-allow-origin" not in bad.headers

    simple = http.get("/v1/workflows", headers={"Origin": STUDIO})
    assert simple.headers["access-control-allow-origin"] == STUDIO
    exposed = {h.strip().lower() for h in simple.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "retry-after"} <= exposed
    other = http.get("/v1/workflows", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


def test_a_simple_cross_site_write_is_refused_and_changes_nothing(server, http, photo) -> None:
    """The server runs open (no key), so a page on any site could send a form post or a text/plain fetch
    (no preflight) to cancel a job or store a file: refused, while this server's own pages, a listed origin
    and clients that are no browser write as before."""
    body = {"workflow": "ad", "input": {"product_image": photo["id"], "headline": "새 메뉴"}}
    job = http.post("/v1/jobs", json=body).json()
    jobs_before = http.get("/v1/jobs").json()["jobs"]
    for headers in (
        {"Origin": "https://evil.example", "Content-Type": "text/plain"},
        {"Origin": "null", "Content-Type": "text/plain"},  # a sandboxed frame
        {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},  # no Origin, but a browser's
    ):
        cancel = http.post(f"/v1/jobs/{job['id']}/cancel", content=b"{}", headers=headers)
        assert error_of(cancel, 403, "FORBIDDEN")["message"].count("ADGRAPH_CORS_ORIGINS") == 1
        form = {"file": ("x.png", BANANA, "image/png")}
        upload = http.post("/v1/artifacts", files=form, headers={"Origin": headers.get("Origin", "null")})
        error_of(upload, 403, "FORBIDDEN")
        text = json.dumps(body)
        error_of(http.post("/v1/jobs", content=text, headers=headers), 403, "FORBIDDEN")
    assert {j["id"] for j in http.get("/v1/jobs").json()["jobs"]} == {j["id"] for j in jobs_before}
    own = f"http://127.0.0.1:{server.port}"
    for origin in (own, STUDIO):
        form = {"file": ("x.png", BANANA, "image/png")}
        r = http.post("/v1/artifacts", files=form, headers={"Origin": origin})
        assert r.status_code == 201, (origin, r.text)
    assert wait_for(http, job["id"])["status"] == "succeeded"  # never cancelled


def test_cors_is_off_unless_origins_are_listed(tmp_path) -> None:
    app = create_app(Settings(data_dir=tmp_path, database_url=None, checkpoint_url=None))
    client = TestClient(app, base_url="http://localhost")  # no lifespan: the preflight needs no service
    r = client.options("/v1/jobs", headers={"Origin": STUDIO, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert_security_headers(r.headers)


def test_origin_and_host_settings_are_parsed_from_the_environment_and_wildcards_refused(monkeypatch) -> None:
    monkeypatch.setenv("ADGRAPH_CORS_ORIGINS", "https://studio.example, http://localhost:5173")
    monkeypatch.setenv("ADGRAPH_TRUSTED_HOSTS", "api.example.com, *.example.org, [::1]")
    settings = Settings()
    assert settings.cors_origins == ["https://studio.example", "http://localhost:5173"]
    assert settings.trusted_hosts == ["api.example.com", "*.example.org", "::1"]
    monkeypatch.setenv("ADGRAPH_TRUSTED_HOSTS", "")
    assert Settings().trusted_hosts is None  # unset: the defaults
    for origins in ("*", "https://studio.example/app", "studio.example"):
        monkeypatch.setenv("ADGRAPH_CORS_ORIGINS", origins)
        with pytest.raises(ValueError, match="origin"):
            Settings()
    monkeypatch.delenv("ADGRAPH_CORS_ORIGINS")
    monkeypatch.setenv("ADGRAPH_TRUSTED_HOSTS", "api.example.com:8000")
    with pytest.raises(ValueError, match="without port"):
        Settings()


# -- security headers -------------------------------------------------------------------------------------


def test_every_kind_of_response_carries_the_security_headers(http, photo) -> None:
    responses = {
        "health": http.get("/healthz"),
        "json": http.get("/v1/jobs"),
        "openapi": http.get("/openapi.json"),
        "artifact": http.get(f"/v1/artifacts/{photo['id']}"),
        "not found": http.get("/v1/jobs/no-such-job"),
        "unknown route": http.get("/nowhere"),
        "bad input": http.post("/v1/jobs", json={"workflow": "ad", "input": {}}),
        "wrong method": http.delete("/v1/workflows"),
        "too large": http.post(
            "/v1/jobs", content=b"{" * (2**20 + 10), headers={"content-type": "application/json"}
        ),
    }
    for name, r in responses.items():
        assert_security_headers(r.headers)
        if name not in ("health", "json", "openapi", "artifact"):
            assert r.status_code >= 400, name
            assert "default-src 'none'" in r.headers["content-security-policy"], name


def test_artifacts_are_never_sniffed_and_only_images_are_shown_inline(http) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 180, 40)).save(buf, "PNG")
    polyglot = buf.getvalue() + b"<html><body><script>alert(document.domain)</script></body></html>"
    r = http.post("/v1/artifacts", files={"file": ("poly.png", polyglot, "image/png")})
    if r.status_code != 201:  # refused at the door is as safe as served as an image
        error_of(r, 422, "INVALID_IMAGE")
        return
    got = http.get(f"/v1/artifacts/{r.json()['id']}")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in got.headers["content-security-policy"]  # if rendered at all: no script, no origin
    assert "content-disposition" not in got.headers

    # every other kind (a homepage's pages, stylesheet, fonts, its zip) is a download, never a page here
    assert attachment("a" * 64, "image/png") == {}
    for mime, ext in (("text/html", ".html"), ("application/zip", ".zip"), ("text/css", ".css")):
        disposition = attachment("ab" * 32, mime)["Content-Disposition"]
        assert disposition == f'attachment; filename="{"ab" * 8}{ext}"'


def test_the_docs_pages_allow_their_cdn_and_inline_scripts_by_hash_only(http) -> None:
    for path, needs in (("/docs", "cdn.jsdelivr.net"), ("/redoc", "fonts.googleapis.com")):
        r = http.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert_security_headers(r.headers)
        csp = r.headers["content-security-policy"]
        assert needs in csp and "connect-src 'self'" in csp
        script_src = re.search(r"script-src ([^;]*)", csp)[1]
        assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
        for inline in re.findall(rb"<script>(.*?)</script>", r.content, re.S):
            digest = base64.b64encode(hashlib.sha256(inline).digest()).decode()
            assert f"'sha256-{digest}'" in script_src, path
    assert "/openapi.json" in http.get("/docs").text


# -- trusted hosts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "127.0.0.1@evil.example", ""]
)
def test_a_forged_host_is_refused_and_never_reflected(server, host) -> None:
    for path in ("/v1/jobs/", "/v1/jobs", "/healthz"):
        with connect(server) as sock:
            sock.sendall(request(path, host, "Connection: close\r\n"))
            status, headers, body = read_response(sock)
        assert status == 400, (host, path, status, body)
        raw_error(body, "INVALID_HOST")
        assert "location" not in headers
        if host:
            assert host.encode() not in body and all(host not in v for v in headers.values())
        assert_security_headers(headers)


def test_the_hosts_it_answers_for_and_no_trailing_slash_redirect(server) -> None:
    for host in (
        "127.0.0.1",
        f"127.0.0.1:{server.port}",
        f"localhost:{server.port}",
        "LOCALHOST",
        "[::1]:80",
    ):
        with connect(server) as sock:
            sock.sendall(request("/healthz", host, "Connection: close\r\n"))
            assert read_response(sock)[0] == 200, host
    with connect(server) as sock:
        sock.sendall(request("/v1/jobs/", f"127.0.0.1:{server.port}", "Connection: close\r\n"))
        status, headers, body = read_response(sock)
    assert status == 404 and "location" not in headers  # one URL per resource, no redirect to build
    raw_error(body, "NOT_FOUND")


def test_the_default_hosts_are_loopback_and_the_bind_address() -> None:
    assert default_trusted_hosts("127.0.0.1") == ["localhost", "127.0.0.1", "::1"]
    assert default_trusted_hosts("10.1.2.3") == ["localhost", "127.0.0.1", "::1", "10.1.2.3"]
    everywhere = default_trusted_hosts("0.0.0.0")  # clients use this machine's names, never "0.0.0.0"
    assert everywhere[:3] == ["localhost", "127.0.0.1", "::1"] and socket.gethostname().lower() in everywhere
    assert "0.0.0.0" not in everywhere and "*" not in everywhere


# -- slow and idle connections ----------------------------------------------------------------------------


def test_a_body_sent_one_byte_every_2_s_is_cut_off_with_408(server, http) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        deadline, answer = time.monotonic() + BODY_TIMEOUT_S + SLACK_S, b""
        sock.settimeout(2.0)
        while not answer and time.monotonic() < deadline:
            try:
                sock.sendall(b" ")
                answer = sock.recv(65536)  # waits up to 2 s: one byte every 2 s
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        assert answer, f"no answer within {BODY_TIMEOUT_S + SLACK_S} s"
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        head, body = answer.split(b"\r\n\r\n", 1)
        assert b"connection: close" in head.lower()
        raw_error(body, "REQUEST_TIMEOUT")
        assert closed_within(sock, SLACK_S)  # half-closed at once; what it still sends is dropped
    assert http.get("/healthz").status_code == 200  # and the server is fine


def test_a_body_still_dripping_in_after_its_answer_does_not_hold_the_connection(server) -> None:
    with connect(server) as sock:
        sock.sendall(  # over the JSON limit by its declared length: answered before any of it is read
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\n\r\n{"
        )
        status, headers, body = read_response(sock)
        assert status == 413 and headers["connection"] == "close"
        raw_error(body, "REQUEST_TOO_LARGE")
        assert closed_within(sock, SLACK_S)  # half-closed at once (FIN after the answer)
        # the rest keeps dripping in: dropped, and the socket is closed for good (a reset) after LINGER_S
        deadline = time.monotonic() + LINGER_S + SLACK_S
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while time.monotonic() < deadline:
                sock.sendall(b" ")
                time.sleep(0.25)  # the client's pace, not a wait for the server


def test_a_silent_keep_alive_connection_is_closed_after_the_keep_alive_timeout(server) -> None:
    with connect(server) as sock:
        sock.sendall(request("/healthz"))
        assert read_response(sock)[0] == 200
        sock.sendall(request("/healthz"))  # kept alive: the same socket serves a second request
        status, headers, _ = read_response(sock)
        assert status == 200 and headers.get("connection") != "close"
        assert closed_within(sock, KEEP_ALIVE_S + SLACK_S)


def test_a_silent_new_socket_and_a_slowloris_are_closed_after_the_header_timeout(server, http) -> None:
    with connect(server) as silent, connect(server) as loris:
        loris.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer, deadline = b"", time.monotonic() + HEADER_TIMEOUT_S + SLACK_S
        loris.settimeout(0.5)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while not answer and time.monotonic() < deadline:
                loris.sendall(b"X-Slow: a\r\n")  # a header line every half second, never the blank line
                with contextlib.suppress(TimeoutError):
                    answer = loris.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        raw_error(answer.split(b"\r\n\r\n", 1)[1], "REQUEST_TIMEOUT")
        assert closed_within(loris, SLACK_S)
        assert closed_within(silent, HEADER_TIMEOUT_S + SLACK_S)  # nothing sent: closed without a word
    assert http.get("/healthz").status_code == 200


def test_oversized_headers_get_431_and_ordinary_ones_pass(server) -> None:
    with connect(server) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request("/healthz", extra=f"X-Big: {'a' * 200_000}\r\n"))
        status, headers, body = read_response(sock)
    assert status == 431
    raw_error(body, "HEADERS_TOO_LARGE")
    assert headers["x-content-type-options"] == "nosniff"
    with connect(server) as sock:
        sock.sendall(request("/healthz", extra=f"Cookie: {'c' * 16_000}\r\nConnection: close\r\n"))
        assert read_response(sock)[0] == 200


def test_an_event_stream_outlives_the_body_and_keep_alive_timeouts(server, http, photo) -> None:
    gate = server.faults.gate
    with gate.closed():
        r = http.post(
            "/v1/jobs", json={"workflow": "ad", "input": {"product_image": photo["id"], "headline": "바나나"}}
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert gate.entered.wait(60)
        events = []
        with http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=60) as stream:
            for ev in sse_events(stream):
                events.append(ev)
                if ev["event"] == "node_started" and ev["data"]["node"] == "background":
                    # quiet for longer than every timeout, then the rest arrives on the same stream
                    threading.Timer(
                        max(BODY_TIMEOUT_S, KEEP_ALIVE_S, HEADER_TIMEOUT_S) + 1, gate.open
                    ).start()
    assert events[-1]["event"] == "job_finished" and events[-1]["data"]["status"] == "succeeded"


# -- the connection cap -----------------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_server(settings: Settings) -> Iterator[int]:
    """A one-route app under uvicorn with `adgraph serve`'s options: the connection cap needs no service."""
    app = Starlette(routes=[Route("/", lambda _: PlainTextResponse("ok"))])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 30, what="the tiny server to start")
        assert thread.is_alive(), "the tiny server died starting"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_connections_past_the_cap_are_refused_while_those_within_it_are_served(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, max_connections=4, header_timeout_s=60)
    with tiny_server(settings) as port, contextlib.ExitStack() as stack:
        held = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10)) for _ in range(4)
        ]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            extra.sendall(request("/"))
            status = int(extra.recv(65536).split(b" ", 2)[1])
        assert status == 503
        for sock in held:
            sock.close()

        def served() -> bool:  # true once the server has seen the held sockets' EOFs
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request("/"))
                return int(sock.recv(65536).split(b" ", 2)[1]) == 200

        wait_until(served, 10, what="the cap to be freed")
