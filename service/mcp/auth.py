"""MCP over Streamable HTTP inside the FastAPI app: the same API keys as Bearer tokens, checked by the SDK's
`TokenVerifier` through `Jobs.authenticate` (tenant, scopes, rate), and the SDK's Host/Origin checks from
the same settings as the rest of the server."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Receive, Scope, Send

from kernel.errors import AdgraphError
from service.accounts import Caller
from service.jobs import Jobs
from service.settings import Settings

PATH = "/mcp"
OPEN_TOKEN = "adgraph-open-server"
"""What a request without a key is verified as: the open server's caller while no key is needed (ADGRAPH_AUTH
auto before the first key, or open), else refused like any bad key. Sending it yourself gains nothing."""
_REFUSED = "adgraph_refused"


class KeyVerifier:
    """The SDK's token verifier over adgraph's keys: a valid key is an `AccessToken` carrying its `Caller`."""

    def __init__(self, jobs: Callable[[], Jobs]) -> None:
        self.jobs = jobs

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            caller = await self.jobs().authenticate(None if token == OPEN_TOKEN else token)
        except AdgraphError as e:
            if e.code == "UNAUTHENTICATED":
                return None  # the SDK answers 401 with WWW-Authenticate
            # a known key over its rate: the request goes on and every tool answers the error with its code
            return AccessToken(token=token, client_id="refused", scopes=[], claims={_REFUSED: e.to_dict()})
        claims = {**asdict(caller), "scopes": sorted(caller.scopes)}
        return AccessToken(
            token=token, client_id=caller.key_id or "local", scopes=sorted(caller.scopes), claims=claims
        )


def caller_of_token(token: AccessToken) -> Caller:
    claims = token.claims or {}
    if _REFUSED in claims:
        err = claims[_REFUSED]
        raise AdgraphError(err["code"], err["message"], **err["details"])
    return Caller(**{**claims, "scopes": frozenset(claims["scopes"])})


class OpenServer:
    """A request with no `Authorization` is verified as OPEN_TOKEN (see there), so that an open server needs
    no key over MCP either, exactly as over REST."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "authorization" not in Headers(scope=scope):
            scope = {**scope, "headers": list(scope["headers"])}
            headers = MutableHeaders(scope=scope)
            headers["authorization"] = f"Bearer {OPEN_TOKEN}"
        await self.app(scope, receive, send)


def mcp_options(settings: Settings, jobs: Callable[[], Jobs]) -> dict[str, Any]:
    """FastMCP's keyword arguments for the HTTP door: the verifier, the auth metadata, the Host/Origin
    allowlist (ADGRAPH_TRUSTED_HOSTS, ADGRAPH_CORS_ORIGINS) and a body limit that fits a base64 photo."""
    hosts = settings.trusted_hosts or ["localhost", "127.0.0.1", "::1"]
    if any("*" in h for h in hosts):  # wildcards: the app's TrustedHosts middleware checks Host alone
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    else:
        names = [f"[{h}]" if ":" in h else h for h in hosts]
        origins = [f"{scheme}://{n}" for n in names for scheme in ("http", "https")]
        security = TransportSecuritySettings(
            allowed_hosts=[*names, *(f"{n}:*" for n in names)],
            allowed_origins=[*origins, *(f"{o}:*" for o in origins), *settings.cors_origins],
        )
    return {
        "token_verifier": KeyVerifier(jobs),
        "auth": AuthSettings(
            issuer_url="http://localhost",  # keys come from `adgraph keys create`, not from an OAuth server
            resource_server_url=None,
            required_scopes=[],
        ),
        "transport_security": security,
        "max_request_body_size": body_limit(settings),
        "streamable_http_path": PATH,
    }


def body_limit(settings: Settings) -> int:
    """The largest MCP request: a photo of ADGRAPH_MAX_UPLOAD_BYTES as base64, and the JSON around it."""
    return math.ceil(settings.max_upload_bytes * 4 / 3) + 64 * 1024
