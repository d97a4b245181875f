"""The `adgraph` command."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from kernel.errors import AdgraphError
from service.cli_support import AgentsOpt, report, settings_with_agents

app = typer.Typer(
    help="AI ad creatives and small-business homepages as checkpointed LangGraph workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="Inspect, resume and branch jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
models_app = typer.Typer(
    help="The GPU models on this machine and the backend each node gets.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

OutOpt = Annotated[Path, typer.Option("--out", help="Folder for cutout.png, scene.png, ad.png, result.json.")]


def _run(coro_fn: Callable[[], Coroutine[Any, Any, int]]) -> None:
    try:
        code = asyncio.run(coro_fn())
    except AdgraphError as e:
        typer.echo(json.dumps({"error": e.to_dict()}, ensure_ascii=False))
        typer.echo(f"error: {e.code}: {e.message}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _progress(kind: str, data: dict[str, Any]) -> None:
    if kind == "node_started":
        print(f"adgraph: {data['node']} started", file=sys.stderr, flush=True)
    elif kind == "node_finished":
        print(
            f"adgraph: {data['name']} {data['status']} in {data['seconds']:.2f}s", file=sys.stderr, flush=True
        )
    elif kind == "checkpoint":
        print(f"adgraph: checkpoint {data['id']} after {data['node']}", file=sys.stderr, flush=True)
    elif kind == "progress" and data.get("message"):
        print(f"adgraph: {data['node']}: {data['message']}", file=sys.stderr, flush=True)
    elif kind == "fallback":
        what = f"{data.get('agent')} fell back for {data.get('part')}: {data.get('reason')}"
        print(f"adgraph: {data['node']}: {what}", file=sys.stderr, flush=True)


@dataclass
class _Env:
    settings: Any
    graph: Any
    ctx: Any


@asynccontextmanager
async def _environment(settings: Any = None, *, with_context: bool = True) -> AsyncIterator[_Env]:
    from checkpoints.saver import open_checkpointer
    from graph.ad import build_ad_graph
    from service.context import ad_context
    from service.settings import Settings

    settings = settings or Settings()
    async with open_checkpointer(settings.checkpoints) as saver:
        graph = build_ad_graph(saver)
        if not with_context:
            yield _Env(settings, graph, None)
            return
        async with ad_context(settings, evaluations=False) as ctx:
            yield _Env(settings, graph, ctx)


async def _finish(env: _Env, result: Any, out: Path) -> int:
    from service.jobs import write_outputs

    return report(write_outputs(result, env.ctx.artifacts, out), result, out)


@app.command()
def ad(
    product: Annotated[Path, typer.Option(help="The product photo (PNG, JPEG or WebP).")],
    headline: Annotated[str, typer.Option(help="The main line of copy.")],
    prompt: Annotated[str, typer.Option(help="What the background should look like.")],
    out: OutOpt,
    subline: Annotated[str, typer.Option(help="A second, smaller line.")] = "",
    cta: Annotated[str, typer.Option(help="A call to action, drawn as a button.")] = "",
    size: Annotated[str, typer.Option(help="1080x1080, 1200x628 or 1080x1920.")] = "1080x1080",
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
    """Make an ad from a product photo and a line of copy."""

    async def main() -> int:
        from checkpoints.ingest import store_photo, validate_image
        from nodes.backends.fonts import FontconfigCatalog
        from service.jobs import new_job_id, run_job
        from service.requests import AdOptions, parse
        from service.workflows import ad_graph_input

        opts = parse(
            AdOptions,
            {
                "headline": headline,
                "subline": subline,
                "cta": cta,
                "background_prompt": prompt,
                "size": size,
                "seed": seed,
                "text_position": text_position,
                "font": font,
                "restyle": restyle,
            },
        )
        if not product.is_file():
            raise AdgraphError("INVALID_INPUT", f"no file at {product}", field="product")
        data = product.read_bytes()
        settings = settings_with_agents(agents)
        # Refuse bad input before anything starts or is stored.
        validate_image(data, max_pixels=settings.max_image_pixels, name=str(product))
        font_family = FontconfigCatalog().resolve(opts.font) if opts.font else None
        async with _environment(settings) as env:
            photo = store_photo(
                env.ctx.artifacts, data, max_pixels=settings.max_image_pixels, name=str(product)
            )
            job_id = new_job_id()
            print(f"adgraph: job {job_id}", file=sys.stderr, flush=True)
            graph_input = ad_graph_input(opts.model_copy(update={"font": font_family}), photo)
            result = await run_job(env.graph, env.ctx, job_id, graph_input, listener=_progress)
            return await _finish(env, result, out)

    _run(main)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="Worker processes that run the jobs; 0 runs them inside the API process.")
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
    from service.settings import Settings

    settings = Settings()
    if workers > 1 and settings.database.startswith("sqlite"):
        raise typer.BadParameter(
            "SQLite takes one worker process; use ADGRAPH_DATABASE_URL=postgresql://… for more"
        )
    cpus = _cpu_list(settings.worker_cpus) if settings.worker_cpus else None
    # Workers on one GPU share its memory: each gets an equal part unless the budget or share is set.
    env = {"ADGRAPH_GPU_PROCESSES": str(max(workers, 1)), **os.environ}
    procs = [
        subprocess.Popen(
            [str(Path(sys.executable).with_name("adgraph")), "worker"],
            preexec_fn=_child_preexec(cpus, nice=settings.worker_nice),
            env=env,
        )
        for _ in range(workers)
    ]
    # Handing the GIL over every 1 ms instead of 5 keeps the event loop responsive next to any job threads,
    # and freezing the start-up heap keeps it out of the collector's full passes (one took ~200 ms).
    sys.setswitchinterval(0.001)
    api = create_app(settings, run_jobs=workers == 0)
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(
            api, host=host, port=port, log_level="info", access_log=access_log, timeout_graceful_shutdown=30
        )
    finally:
        for proc in procs:
            proc.terminate()  # workers stop at the next node boundary; unfinished jobs stay queued
        for proc in procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()


def _child_preexec(cpus: set[int] | None, *, nice: int = 0) -> Callable[[], None]:
    """A preexec_fn: the child dies with its parent (even on kill -9), runs `nice` steps below it and only
    on `cpus`. libc's prctl is looked up now, in the parent: between fork and exec only already-resolved
    calls are safe."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return functools.partial(_in_child, prctl, cpus, nice)


