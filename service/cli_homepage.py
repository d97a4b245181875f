"""`adgraph homepage`: a small website from a business profile."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kernel.errors import AdgraphError
from service.cli_support import AgentsOpt, report, settings_with_agents

_ID = re.compile(r"^[0-9a-f]{64}$")


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
    from service.cli import _run

    def prepare() -> tuple[Any, Any, list[tuple[str, bytes]]]:
        """Read and check the profile and photos (blocking file reads, off the event loop)."""
        from checkpoints.ingest import validate_image
        from service.homepage import HomepageJobInput
        from service.requests import parse

        settings = settings_with_agents(agents)
        opts = parse(
            HomepageJobInput, {"profile": _read_profile(profile), "pages": page or None, "style": style}
        )
        files: list[tuple[str, bytes]] = []
        for item in image or []:
            if not _ID.match(item):
                path = Path(item)
                if not path.is_file():
                    raise AdgraphError(
                        "INVALID_IMAGE", f"no file at {item} (and it is not an artifact id)", field="image"
                    )
                data = path.read_bytes()
                validate_image(
                    data, max_pixels=settings.max_image_pixels, name=str(path)
                )  # before anything starts
                files.append((item, data))
            else:
                files.append((item, b""))
        return settings, opts, files

    async def main() -> int:
        settings, opts, files = await asyncio.to_thread(prepare)
        from checkpoints.artifacts import FileArtifactStore
        from checkpoints.ingest import store_photo
        from checkpoints.saver import open_checkpointer
        from graph.homepage import build_homepage_graph
        from graph.state import HOMEPAGE_NODES
        from service.context import make_renderer, open_llm
        from service.homepage import (
            find_images,
            homepage_graph_input,
            write_homepage_outputs,
        )
        from service.jobs import new_job_id, run_job
        from service.site_context import make_homepage_context

        # An artifact id that names nothing (or no image) is refused before Chromium or a job starts.
        store = FileArtifactStore(settings.artifacts_dir)
        find_images(store, [name for name, data in files if not data])
        refs = [
            store_photo(store, data, max_pixels=settings.max_image_pixels, name=name)
            if data
            else find_images(store, [name])[0]
            for name, data in files
        ]
        async with (
            open_checkpointer(settings.checkpoints) as saver,
            make_renderer(settings) as renderer,
            open_llm(settings) as chat,
        ):
            ctx = make_homepage_context(settings, renderer, chat=chat)
            job_id = new_job_id()
            print(f"adgraph: homepage job {job_id}", file=sys.stderr, flush=True)
            graph = build_homepage_graph(saver)
            result = await run_job(
                graph, ctx, job_id, homepage_graph_input(opts, refs), listener=_progress, order=HOMEPAGE_NODES
            )
            doc = write_homepage_outputs(result, ctx.artifacts, out)
        return report(doc, result, out)

    _run(main)


def _progress(kind: str, data: dict[str, Any]) -> None:
    from service.cli import _progress as show

    show(kind, data)


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


# -- `adgraph jobs …` on homepage jobs ---------------------------------------------------------------------


async def is_homepage_job(settings: Any, job_id: str) -> bool:
    """Whether thread `job_id` is a homepage job (its state holds a business profile)."""
    from checkpoints.history import thread_config
    from checkpoints.saver import open_checkpointer

    async with open_checkpointer(settings.checkpoints) as saver:
        found = await saver.aget_tuple(thread_config(job_id))
    if found is None:
        return False
    channels = found.checkpoint.get("channel_values", {})
    return "profile" in channels or "profile" in (channels.get("__start__") or {})


async def checkpoints(settings: Any, job_id: str) -> list[dict[str, Any]]:
    from checkpoints.history import history
    from checkpoints.saver import open_checkpointer
    from graph.homepage import build_homepage_graph
    from graph.state import HOMEPAGE_NODES

    async with open_checkpointer(settings.checkpoints) as saver:
        rows = await history(build_homepage_graph(saver), job_id, HOMEPAGE_NODES)
    return [r.as_dict() for r in rows]


async def resume(settings: Any, job_id: str, out: Path) -> int:
    from checkpoints.history import thread_config

    async def run(graph: Any, ctx: Any) -> Any:
        from graph.state import HOMEPAGE_NODES
        from service.jobs import run_job

        snapshot = await graph.aget_state(thread_config(job_id))
        if not snapshot.next:
            raise AdgraphError("JOB_NOT_RESUMABLE", f"job {job_id} already finished; branch it instead")
        return await run_job(graph, ctx, job_id, None, listener=_progress, order=HOMEPAGE_NODES)

    return await _run_and_write(settings, run, out)


async def branch(
    settings: Any,
    job_id: str,
    out: Path,
    *,
    checkpoint_id: str | None,
    node: str | None,
    changes: dict[str, Any],
) -> int:
    """A new homepage job from a checkpoint of `job_id` with `changes` (style, pages, profile)."""
    from checkpoints.history import find_snapshot, seed_branch
    from graph.homepage import HOMEPAGE_INPUT_CONSUMERS
    from graph.state import HOMEPAGE_NODES
    from service.homepage import homepage_branch_changes
    from service.jobs import new_job_id, run_job

    async def run(graph: Any, ctx: Any) -> Any:
        source = await find_snapshot(graph, job_id, HOMEPAGE_NODES, checkpoint_id=checkpoint_id, node=node)
        _, overrides = homepage_branch_changes(source.values, changes)
        new_id = new_job_id()
        parent = {"job_id": job_id, "checkpoint_id": source.config["configurable"]["checkpoint_id"]}
        config = await seed_branch(
            graph, source, new_id, HOMEPAGE_NODES, overrides, HOMEPAGE_INPUT_CONSUMERS, {"parent": parent}
        )
        print(f"adgraph: job {new_id} branched from {job_id}", file=sys.stderr, flush=True)
        config = {**config, "metadata": {"parent": parent}}
        return await run_job(
            graph, ctx, new_id, None, config=config, listener=_progress, order=HOMEPAGE_NODES
        )

    return await _run_and_write(settings, run, out)


async def _run_and_write(settings: Any, run: Any, out: Path) -> int:
    from checkpoints.saver import open_checkpointer
    from graph.homepage import build_homepage_graph
    from service.context import make_renderer, open_llm
    from service.homepage import write_homepage_outputs
    from service.site_context import make_homepage_context

    async with (
        open_checkpointer(settings.checkpoints) as saver,
        make_renderer(settings) as renderer,
        open_llm(settings) as chat,  # ADGRAPH_AGENTS=llm: the rest of the job is the LLM's too
    ):
        ctx = make_homepage_context(settings, renderer, chat=chat)
        result = await run(build_homepage_graph(saver), ctx)
        doc = write_homepage_outputs(result, ctx.artifacts, out)
    return report(doc, result, out)
