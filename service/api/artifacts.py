"""Uploads and downloads of content-addressed files."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, File, Header, Response, UploadFile
from fastapi.responses import FileResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from kernel.errors import AdgraphError
from service.api.deps import CALLER, CallerDep, ComponentsDep, JobsDep, presented_key
from service.api.http_safety import attachment
from service.schemas import ArtifactOut, ErrorResponse

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])
IMMUTABLE = "private, max-age=31536000, immutable"
"""Never `public`: an artifact is its tenant's, so no shared cache may keep it for others."""


@router.post(
    "",
    status_code=201,
    response_model=ArtifactOut,
    responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def upload(
    jobs: JobsDep,
    caller: CallerDep,
    file: Annotated[UploadFile, File(description="A PNG, JPEG or WebP image")],
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Any:
    """Store an image; the same bytes always get the same id, visible to the uploader's tenant only."""
    data = await file.read()  # the body limit (UploadLimit middleware) was enforced while it streamed in
    name = file.filename or "upload"

    async def answer() -> tuple[int, Any]:
        ref = await jobs.upload(caller, data, name)
        return 201, ArtifactOut(**ref.model_dump()).model_dump(mode="json")

    request = {"sha256": hashlib.sha256(data).hexdigest()}
    response.status_code, out = await jobs.once(
        caller, "POST /v1/artifacts", idempotency_key, request, answer
    )
    return out


@router.head("/{artifact_id}", include_in_schema=False)  # the headers alone (size, type, ETag)
@router.get(
    "/{artifact_id}",
    response_class=FileResponse,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def download(artifact_id: str, jobs: JobsDep, caller: CallerDep, parts: ComponentsDep) -> FileResponse:
    """The artifact's bytes, cacheable forever (the id is the content's hash)."""
    ref = await jobs.artifact(caller, artifact_id)
    return StoredFile(
        await parts.artifacts.local_path(ref),  # downloaded first from a shared store if not here yet
        media_type=ref.mime,
        headers={"Cache-Control": IMMUTABLE, "ETag": f'"{ref.id}"', **attachment(ref.id, ref.mime)},
    )


class StoredFile(FileResponse):
    """A FileResponse whose Range errors come in the one error shape (Starlette's are plain text): 416
    RANGE_NOT_SATISFIABLE past the end, 400 INVALID_INPUT for a header that is no byte range."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader as e:
            raise HTTPException(400, f"malformed Range header {http_range[:100]!r}: {e.content}") from None
        except RangeNotSatisfiable:
            raise HTTPException(
                416,
                f"Range {http_range[:100]!r} starts past the end of the artifact ({file_size} bytes)",
                headers={"Content-Range": f"bytes */{file_size}"},
            ) from None


class UploadLimit:
    """Refuse a request body over its limit as it streams in, before it is buffered whole.

    Uploads to `paths` may carry `limit` bytes (IMAGE_TOO_LARGE); every other body, all JSON, `json_limit`
    (REQUEST_TOO_LARGE). Pure ASGI: past a limit it answers 413 itself and tells the app the client left.
    """

    SLACK = 64 * 1024  # multipart framing and headers around the file

    def __init__(
        self,
        app,
        limit: int,
        paths: tuple[str, ...] = ("/v1/artifacts", "/v1/evaluations/clip-score"),
        json_limit: int = 2**20,
        json_limits: dict[str, int] | None = None,
    ) -> None:
        self.app, self.limit, self.paths, self.json_limit = app, limit, paths, json_limit
        self.json_limits = json_limits or {}
        """JSON bodies of these paths may be larger (MCP's /mcp carries photos as base64)."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        upload = scope["path"].rstrip("/") in self.paths
        limit = self.limit + self.SLACK if upload else self.json_limits.get(scope["path"], self.json_limit)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await self._refuse(upload, scope, receive, send)
        if upload and not await self._authenticated(scope, receive, send):
            return None  # 401/429 answered before a byte of the file is read
        seen, refused = 0, False

        async def limited_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    await self._refuse(upload, scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _authenticated(self, scope, receive, send) -> bool:
        """Who sends an upload is known before the upload is read: an unauthenticated client cannot make
        the server spool megabytes. The caller is left in the scope for the route (see deps.CALLER)."""
        from service.api.errors import domain_response

        try:
            caller = await scope["app"].state.jobs.authenticate(presented_key(Headers(scope=scope)))
        except AdgraphError as e:
            await domain_response(e)(scope, receive, send)
            return False
        scope.setdefault("state", {})[CALLER] = caller
        return True

    async def _refuse(self, upload: bool, scope, receive, send) -> None:
        from service.api.errors import error_response

        if upload:
            code, limit, setting = "IMAGE_TOO_LARGE", self.limit, "ADGRAPH_MAX_UPLOAD_BYTES"
            what = "the upload"
        else:
            code, limit, setting = "REQUEST_TOO_LARGE", self.json_limit, None
            what = "the request body"
        message = f"{what} is over the {limit} byte limit" + (f" ({setting})" if setting else "")
        response = error_response(code, message, 413, {"limit_bytes": limit})
        await response(scope, receive, send)