def _in_child(prctl: Callable[..., int], cpus: set[int] | None, nice: int) -> None:  # pragma: no cover
    import os
    import signal

    prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if nice:
        os.nice(nice)
    if cpus:  # keep the API's cores free of job work
        os.sched_setaffinity(0, cpus)


def _cpu_list(spec: str) -> set[int]:
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


@app.command()
def worker() -> None:
    """Run queued jobs from the database until stopped (`adgraph serve` starts one for you)."""
    import logging

    from service.runner import run_worker
    from service.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run_worker(Settings()))


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
    url: Annotated[str, typer.Option(help="The adgraph server.")] = "http://127.0.0.1:8000",
    wait: Annotated[bool, typer.Option(help="Follow the job's events until it ends.")] = True,
    out: Annotated[Path | None, typer.Option(help="Download the results here.")] = None,
) -> None:
    """Submit an ad job to a running server (`adgraph serve`) and follow it."""
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
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
        with http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=None) as events:
            for line in events.iter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    if "seconds" in data:
                        typer.echo(
                            f"adgraph: {data['name']} {data['status']} in {data['seconds']:.2f}s", err=True
                        )
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
    import os
    import subprocess

    from service.settings import Settings

    config = Path(__file__).resolve().parents[1] / "langgraph.json"
    settings = Settings()
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "ADGRAPH_DATA_DIR": str(settings.data_dir.resolve()),
        **({"ADGRAPH_CHECKPOINT_URL": settings.checkpoint_url} if settings.checkpoint_url else {}),
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
    die_with_parent = _child_preexec(None)
    with subprocess.Popen(cmd, env=env, cwd=config.parent, preexec_fn=die_with_parent) as server:
        try:
            n = asyncio.run(_register_jobs(f"http://{host}:{port}", settings))
            typer.echo(
                f"adgraph: {n} jobs visible in Studio: "
                f"https://smith.langchain.com/studio/?baseUrl=http://{host}:{port}",
                err=True,
            )
            server.wait()
        except KeyboardInterrupt:
            server.terminate()
            server.wait()
        except BaseException:
            server.terminate()
            raise
    raise typer.Exit(server.returncode or 0)


async def _register_jobs(url: str, settings: Any, timeout_s: float = 60.0) -> int:
    """Wait for the dev server, then tell it about every job in the checkpoint database."""
    import httpx
    from langgraph_sdk import get_client

    from checkpoints.saver import open_checkpointer

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
    threads: dict[str, str] = {}  # thread id -> graph: a homepage job's state has a business profile
    async with open_checkpointer(settings.checkpoints) as saver:
        async for t in saver.alist(None):
            channels = t.checkpoint.get("channel_values", {})
            thread_id = t.config["configurable"]["thread_id"]
            if "profile" in channels or "profile" in (channels.get("__start__") or {}):
                threads[thread_id] = "homepage"
            else:
                threads.setdefault(thread_id, "ad")
    async with get_client(url=url) as client:
        for thread_id, graph_id in threads.items():
            await client.threads.create(thread_id=thread_id, graph_id=graph_id, if_exists="do_nothing")
    return len(threads)


