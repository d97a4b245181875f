"""adgraph's MCP server: tools, resources and a prompt over the one application layer (`service.jobs.Jobs`).

Every tool parses its arguments (typed signatures → the schemas a client sees), asks `Jobs`, and renders the
answer as structured output. Long work is a fast tool that returns a job at once (`generate_ad_image`,
`generate_homepage`, `branch_job`, `resume_job`) plus `wait_for_job`, which relays the job's stored events
as progress notifications. Images come back as a small preview plus a resource link to the full file, and
photos come in as an uploaded artifact id, a data URL or base64 — never a server path. An `AdgraphError`
becomes an MCP tool error (`isError`) whose text is `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent
from PIL import Image
from pydantic import Field, ValidationError

from agents.site_schemas import Profile
from kernel.errors import AdgraphError, public
from service.accounts import LOCAL, Caller
from service.jobs import Jobs, invalid_input
from service.mcp.schemas import CheckpointList, ClipScore, FontList, ImageAnalysis, SystemStatus
from service.schemas import ArtifactOut, CheckpointOut, FontOut, JobOut, JobPage

PREVIEW_PX = 256
"""The long side of an image preview sent inline (a JPEG of a few KB, never the full file)."""
WAIT_MAX_S = 600.0
_ARTIFACT_ID = re.compile(r"^[0-9a-f]{64}$")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=.-]+)*?;base64,(?P<data>.*)$", re.S)
_JOB_ARTIFACT = re.compile(r"^job://(?P<job>[^/]+)/artifacts/(?P<name>[^/]+)$")
INSTRUCTIONS = """adgraph makes ad images from a product photo and a line of copy, and small homepages from a
business profile, as checkpointed jobs. Upload a photo (upload_image, or pass it as a data URL or base64 to
generate_ad_image), start a job, follow it with wait_for_job, look at it with get_job_result, and branch it
with new copy (branch_job from_node="analyze") to re-run only the text layer. Errors carry a stable code."""

CallerOf = Callable[[Context], Caller]


def caller_from_request(ctx: Context) -> Caller:
    """The caller of an HTTP request, from the access token the token verifier made of its key."""
    from service.mcp.auth import caller_of_token

    request = ctx.request_context.request
    user = request.scope.get("user") if request is not None else None
    token = getattr(user, "access_token", None)
    if token is None:
        raise AdgraphError("UNAUTHENTICATED", "no API key came with this request")
    return caller_of_token(token)


def local_caller(ctx: Context) -> Caller:
    """The machine's own user: `adgraph mcp` running the service in its process, like every CLI command."""
    return LOCAL


class AdgraphMCP(FastMCP):
    """FastMCP whose tool errors carry adgraph's codes, and whose artifact resources have their own MIME."""

    def __init__(self, jobs: Callable[[], Jobs], caller: CallerOf, **kw: Any) -> None:
        root, guard = logging.getLogger(), logging.NullHandler()
        root.addHandler(guard)  # FastMCP's logging.basicConfig must not configure the host's logging
        try:
            super().__init__("adgraph", instructions=INSTRUCTIONS, **kw)
        finally:
            root.removeHandler(guard)
        requests = logging.getLogger("mcp.server.lowlevel.server")
        if requests.level == logging.NOTSET:  # a line per request ("Processing request of type …") at INFO
            requests.setLevel(logging.WARNING)
        self.jobs, self.caller_of = jobs, caller

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            result = await super().call_tool(name, arguments)
        except ToolError as e:
            cause = e.__cause__
            if isinstance(cause, ValidationError):  # an argument of the wrong type or out of range
                cause = invalid_input(cause.errors())
            if isinstance(cause, AdgraphError):
                return tool_error(cause)
            raise
        if isinstance(result, tuple):  # (content, structured): FastMCP made it through the output model
            # Handed over as a finished result, so that the low-level server does not check it again with
            # a one-shot `jsonschema.validate`, which re-checks the schema itself on every call (~8 ms
            # here, most of this door's overhead; python-sdk#3133). Pydantic already validated it against
            # the model the schema is generated from.
            content, structured = result
            return CallToolResult(content=list(content), structuredContent=structured, isError=False)
        return result

    async def read_resource(self, uri: Any) -> Iterable[ReadResourceContents]:
        m = _JOB_ARTIFACT.match(str(uri))
        if m is None:
            return await super().read_resource(uri)
        ctx = self.get_context()
        jobs, caller = self.jobs(), self.caller_of(ctx)
        ref = await job_artifact(jobs, caller, m["job"], m["name"])
        data = await jobs.components.artifacts.read_bytes(ref)
        return [ReadResourceContents(content=data, mime_type=ref.mime)]


