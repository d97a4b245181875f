"""The `adgraph` command: a thin door over the job service (`service.jobs`).

Commands that make or continue a job (`ad`, `homepage`, `jobs resume|branch`) open the service over the
same database as `adgraph serve`, create the job's row and run it in this process; `jobs list|show|
checkpoints` read it. A job made here is listed by the API, and the other way round.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kernel.errors import AdgraphError

if TYPE_CHECKING:
    from service.jobs import Jobs
    from service.settings import Settings

app = typer.Typer(
    help="AI ad creatives and small-business homepages as checkpointed LangGraph workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="List, inspect, resume and branch jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
models_app = typer.Typer(
    help="The GPU models on this machine and the backend each node gets.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
keys_app = typer.Typer(help="API keys: who may use the server, as which tenant.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

OutOpt = Annotated[Path, typer.Option("--out", help="Folder for the job's files and result.json.")]
AgentsOpt = Annotated[
    str | None,
    typer.Option(
        help="Who plans, designs and codes: 'rules', or 'llm' (the rules take over any part it gets wrong). "
        "Default: ADGRAPH_AGENTS, else rules."
    ),
]
_ARTIFACT_ID = re.compile(r"^[0-9a-f]{64}$")


def _run(coro_fn: Callable[[], Coroutine[Any, Any, int]]) -> None:
    try:
        code = asyncio.run(coro_fn())
    except AdgraphError as e:
        typer.echo(json.dumps({"error": e.to_dict()}, ensure_ascii=False))
        typer.echo(f"error: {e.code}: {e.message}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _local() -> Any:
    """The caller CLI commands act as: the machine's administrator (they work on the database itself)."""
    from service.accounts import LOCAL

    return LOCAL


def _settings(agents: str | None = None) -> Settings:
    """Settings from the environment, with `--agents` (if given) over ADGRAPH_AGENTS."""
    from service.settings import Settings

    if agents is None:
        return Settings()
    if agents not in ("rules", "llm"):
        raise AdgraphError("INVALID_INPUT", f"--agents {agents!r}: choose 'rules' or 'llm'", field="agents")
    return Settings(agents=agents)


@asynccontextmanager
async def _service(settings: Settings | None = None, *, run_jobs: bool = True) -> AsyncIterator[Jobs]:
    """The job service in this process: it runs the jobs it makes here, and takes none from the queue."""
    from service.jobs import open_service

    async with open_service(settings or _settings(), run_jobs=run_jobs, evaluations=False) as jobs:
        yield jobs


def _say(message: str) -> None:
    print(f"adgraph: {message}", file=sys.stderr, flush=True)


def _progress(kind: str, data: dict[str, Any]) -> None:
    """A running job's events, as lines on stderr."""
    if kind == "node_started":
        _say(f"{data['node']} started")
    elif kind == "node_finished":
        _say(f"{data['name']} {data['status']} in {data['seconds']:.2f}s")
    elif kind == "checkpoint":
        _say(f"checkpoint {data['id']} after {data['node']}")
    elif kind == "progress" and data.get("message"):
        _say(f"{data['node']}: {data['message']}")
    elif kind == "fallback":
        _say(f"{data['node']}: {data.get('agent')} fell back for {data.get('part')}: {data.get('reason')}")


async def _run_and_write(jobs: Jobs, job: Any, out: Path) -> int:
    """Run a job this process holds, write its files and result.json into `out`, print result.json."""
    from service.outputs import write_result
    from service.workflows import WORKFLOWS

    result = await jobs.run(job, _progress)
    doc = await asyncio.to_thread(
        write_result, WORKFLOWS[job.workflow], result, jobs.components.artifacts, out
    )
    typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    if result.error is not None:
        typer.echo(
            f"error: {result.error.code}: {result.error.message} "
            f"(resume with: adgraph jobs resume {result.job_id} --out {out})",
            err=True,
        )
        return 1
    return 0 if result.status == "succeeded" else 1


def _read_photo(path: Path, settings: Settings, field: str) -> bytes:
    """A photo's bytes, checked before anything is opened or stored (INVALID_IMAGE, IMAGE_TOO_LARGE)."""
    from checkpoints.ingest import validate_image

    if not path.is_file():
        code = "INVALID_INPUT" if field == "product" else "INVALID_IMAGE"
        raise AdgraphError(code, f"no file at {path}", field=field)
    data = path.read_bytes()
    validate_image(data, max_pixels=settings.max_image_pixels, name=str(path))
    return data