@jobs_app.command("checkpoints")
def jobs_checkpoints(job_id: str) -> None:
    """List a job's checkpoints: id, step, the node that wrote it, time."""

    async def main() -> int:
        from checkpoints.history import history
        from graph.state import AD_NODES
        from service import cli_homepage
        from service.settings import Settings

        if await cli_homepage.is_homepage_job(settings := Settings(), job_id):
            typer.echo(json.dumps(await cli_homepage.checkpoints(settings, job_id), indent=2))
            return 0
        async with _environment(with_context=False) as env:
            rows = await history(env.graph, job_id, AD_NODES)
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0

    _run(main)


@jobs_app.command("resume")
def jobs_resume(job_id: str, out: OutOpt) -> None:
    """Continue a job that failed or was killed from its last checkpoint."""

    async def main() -> int:
        from checkpoints.history import thread_config
        from service import cli_homepage
        from service.jobs import run_job
        from service.settings import Settings

        if await cli_homepage.is_homepage_job(settings := Settings(), job_id):
            return await cli_homepage.resume(settings, job_id, out)
        async with _environment() as env:
            snapshot = await env.graph.aget_state(thread_config(job_id))
            if not snapshot.values:
                raise AdgraphError("JOB_NOT_FOUND", f"no job {job_id!r} in the checkpoint database")
            if not snapshot.next:
                raise AdgraphError("JOB_NOT_RESUMABLE", f"job {job_id} already finished; branch it instead")
            result = await run_job(env.graph, env.ctx, job_id, None, listener=_progress)
            return await _finish(env, result, out)

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
) -> None:
    """Start a new job from a checkpoint of JOB_ID with new inputs; the source job is unchanged."""

    async def main() -> int:
        from checkpoints.history import find_snapshot, seed_branch
        from graph.ad import INPUT_CONSUMERS
        from graph.state import AD_NODES
        from service import cli_homepage
        from service.jobs import branch_changes, new_job_id, run_job
        from service.settings import Settings

        ad_changes = [headline, subline, cta, prompt, seed, font]
        if await cli_homepage.is_homepage_job(settings := Settings(), job_id):
            if any(v is not None for v in ad_changes):
                raise AdgraphError("INVALID_INPUT", f"job {job_id} is a homepage: change its --style")
            changes = {"style": style} if style is not None else {}
            return await cli_homepage.branch(
                settings, job_id, out, checkpoint_id=from_checkpoint, node=from_node, changes=changes
            )
        if style is not None:
            raise AdgraphError("INVALID_INPUT", f"--style is for homepage jobs; job {job_id} is an ad")
        async with _environment(settings) as env:
            source = await find_snapshot(
                env.graph, job_id, AD_NODES, checkpoint_id=from_checkpoint, node=from_node
            )
            changes = {
                "headline": headline,
                "subline": subline,
                "cta": cta,
                "background_prompt": prompt,
                "seed": seed,
                "font": font,
            }
            _, overrides = branch_changes(source.values, changes, env.ctx.designer.fonts.resolve)
            new_id = new_job_id()
            parent = {"job_id": job_id, "checkpoint_id": source.config["configurable"]["checkpoint_id"]}
            config = await seed_branch(
                env.graph, source, new_id, AD_NODES, overrides, INPUT_CONSUMERS, {"parent": parent}
            )
            print(
                f"adgraph: job {new_id} branched from {parent['job_id']} at {parent['checkpoint_id']}",
                file=sys.stderr,
                flush=True,
            )
            config = {**config, "metadata": {"parent": parent}}
            result = await run_job(env.graph, env.ctx, new_id, None, config=config, listener=_progress)
            return await _finish(env, result, out)

    _run(main)


@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Each model: configured path, found or not, expected and on-disk size, and the backend `auto` picks
    for its node and why. Reads nothing but file headers; never downloads."""
    from gpu_runtime.models import report
    from service.settings import Settings

    rows = report(Settings())
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


from service.cli_homepage import homepage  # noqa: E402 - registered here, written in its own module

app.command()(homepage)


def main() -> None:  # pragma: no cover
    app()
