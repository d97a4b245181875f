"""Uploads and downloads of content-addressed files."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import FileResponse

from service.api.deps import ComponentsDep, JobsDep
from service.schemas import ArtifactOut, ErrorResponse

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])
IMMUTABLE = "public, max-age=31536000, immutable"


@router.post(
    "",
    status_code=201,
    response_model=ArtifactOut,
    responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def upload(
    jobs: JobsDep, file: Annotated[UploadFile, File(description="A PNG, JPEG or WebP image")]
) -> ArtifactOut:
    """Store an image; the same bytes always get the same id."""
    data = await file.read()  # the body limit (UploadLimit middleware) was enforced while it streamed in
    ref = await jobs.upload(data, file.filename or "upload")
    return ArtifactOut(**ref.model_dump())


@router.get(
    "/{artifact_id}",
    response_class=FileResponse,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def download(artifact_id: str, parts: ComponentsDep) -> FileResponse:
    """The artifact's bytes, cacheable forever (the id is the content's hash)."""
    ref = await asyncio.to_thread(parts.artifacts.find, artifact_id)
    return FileResponse(
        parts.artifacts.path(ref),
        media_type=ref.mime,
        headers={"Cache-Control": IMMUTABLE, "ETag": f'"{ref.id}"'},
    )


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
    ) -> None:
        self.app, self.limit, self.paths, self.json_limit = app, limit, paths, json_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        upload = scope["path"].rstrip("/") in self.paths
        limit = self.limit + self.SLACK if upload else self.json_limit
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await self._refuse(upload, scope, receive, send)
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