@app.command()
def ad(
    product: Annotated[Path, typer.Option(help="The product photo (PNG, JPEG or WebP).")],
    headline: Annotated[
        list[str], typer.Option(help="The main line of copy; repeat it for one ad per copy (up to 8).")
    ],
    prompt: Annotated[str, typer.Option(help="What the background should look like.")],
    out: OutOpt,
    subline: Annotated[
        list[str] | None,
        typer.Option(help="A second, smaller line: once for every copy, or once per headline."),
    ] = None,
    cta: Annotated[
        list[str] | None,
        typer.Option(help="A call to action, drawn as a button: once, or once per headline."),
    ] = None,
    size: Annotated[
        list[str] | None,
        typer.Option(
            help="1080x1080 (default), 1200x628 or 1080x1920; repeat it for one ad per size (up to 3)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same backdrop.")] = 0,
    text_position: Annotated[str, typer.Option(help="auto, top, center or bottom.")] = "auto",
    font: Annotated[str | None, typer.Option(help="An installed font family (see `adgraph fonts`).")] = None,
    restyle: Annotated[
        float | None,
        typer.Option(
            help="With FLUX: img2img strength (0-1] from a first composition of the product, so light "
            "and shadows fit it. Unset: the background comes from the prompt alone."
        ),
    ] = None,
    agents: AgentsOpt = None,
) -> None:
    """Make an ad from a product photo and a line of copy: cutout.png, scene.png, ad.png, result.json.
    Several --headline or --size: one ad per copy and size, sharing the cut-out (and, per size, the
    backdrop); the first in --out, each other in --out/variant-NN-SIZE/, all in --out/variants.zip."""

    async def main() -> int:
        from service.workflows.ad import AdOptions

        settings = _settings(agents)
        options = {
            **_copies(headline, subline or [], cta or []),
            "background_prompt": prompt,
            **_sizes(size or []),
            "seed": seed,
            "text_position": text_position,
            "font": font,
            "restyle": restyle,
        }
        from service.jobs import parse

        parse(AdOptions, options)  # bad copy or options: refused before anything is opened or started
        if font:  # so is a font that is not installed (submit checks it again, for every door)
            from nodes.backends.fonts import FontconfigCatalog

            FontconfigCatalog().resolve(font)
        data = await asyncio.to_thread(_read_photo, product, settings, "product")
        async with _service(settings) as jobs:
            photo = await jobs.upload(_local(), data, str(product))
            job = await jobs.submit(_local(), "ad", {"product_image": photo.id, **options}, run_here=True)
            _say(f"job {job.id}")
            code = await _run_and_write(jobs, job, out)
            if job.variant_of is not None:
                code = max(code, await _run_variants(jobs, job, out))
            return code

    _run(main)


def _copies(headlines: list[str], sublines: list[str], ctas: list[str]) -> dict[str, Any]:
    """--headline/--subline/--cta as the job's copy, or as `copies` when there are several headlines."""
    for name, values in (("subline", sublines), ("cta", ctas)):
        if len(values) not in (0, 1, len(headlines)):
            raise AdgraphError(
                "INVALID_INPUT",
                f"--{name} is given {len(values)} times for {len(headlines)} headlines: give it once "
                "(for every copy) or once per headline",
                field=name,
            )

    def nth(values: list[str], i: int) -> str:
        return values[i] if len(values) > 1 else values[0] if values else ""

    copies = [
        {"headline": h, "subline": nth(sublines, i), "cta": nth(ctas, i)} for i, h in enumerate(headlines)
    ]
    return {**copies[0], **({"copies": copies} if len(copies) > 1 else {})}


def _sizes(sizes: list[str]) -> dict[str, Any]:
    if not sizes:
        return {"size": "1080x1080"}
    return {"size": sizes[0], **({"sizes": sizes} if len(sizes) > 1 else {})}