def tool_error(e: AdgraphError) -> CallToolResult:
    body = {"error": public(e)}
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(body, ensure_ascii=False))],
        structuredContent=body,
        isError=True,
    )


async def job_artifact(jobs: Jobs, caller: Caller, job_id: str, name: str) -> Any:
    """A job's result by name (`ad`, `scene`, …), or a file by artifact id the caller may see."""
    job = await jobs.get(caller, job_id)
    result = job.result or {}
    if name in result:
        return await jobs.artifact(caller, result[name]["id"])
    if _ARTIFACT_ID.match(name):
        return await jobs.artifact(caller, name)
    raise AdgraphError(
        "ARTIFACT_NOT_FOUND",
        f"job {job.id} has no result {name!r}; it has {', '.join(result) or 'none yet'}",
        name=name,
    )


def build_mcp(jobs: Callable[[], Jobs], caller: CallerOf = local_caller, **kw: Any) -> AdgraphMCP:
    """The MCP server over the `Jobs` that `jobs()` returns (the app's, once its lifespan opened it).
    `caller(ctx)` says who each request acts as; `kw` goes to FastMCP (auth, transport security, limits)."""
    mcp = AdgraphMCP(jobs, caller, **kw)

    def door(ctx: Context) -> tuple[Jobs, Caller]:
        return jobs(), caller(ctx)

    async def photo(j: Jobs, who: Caller, value: str, field: str) -> str:
        """An artifact id for a photo given as an id, a data URL or base64 (uploaded first)."""
        value = value.strip()
        if _ARTIFACT_ID.match(value):
            return value
        m = _DATA_URL.match(value)
        raw = m["data"] if m else value
        try:
            data = base64.b64decode(re.sub(r"\s+", "", raw), validate=True)
        except (binascii.Error, ValueError):
            raise AdgraphError(
                "INVALID_IMAGE",
                f"{field}: give an artifact id (upload_image), a data: URL or base64 of a PNG, JPEG or WebP; "
                "server file paths are not accepted",
                field=field,
            ) from None
        if not data:
            raise AdgraphError("INVALID_IMAGE", f"{field}: the image is empty", field=field)
        return (await j.upload(who, data, field)).id

    # -- the replaced system's eight, by their names and parameter names -------------------------------

    @mcp.tool(
        description="Start an ad job: a product photo and a line of copy → cut-out, scene and the finished "
        "ad. Returns the job at once; follow it with wait_for_job, then get_job_result."
    )
    async def generate_ad_image(
        ctx: Context,
        product_image: Annotated[
            str, Field(description="An artifact id, a data: URL or base64 of the photo")
        ],
        text_content: Annotated[str, Field(description="The headline, in the shop's words (any language)")],
        bg_prompt: Annotated[str, Field(description="The scene behind the product")] = "",
        use_qwen_analysis: Annotated[
            bool, Field(description="Kept for old clients: the server picks its analyze backend itself")
        ] = False,
        subline: str = "",
        cta: Annotated[str, Field(description="Call to action, e.g. '지금 주문하기'")] = "",
        size: Annotated[str, Field(description="1080x1080, 1080x1350, 1080x1920, …")] = "1080x1080",
        font: Annotated[str | None, Field(description="An installed family (list_fonts)")] = None,
        text_position: Annotated[str, Field(description="auto, top, bottom, left, right, …")] = "auto",
        seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0,
        priority: Annotated[int, Field(ge=-10, le=10, description="Higher is taken first")] = 0,
    ) -> JobOut:
        j, who = door(ctx)
        image = await photo(j, who, product_image, "product_image")
        raw = {
            "product_image": image,
            "headline": text_content,
            "subline": subline,
            "cta": cta,
            "background_prompt": bg_prompt,
            "size": size,
            "seed": seed,
            "text_position": text_position,
            "font": font,
        }
        return JobOut.of(await j.submit(who, "ad", raw, priority=priority))

    @mcp.tool(description="A job's status, progress, node timings and results (no waiting).")
    async def check_generation_status(ctx: Context, job_id: str) -> JobOut:
        j, who = door(ctx)
        return JobOut.of(await j.get(who, job_id))

    @mcp.tool(description="Cancel a job: a queued one at once, a running one at its next step.")
    async def stop_generation(ctx: Context, job_id: str) -> JobOut:
        j, who = door(ctx)
        return JobOut.of(await j.cancel(who, job_id))

    @mcp.tool(
        description="What an ad's text layer would learn from a photo: the product's box, free regions for "
        "text, colours and brightness."
    )
    async def analyze_image(
        ctx: Context,
        image: Annotated[str, Field(description="An artifact id, a data: URL or base64")],
    ) -> ImageAnalysis:
        j, who = door(ctx)
        artifact_id = await photo(j, who, image, "image")
        a = await j.analyze_image(who, artifact_id)
        ref = await j.artifact(who, artifact_id)
        return ImageAnalysis(
            image=artifact_id,
            width=ref.width or 0,
            height=ref.height or 0,
            product_box=a.product_box.model_dump(),
            regions=[r.model_dump(mode="json") for r in a.regions],
            dominant=a.dominant,
            accent=a.accent,
            palette=a.palette,
            brightness=a.brightness,
        )

    @mcp.tool(description="How well an image matches a text: CLIP score (needs the server's CLIP weights).")
    async def calculate_clip_score(
        ctx: Context,
        image: Annotated[str, Field(description="An artifact id, a data: URL or base64")],
        prompt: Annotated[str, Field(min_length=1, max_length=1000)],
    ) -> ClipScore:
        from gpu_runtime.clip import THRESHOLDS, interpret

        j, who = door(ctx)
        who.require("read")
        artifact_id = await photo(j, who, image, "image") if not _ARTIFACT_ID.match(image) else image
        score, model = await j.clip_score(who, artifact_id, prompt)
        return ClipScore(
            score=score,
            interpretation=interpret(score),
            thresholds=THRESHOLDS,
            model=model,
            image=artifact_id,
        )

    @mcp.tool(description="The installed fonts an ad can use (pass a family as generate_ad_image's font).")
    async def list_fonts(ctx: Context) -> FontList:
        j, who = door(ctx)
        who.require("read")
        faces = j.components.fonts.faces()
        return FontList(
            fonts=[FontOut(family=f.family, style=f.style, weight=f.weight, hangul=f.hangul) for f in faces]
        )

    @mcp.tool(
        description="Start a homepage job from a business profile (and photos: artifact ids, e.g. an ad "
        "job's result). Returns the job at once; follow it with wait_for_job."
    )
    async def generate_homepage(
        ctx: Context,
        business_info: Profile,
        style: Annotated[str | None, Field(description="warm, modern, classic, …")] = None,
        images: Annotated[
            list[str] | None, Field(description="Photos: artifact ids, data: URLs or base64")
        ] = None,
        pages: Annotated[list[str] | None, Field(description="Pages beyond index and gallery")] = None,
    ) -> JobOut:
        j, who = door(ctx)
        ids = [await photo(j, who, im, "images") for im in images or []]
        raw = {
            "profile": business_info.model_dump(exclude_none=True),
            "images": ids,
            "pages": pages,
            "style": style,
        }
        return JobOut.of(await j.submit(who, "homepage", raw))

    @mcp.tool(description="The workflows, the backend each node runs with, and the caller's jobs by status.")
    async def get_system_status(ctx: Context) -> SystemStatus:
        from service.db import JOB_STATUSES
        from service.workflows import WORKFLOWS

        j, who = door(ctx)
        who.require("read")
        choices = j.components.models.summary()["backends"]
        counts = {s: 0 for s in JOB_STATUSES}
        cursor = None
        while True:  # the caller's own jobs (the store's totals are every tenant's)
            page = await j.list(who, limit=200, cursor=cursor)
            for job in page.jobs:
                counts[job.status] += 1
            if (cursor := page.next_cursor) is None:
                break
        return SystemStatus(
            status="ok",
            workflows={w.name: list(w.nodes) for w in WORKFLOWS.values()},
            backends={node: c["backend"] for node, c in choices.items()},
            jobs=counts,
            fonts=len(j.components.fonts.faces()),
            tenant=who.tenant,
        )

    # -- adgraph's own -----------------------------------------------------------------------------

    @mcp.tool(description="Store a photo; the same bytes always get the same artifact id.")
    async def upload_image(
        ctx: Context,
        image: Annotated[str, Field(description="A data: URL or base64 of a PNG, JPEG, WebP or HEIC image")],
        name: Annotated[str, Field(max_length=200)] = "upload",
    ) -> ArtifactOut:
        j, who = door(ctx)
        artifact_id = await photo(j, who, image, name)
        return ArtifactOut(**(await j.artifact(who, artifact_id)).model_dump())

    @mcp.tool(description="The caller's jobs, newest first; pass next_cursor back as cursor for older ones.")
    async def list_jobs(
        ctx: Context,
        status: Annotated[str | None, Field(pattern="^(queued|running|succeeded|failed|cancelled)$")] = None,
        workflow: Annotated[str | None, Field(pattern="^[A-Za-z0-9_.-]{1,32}$")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        cursor: Annotated[str | None, Field(max_length=200)] = None,
    ) -> JobPage:
        j, who = door(ctx)
        return JobPage.of(await j.list(who, status=status, workflow=workflow, limit=limit, cursor=cursor))

    @mcp.tool(
        description="A job with its results: a small preview of each image and a resource link "
        "(job://ID/artifacts/NAME) to the full file."
    )
    async def get_job_result(ctx: Context, job_id: str) -> Annotated[CallToolResult, JobOut]:
        j, who = door(ctx)
        job = JobOut.of(await j.get(who, job_id))
        content: list[Any] = [TextContent(type="text", text=_summary(job))]
        for name, res in (job.result or {}).items():
            ref = await j.artifact(who, res.id)
            uri = f"job://{job.id}/artifacts/{name}"
            if ref.mime.startswith("image/"):
                content.append(await _preview(j, ref))
            content.append(
                ResourceLink(type="resource_link", uri=uri, name=name, mimeType=ref.mime, size=ref.bytes)
            )
        return CallToolResult(content=content, structuredContent=job.model_dump(mode="json"))

    @mcp.tool(
        description="A job's checkpoints, oldest first: branch_job starts from one (by id, or the one after "
        "a node, e.g. from_node='analyze' to keep the scene and redo the text layer)."
    )
    async def list_checkpoints(ctx: Context, job_id: str) -> CheckpointList:
        j, who = door(ctx)
        cps = await j.checkpoints(who, job_id)
        return CheckpointList(job_id=job_id, checkpoints=[CheckpointOut.of(cp) for cp in cps])

    @mcp.tool(
        description="A new job from one of a job's checkpoints with some inputs changed (ad: headline, "
        "subline, cta, background_prompt, seed, font); only the nodes after it run. The source is untouched."
    )
    async def branch_job(
        ctx: Context,
        job_id: str,
        checkpoint_id: Annotated[str | None, Field(max_length=64)] = None,
        from_node: Annotated[
            str | None, Field(max_length=32, description="e.g. analyze (the text layer runs again)")
        ] = None,
        overrides: Annotated[
            dict[str, Any] | None, Field(description='Inputs to change, e.g. {"headline": "…"}')
        ] = None,
    ) -> JobOut:
        j, who = door(ctx)
        child = await j.branch(
            who, job_id, checkpoint_id=checkpoint_id, from_node=from_node, changes=overrides
        )
        return JobOut.of(child)

    @mcp.tool(description="Continue a failed or cancelled job from its last checkpoint.")
    async def resume_job(ctx: Context, job_id: str) -> JobOut:
        j, who = door(ctx)
        return JobOut.of(await j.resume(who, job_id))

    @mcp.tool(
        description="Wait for a job to finish, with a progress notification for each of its events (node "
        "started/finished, progress); returns the job when it ends or after timeout_s."
    )
    async def wait_for_job(
        ctx: Context, job_id: str, timeout_s: Annotated[float, Field(gt=0, le=WAIT_MAX_S)] = 50.0
    ) -> JobOut:
        j, who = door(ctx)
        job = await j.get(who, job_id)
        last = 0.0

        async def follow() -> None:
            nonlocal last
            async for ev in j.events(who, job.id):
                snap = ev.data.get("progress") or {}
                percent = float(snap.get("percent", last))
                last = max(percent, last + 0.01)  # progress must increase with every notification
                what = ev.data.get("node") or ev.data.get("name") or ev.data.get("status") or ""
                await ctx.report_progress(last, 100.0, f"{ev.type} {what}".strip())

        with j.stream_slot(who), contextlib.suppress(TimeoutError):
            await asyncio.wait_for(follow(), timeout_s)
        return JobOut.of(await j.get(who, job.id))

    # -- resources and the prompt --------------------------------------------------------------------

    @mcp.resource("job://{job_id}", name="job", mime_type="application/json", description="A job's status")
    async def job_resource(job_id: str) -> str:
        j, who = door(mcp.get_context())
        return JobOut.of(await j.get(who, job_id)).model_dump_json()

    @mcp.resource(
        "job://{job_id}/artifacts/{name}",
        name="job artifact",
        description="A job's result file by name (ad, scene, cutout, …) or artifact id",
    )
    async def artifact_resource(job_id: str, name: str) -> bytes:  # read by AdgraphMCP.read_resource
        raise AssertionError("unreachable")

    @mcp.prompt(name="plan_ad", title="Plan an ad for my product")
    def plan_ad(product: str, audience: str = "", photo: str = "") -> str:
        """Plan an ad for my product: upload → generate → look → branch with new copy."""
        who = f" for {audience}" if audience else ""
        have = f" The photo is {photo}." if photo else " Ask me for a product photo first."
        return (
            f"Help me make an ad image for my product: {product}{who}.{have}\n"
            "1. Upload the photo with upload_image (a data: URL or base64) and keep its artifact id.\n"
            "2. Propose a short headline, a subline and a call to action in my language, and a background "
            "prompt that suits the product; then call generate_ad_image with them.\n"
            "3. Call wait_for_job with the job id, then get_job_result, and look at the preview: is the text "
            "readable, does it cover the product, does the scene fit?\n"
            "4. For new copy, call branch_job with from_node='analyze' and overrides such as "
            '{"headline": "…"}: only the text layer is made again. Wait for it and show me both.\n'
            "If a tool answers an error, read its code (INVALID_IMAGE, INVALID_INPUT, JOB_NOT_FOUND, …) "
            "and fix the input it names."
        )

    return mcp


def _summary(job: JobOut) -> str:
    line = f"job {job.id} ({job.workflow}) is {job.status}: {job.progress.percent}% {job.progress.message}"
    if job.error:
        line += f"; error {job.error.code}: {job.error.message}"
    if job.result:
        line += "; results: " + ", ".join(f"{n} (job://{job.id}/artifacts/{n})" for n in job.result)
    return line


async def _preview(j: Jobs, ref: Any) -> ImageContent:
    path = await j.components.artifacts.local_path(ref)

    def small() -> bytes:
        with Image.open(path) as im:
            im.thumbnail((PREVIEW_PX, PREVIEW_PX))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="JPEG", quality=80)
            return buf.getvalue()

    data = await asyncio.to_thread(small)
    return ImageContent(type="image", data=base64.b64encode(data).decode(), mimeType="image/jpeg")