async def _run_variants(jobs: Jobs, job: Any, out: Path) -> int:
    """The other variants of the job this process just ran: run here as each is branched, each one's
    files in out/variant-NN-SIZE/, all of them in out/variants.zip, the set in out/variants.json."""
    from service.outputs import write_result
    from service.schemas import VariantsOut
    from service.variants import Variants
    from service.workflows import WORKFLOWS

    variants = Variants(jobs)
    if (await variants.get(_local(), job.id)).status not in ("queued", "running"):
        return 1  # the first failed: nothing was branched from it (`adgraph jobs resume` continues it)

    def done(child: Any, result: Any) -> None:
        label = f"variant-{child.variant + 1:02d}-{child.input.get('size')}"
        if result is not None:
            write_result(WORKFLOWS[child.workflow], result, jobs.components.artifacts, out / label)
        error = f" {child.error['code']}" if child.error else ""
        _say(f"variant {child.variant + 1} {child.status}{error} ({label})")

    view = await variants.run_here(_local(), job.id, done)
    await variants.write_zip(_local(), job.id, out / "variants.zip")
    doc = {**VariantsOut.of(view).model_dump(mode="json"), "zip": str(out / "variants.zip")}
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    await asyncio.to_thread((out / "variants.json").write_text, text, encoding="utf-8")
    _say(f"{view.counts['succeeded']} of {len(view.variants)} variants succeeded: {out}/variants.zip")
    return 0 if view.status == "succeeded" else 1


@app.command()
def homepage(
    profile: Annotated[Path, typer.Option(help="The business profile (JSON): store_name, store_type, …")],
    out: Annotated[Path, typer.Option("--out", help="Folder for site/, screens/, site.zip, result.json.")],
    image: Annotated[
        list[str] | None,
        typer.Option(
            help="A photo for the hero and gallery: a file or an artifact id (e.g. an ad). Repeatable."
        ),
    ] = None,
    page: Annotated[
        list[str] | None,
        typer.Option(help="A page to make (about, menu, contact); index and gallery always."),
    ] = None,
    style: Annotated[
        str | None, typer.Option(help="A style hint: warm, modern, classic, playful, minimal…")
    ] = None,
    agents: AgentsOpt = None,
) -> None:
    """Make a small self-contained website (pages, screenshots, zip) from a business profile."""

    async def main() -> int:
        from service.jobs import parse
        from service.workflows.homepage import HomepageJobInput

        settings = _settings(agents)
        fields = {
            "profile": await asyncio.to_thread(_read_profile, profile),
            "pages": page or None,
            "style": style,
        }
        parse(HomepageJobInput, fields)  # before anything is opened
        images = image or []
        files = {
            item: await asyncio.to_thread(_read_photo, Path(item), settings, "image")
            for item in images
            if not _ARTIFACT_ID.match(item)
        }
        async with _service(settings) as jobs:
            ids = [(await jobs.upload(_local(), files[i], i)).id if i in files else i for i in images]
            job = await jobs.submit(_local(), "homepage", {**fields, "images": ids}, run_here=True)
            _say(f"homepage job {job.id}")
            return await _run_and_write(jobs, job, out)

    _run(main)


def _read_profile(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise AdgraphError("INVALID_INPUT", f"no profile file at {path}", field="profile")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdgraphError("INVALID_INPUT", f"{path} is not JSON: {e}", field="profile") from None
    if not isinstance(data, dict):
        raise AdgraphError(
            "INVALID_INPUT", f"{path} must hold a JSON object of profile fields", field="profile"
        )
    return data


CSV_COLUMNS = ("photo", "headline", "subline", "cta", "prompt", "size")


@app.command()
def catalog(
    csv_file: Annotated[
        Path, typer.Option("--csv", help="Columns photo,headline,subline,cta,prompt,size (one ad a row).")
    ],
    photos: Annotated[Path, typer.Option(help="The folder the photo column's file names are in.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for row-NNN.png, catalog.zip, result.json.")],
    size: Annotated[str, typer.Option(help="The size of rows whose size column is empty.")] = "1080x1080",
    agents: AgentsOpt = None,
) -> None:
    """Make one ad per CSV row as one batch, run here: every row is checked before any runs."""

    async def main() -> int:
        from service.batches import Batches
        from service.schemas import BatchJobs, BatchOut

        settings = _settings(agents)
        rows = await asyncio.to_thread(_read_catalog, csv_file, size)
        bad: list[str] = []
        data: dict[int, bytes] = {}
        for n, row in enumerate(rows, start=1):
            try:
                data[n] = await asyncio.to_thread(_read_photo, photos / row.pop("photo"), settings, "image")
            except AdgraphError as e:
                bad.append(f"row {n}: photo: {e.message}")
        if bad:
            raise AdgraphError("INVALID_INPUT", "; ".join(bad), rows=bad)
        async with _service(settings) as jobs:
            batches = Batches(jobs)
            inputs = []
            for n, row in enumerate(rows, start=1):
                photo = await jobs.upload(_local(), data.pop(n), f"row {n}")
                inputs.append({"product_image": photo.id, **row})
            view = await batches.create(_local(), "ad", inputs, run_here=True, meta={"csv": csv_file.name})
            _say(f"batch {view.batch.id}: {view.batch.rows} rows")
            out.mkdir(parents=True, exist_ok=True)

            async def done(job: Any, _result: Any) -> None:
                now = await batches.get(_local(), view.batch.id)
                c = now.counts
                error = f" {job.error['code']}" if job.error else ""
                _say(
                    f"row {job.batch_row} {job.status}{error}: {c['succeeded']} succeeded, {c['failed']} "
                    f"failed of {now.batch.rows} ({now.percent}%, eta {now.eta_seconds}s)"
                )

            view = await batches.run_here(_local(), view.batch.id, done)
            store = jobs.components.artifacts
            from service.outputs import atomic_copy

            for job in view.jobs:
                ref = (job.result or {}).get("ad") if job.status == "succeeded" else None
                target = out / f"row-{job.batch_row:03d}.png"
                if ref:
                    path = await store.local_path(ref["id"], ref["mime"])
                    await asyncio.to_thread(atomic_copy, path, target)
                else:
                    await asyncio.to_thread(target.unlink, missing_ok=True)
            await batches.write_zip(_local(), view.batch.id, out / "catalog.zip")
            doc = {
                **BatchOut.of(view).model_dump(mode="json"),
                "jobs": BatchJobs.of(view).model_dump(mode="json")["jobs"],
                "zip": str(out / "catalog.zip"),
            }
            text = json.dumps(doc, indent=2, ensure_ascii=False)
            await asyncio.to_thread((out / "result.json").write_text, text, encoding="utf-8")
            typer.echo(text)
            return 0 if view.status == "succeeded" else 1

    _run(main)


def _read_catalog(path: Path, size: str) -> list[dict[str, Any]]:
    """The CSV's rows as job inputs (photo still a file name); INVALID_INPUT for a missing file, a
    missing column, no rows."""
    import csv

    if not path.is_file():
        raise AdgraphError("INVALID_INPUT", f"no CSV file at {path}", field="csv")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("photo", "headline") if c not in (reader.fieldnames or [])]
        if missing:
            raise AdgraphError(
                "INVALID_INPUT",
                f"{path.name} has no {', '.join(missing)} column; columns: {', '.join(CSV_COLUMNS)}",
                field="csv",
            )
        rows = []
        for line in reader:
            get = {k: (v or "").strip() for k, v in line.items() if k}
            rows.append(
                {
                    "photo": get.get("photo", ""),
                    "headline": get.get("headline", ""),
                    "subline": get.get("subline", ""),
                    "cta": get.get("cta", ""),
                    "background_prompt": get.get("prompt", ""),
                    "size": get.get("size") or size,
                }
            )
    if not rows:
        raise AdgraphError("INVALID_INPUT", f"{path.name} has no rows", field="csv")
    return rows


# -- jobs ----------------------------------------------------------------------------------------------


def _print(model: Any) -> None:
    typer.echo(
        model.model_dump_json(indent=2) if hasattr(model, "model_dump_json") else json.dumps(model, indent=2)
    )


@jobs_app.command("list")
def jobs_list(
    status: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    workflow: Annotated[str | None, typer.Option(help="ad or homepage.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="`next_cursor` of the previous page.")] = None,
) -> None:
    """Jobs newest first, made from any door (CLI, API), as JSON like GET /v1/jobs."""

    async def main() -> int:
        from service.schemas import JobPage

        async with _service(run_jobs=False) as jobs:
            page = await jobs.list(_local(), status=status, workflow=workflow, limit=limit, cursor=cursor)
            _print(JobPage.of(page))
        return 0

    _run(main)


@jobs_app.command("show")
def jobs_show(
    job_id: str,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Also write its files and result.json here (nodes: every run's, all attempts)."
        ),
    ] = None,
) -> None:
    """One job as JSON like GET /v1/jobs/{id}: status, progress, nodes, results, error, parent."""

    async def main() -> int:
        from service.outputs import write_result
        from service.running import RunResult
        from service.schemas import JobOut

        async with _service(run_jobs=False) as jobs:
            job = await jobs.get(_local(), job_id)
            _print(JobOut.of(job))
            if out is not None:
                wf, values = await jobs.final_state(_local(), job.id)
                checkpoints = await jobs.checkpoints(_local(), job.id)
                result = RunResult(
                    job_id=job.id,
                    status=job.status,
                    values=values,
                    nodes=[{k: n[k] for k in ("name", "status", "seconds")} for n in job.nodes or []],
                    checkpoints=[
                        {"id": c.info.id, "step": c.info.step, "node": c.info.node} for c in checkpoints
                    ],
                    error=_error_of(job.error),
                    parent={"job_id": job.parent_job_id, "checkpoint_id": job.parent_checkpoint_id}
                    if job.parent_job_id
                    else None,
                )
                await asyncio.to_thread(write_result, wf, result, jobs.components.artifacts, out)
                _say(f"files in {out}/")
        return 0

    _run(main)


def _error_of(stored: dict[str, Any] | None) -> AdgraphError | None:
    if not stored:
        return None
    return AdgraphError(stored["code"], stored["message"], **(stored.get("details") or {}))


@jobs_app.command("checkpoints")
def jobs_checkpoints(job_id: str) -> None:
    """A job's checkpoints, oldest first: id, step, the node that wrote it, time, preview."""

    async def main() -> int:
        from service.schemas import CheckpointOut

        async with _service(run_jobs=False) as jobs:
            found = await jobs.checkpoints(_local(), job_id)
            rows = [CheckpointOut.of(cp).model_dump(mode="json") for cp in found]
        typer.echo(json.dumps(rows, indent=2))
        return 0

    _run(main)


@jobs_app.command("delete")
def jobs_delete(job_id: str) -> None:
    """Delete a finished job (like DELETE /v1/jobs/{id}): its checkpoints, events, row and the files only
    it used; a queued or running one is JOB_NOT_DELETABLE (cancel it first)."""

    async def main() -> int:
        async with _service(run_jobs=False) as jobs:
            await jobs.delete(_local(), job_id)
        _say(f"job {job_id} deleted")
        return 0

    _run(main)


@jobs_app.command("resume")
def jobs_resume(job_id: str, out: OutOpt, agents: AgentsOpt = None) -> None:
    """Continue a job that failed, was cancelled or was killed, from its last checkpoint, here."""

    async def main() -> int:
        async with _service(_settings(agents)) as jobs:
            job = await jobs.resume(_local(), job_id, run_here=True)
            return await _run_and_write(jobs, job, out)

    _run(main)


@jobs_app.command("branch")
def jobs_branch(
    job_id: str,
    out: OutOpt,
    from_checkpoint: Annotated[
        str | None, typer.Option("--from", help="Checkpoint id to branch from.")
    ] = None,
    from_node: Annotated[str | None, typer.Option(help="Branch from the checkpoint after this node.")] = None,
    headline: Annotated[str | None, typer.Option()] = None,
    subline: Annotated[str | None, typer.Option()] = None,
    cta: Annotated[str | None, typer.Option()] = None,
    prompt: Annotated[str | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    font: Annotated[str | None, typer.Option()] = None,
    style: Annotated[
        str | None, typer.Option(help="Homepage jobs: a new style hint (branch from `plan`: same plan).")
    ] = None,
    agents: AgentsOpt = None,
) -> None:
    """Start a new job from a checkpoint of JOB_ID with new inputs, here; the source job is unchanged."""

    async def main() -> int:
        changes = {
            "headline": headline,
            "subline": subline,
            "cta": cta,
            "background_prompt": prompt,
            "seed": seed,
            "font": font,
            "style": style,
        }
        changes = {k: v for k, v in changes.items() if v is not None}  # an option not given changes nothing
        async with _service(_settings(agents)) as jobs:
            job = await jobs.branch(
                _local(),
                job_id,
                checkpoint_id=from_checkpoint,
                from_node=from_node,
                changes=changes,
                run_here=True,
            )
            _say(f"job {job.id} branched from {job.parent_job_id} at {job.parent_checkpoint_id}")
            return await _run_and_write(jobs, job, out)

    _run(main)


# -- keys ------------------------------------------------------------------------------------------------


def _key_row(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant": row.tenant,
        "scopes": row.scopes,
        "rate": row.rate,
        "max_running": row.max_running,
        "created_at": row.created_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


@keys_app.command("create")
def keys_create(
    tenant: Annotated[
        str, typer.Option(help="Whose jobs and files the key reaches (letters, digits, . _ -).")
    ],
    scope: Annotated[str, typer.Option(help="Comma-separated: read, submit, admin.")] = "submit,read",
    rate: Annotated[
        str | None, typer.Option(help="Requests allowed, e.g. 60/minute (default: the server's).")
    ] = (None),
    max_running: Annotated[
        int | None, typer.Option(help="Jobs queued or running at once (default: no limit).")
    ] = (None),
) -> None:
    """Make an API key and print it once (only its HMAC digest is stored). Once any key exists, the server
    refuses requests without one."""

    async def main() -> int:
        async with _service(run_jobs=False) as jobs:
            scopes = [s for s in scope.split(",") if s.strip()]
            key, row = await jobs.accounts.create(tenant, scopes, rate=rate, max_running=max_running)
        typer.echo(json.dumps({"key": key, **_key_row(row)}, indent=2))
        _say("keep the key now: it is not shown again")
        return 0

    _run(main)


@keys_app.command("list")
def keys_list() -> None:
    """Every key: id, tenant, scopes, limits, when made and revoked (never the key itself)."""

    async def main() -> int:
        async with _service(run_jobs=False) as jobs:
            rows = [_key_row(r) for r in await jobs.accounts.list()]
        typer.echo(json.dumps(rows, indent=2))
        return 0

    _run(main)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (`adgraph keys list`); servers refuse it within two seconds."""

    async def main() -> int:
        async with _service(run_jobs=False) as jobs:
            typer.echo(json.dumps(_key_row(await jobs.accounts.revoke(key_id)), indent=2))
        return 0

    _run(main)


# -- the server and its clients ----------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes started beside the API; 0: on SQLite the API process runs the jobs, on "
            "PostgreSQL (procrastinate) it is an API server only and `adgraph worker`s run them."
        ),
    ] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (off by default: status polls would flood the log).")
    ] = False,
) -> None:
    """Run the REST job service (jobs survive restarts; see /docs)."""
    import gc
    import subprocess

    import uvicorn

    from service.app import create_app
    from service.observability import configure_logging
    from service.processes import child_preexec, parse_cpu_list

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)  # uvicorn's lines too (log_config=None below)
    if workers > 1 and settings.database.startswith("sqlite"):
        raise typer.BadParameter(
            "SQLite takes one worker process; use ADGRAPH_DATABASE_URL=postgresql://… for more"
        )
    from service.accounts import startup_check

    try:
        warning = asyncio.run(startup_check(settings, host))
    except AdgraphError as e:
        typer.echo(f"error: {e.code}: {e.message}", err=True)
        raise typer.Exit(2) from None
    if warning:
        banner = "!" * 100
        typer.echo(f"{banner}\nadgraph: {warning}\n{banner}", err=True)
    cpus = parse_cpu_list(settings.worker_cpus) if settings.worker_cpus else None
    # Workers on one GPU share its memory: each gets an equal part unless the budget or share is set.
    env = {"ADGRAPH_GPU_PROCESSES": str(max(workers, 1)), **os.environ}
    procs = [
        subprocess.Popen(
            [str(Path(sys.executable).with_name("adgraph")), "worker"],
            preexec_fn=child_preexec(cpus=cpus, nice=settings.worker_nice),
            env=env,
        )
        for _ in range(workers)
    ]
    # Handing the GIL over every 1 ms instead of 5 keeps the event loop responsive next to any job threads,
    # and freezing the start-up heap keeps it out of the collector's full passes (one took ~200 ms).
    sys.setswitchinterval(0.001)
    from service.api import http_safety
    from service.api.shutdown import DrainingServer

    if settings.trusted_hosts is None:  # the Host names clients may use: loopback ones and this address
        settings.trusted_hosts = http_safety.default_trusted_hosts(host)
    _say(f"answering for Host {', '.join(settings.trusted_hosts)} (ADGRAPH_TRUSTED_HOSTS)")
    # --workers 0: jobs run in this process on the local queue; on procrastinate this is an API server
    # only, and `adgraph worker` processes (here or on other machines) run the jobs.
    api = create_app(settings, run_jobs=workers == 0 and settings.queue_engine == "local")
    gc.collect()
    gc.freeze()
    try:
        config = uvicorn.Config(
            api,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            log_config=None,
            access_log=access_log,
            timeout_graceful_shutdown=30,
            **http_safety.uvicorn_options(settings),  # keep-alive, header and connection limits
        )
        # SIGTERM: /readyz 503 and event streams closed first, the listener after ADGRAPH_SHUTDOWN_DELAY_S
        DrainingServer(config, delay_s=settings.shutdown_delay_s).run()
    finally:
        for proc in procs:
            proc.terminate()  # workers stop at the next node boundary; unfinished jobs stay queued
        for proc in procs:
            try:
                proc.wait(timeout=settings.worker_grace_s + 10)
            except subprocess.TimeoutExpired:
                proc.kill()


@app.command()
def worker(
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues to take jobs from (a job's queue is its workflow: ad, "
            "homepage); default: all."
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs run at once (default ADGRAPH_MAX_CONCURRENT_JOBS).")
    ] = None,
) -> None:
    """Run queued jobs from the database until SIGTERM (`adgraph serve` starts one for you; on PostgreSQL
    start any number, on any machine)."""
    from service.observability import configure_logging
    from service.worker import run_worker

    settings = _settings()
    if concurrency is not None:
        settings.max_concurrent_jobs = concurrency
    configure_logging(settings.log_format, settings.log_level)
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    asyncio.run(run_worker(settings, queues=names))


@app.command()
def mcp(
    url: Annotated[
        str | None,
        typer.Option(help="A server's MCP endpoint, e.g. http://127.0.0.1:8000/mcp; unset: run here."),
    ] = None,
    key: Annotated[
        str | None, typer.Option(envvar="ADGRAPH_API_KEY", help="The API key for --url (or ADGRAPH_API_KEY).")
    ] = None,
) -> None:
    """MCP over stdio for a desktop client: relayed to a server (--url, --key) or the embedded service."""
    import logging

    from service.mcp import stdio

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)  # stdout carries MCP messages only
    if url is None:
        asyncio.run(stdio.serve_embedded(_settings()))
    else:
        asyncio.run(stdio.relay(url, key))


@app.command()
def submit(
    product: Annotated[Path, typer.Option(help="The product photo.")],
    headline: Annotated[str, typer.Option()],
    prompt: Annotated[str, typer.Option(help="What the background should look like.")] = "",
    subline: Annotated[str, typer.Option()] = "",
    cta: Annotated[str, typer.Option()] = "",
    size: Annotated[str, typer.Option()] = "1080x1080",
    seed: Annotated[int, typer.Option()] = 0,
    restyle: Annotated[float | None, typer.Option(help="FLUX img2img strength (see `adgraph ad`).")] = None,
    priority: Annotated[int, typer.Option(min=-10, max=10, help="Higher is taken first (-10..10).")] = 0,
    url: Annotated[str, typer.Option(help="The adgraph server.")] = "http://127.0.0.1:8000",
    key: Annotated[
        str | None, typer.Option(envvar="ADGRAPH_API_KEY", help="An API key (default: $ADGRAPH_API_KEY).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job's events until it ends.")] = True,
    out: Annotated[Path | None, typer.Option(help="Download the results here.")] = None,
) -> None:
    """Submit an ad job to a running server (`adgraph serve`) over HTTP and follow it."""
    import httpx
    from httpx_sse import connect_sse

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        up = http.post("/v1/artifacts", files={"file": (product.name, product.read_bytes())})
        if up.status_code != 201:
            typer.echo(up.text)
            raise typer.Exit(2)
        body = {
            "workflow": "ad",
            "input": {
                "product_image": up.json()["id"],
                "headline": headline,
                "subline": subline,
                "cta": cta,
                "background_prompt": prompt,
                "size": size,
                "seed": seed,
                **({"restyle": restyle} if restyle is not None else {}),
            },
            "priority": priority,
        }
        created = http.post("/v1/jobs", json=body)
        if created.status_code != 202:
            typer.echo(created.text)
            raise typer.Exit(2)
        job_id = created.json()["id"]
        watch = f"{url}/v1/jobs/{job_id}"
        typer.echo(
            f"adgraph: job {job_id}\n  status: {watch}\n  events: {watch}/events\n"
            f"  checkpoints: {watch}/checkpoints",
            err=True,
        )
        if not wait:
            typer.echo(json.dumps(created.json(), indent=2))
            return
        with connect_sse(http, "GET", f"/v1/jobs/{job_id}/events", timeout=None) as events:
            for sse in events.iter_sse():
                _progress(sse.event, sse.json())
        job = http.get(f"/v1/jobs/{job_id}").json()
        if out is not None and job["result"]:
            out.mkdir(parents=True, exist_ok=True)
            for name, ref in job["result"].items():
                (out / f"{name}.png").write_bytes(http.get(ref["url"]).content)
            typer.echo(f"adgraph: results in {out}/", err=True)
        typer.echo(json.dumps(job, indent=2, ensure_ascii=False))
        raise typer.Exit(0 if job["status"] == "succeeded" else 1)


@app.command()
def fonts() -> None:
    """List the installed fonts an ad can use."""
    from nodes.backends.fonts import FontconfigCatalog

    for face in FontconfigCatalog().faces():
        typer.echo(f"{face.family}\t{face.style}\t{face.weight}\t{'hangul' if face.hangul else '-'}")


@app.command()
def studio(
    port: Annotated[int, typer.Option(help="Port of the LangGraph dev server.")] = 2025,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Serve the graphs to LangGraph Studio (`langgraph dev`) over this project's checkpoint database."""
    import subprocess

    from service.accounts import is_loopback
    from service.processes import child_preexec

    if not is_loopback(host):  # it shows every tenant's checkpoints, with no key: this machine only
        typer.echo(
            f"error: FORBIDDEN: adgraph studio serves every tenant's jobs without a key; {host} is not a "
            "loopback address (reach it through an SSH tunnel instead)",
            err=True,
        )
        raise typer.Exit(2)
    config = Path(__file__).resolve().parents[1] / "langgraph.json"
    settings = _settings()
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "ADGRAPH_DATA_DIR": str(settings.data_dir.resolve()),
        **({"ADGRAPH_CHECKPOINT_URL": settings.checkpoint_url} if settings.checkpoint_url else {}),
        **({"ADGRAPH_DATABASE_URL": settings.database}),
    }
    # --no-reload: the reloader would restart the server on every checkpoint written under the data dir.
    cmd = [
        str(Path(sys.executable).with_name("langgraph")),
        "dev",
        "--config",
        str(config),
        "--host",
        host,
        "--port",
        str(port),
        "--no-browser",
        "--no-reload",
    ]
    # The dev server dies with this command, however it ends (even kill -9).
    with subprocess.Popen(cmd, env=env, cwd=config.parent, preexec_fn=child_preexec()) as server:
        try:
            n = asyncio.run(_register_jobs(f"http://{host}:{port}", settings))
            _say(
                f"{n} jobs visible in Studio: https://smith.langchain.com/studio/?baseUrl=http://{host}:{port}"
            )
            server.wait()
        except KeyboardInterrupt:
            server.terminate()
            server.wait()
        except BaseException:
            server.terminate()
            raise
    raise typer.Exit(server.returncode or 0)


async def _register_jobs(url: str, settings: Settings, timeout_s: float = 60.0) -> int:
    """Wait for the dev server, then tell it about every job (its thread and graph) in the jobs table."""
    import httpx
    from langgraph_sdk import get_client

    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(f"{url}/ok")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AdgraphError("INTERNAL", f"the LangGraph dev server did not answer at {url}")
            await asyncio.sleep(0.5)
    threads: dict[str, str] = {}
    async with _service(settings, run_jobs=False) as jobs:
        page = await jobs.list(_local(), limit=200)
        while True:
            threads.update({job.id: job.workflow for job in page.jobs})
            if page.next_cursor is None:
                break
            page = await jobs.list(_local(), limit=200, cursor=page.next_cursor)
    async with get_client(url=url) as client:
        for thread_id, graph_id in threads.items():
            await client.threads.create(thread_id=thread_id, graph_id=graph_id, if_exists="do_nothing")
    return len(threads)


@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Each model: configured path, found or not, expected and on-disk size, and the backend `auto` picks
    for its node and why. Reads nothing but file headers; never downloads."""
    from service.wiring import models_report

    rows = models_report(_settings())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "found" if row["found"] else "missing"
        typer.echo(f"{row['model']} ({row['repo_id']}): {state}")
        typer.echo(f"  path: {row['path'] or '-'}  [{row['source']}]")
        typer.echo(f"  setting: {row['setting']}")
        on_disk = f", {_gb(row['weights_bytes'])} on disk" if row["found"] else ""
        typer.echo(f"  size: {_gb(row['expected_bytes'])} expected{on_disk}")
        if row["node"]:
            auto = row["auto"]
            typer.echo(
                f"  {row['node']}: configured {row['configured_backend']}; "
                f"auto picks {auto['backend']} ({auto['reason']})"
            )
        else:
            typer.echo("  used by: POST /v1/evaluations/clip-score")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def main() -> None:  # pragma: no cover
    app()
