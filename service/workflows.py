"""The workflows the service runs: their input schema, nodes, graph builder, outputs, and how a job's input
is checked, turned into graph input, and changed in a branch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field

from graph.ad import INPUT_CONSUMERS, build_ad_graph
from graph.homepage import HOMEPAGE_INPUT_CONSUMERS, build_homepage_graph
from graph.state import AD_NODES, HOMEPAGE_NODES
from kernel.models import AdCopy, ArtifactRef
from service.homepage import (
    HomepageJobInput,
    find_images,
    homepage_branch_changes,
    homepage_graph_input,
)
from service.requests import AdOptions


class AdJobInput(AdOptions):
    """Input of an `ad` job: an uploaded photo's artifact id and the copy."""

    product_image: str = Field(pattern=r"^[0-9a-f]{64}$", description="Artifact id from POST /v1/artifacts")


@dataclass(frozen=True)
class Workflow:
    name: str
    nodes: tuple[str, ...]
    input_model: type[BaseModel]
    build: Callable[..., CompiledStateGraph]
    outputs: dict[str, str]
    """State key written by each node that produces an image (shown as a checkpoint preview)."""
    consumers: dict[str, str]
    make_input: Callable[[Any, Any], dict[str, Any]]
    """(validated input, run context) → the graph's input state."""
    prepare: Callable[[Any, Any], Any]
    """(validated input, run context) → the input to store, after checking what it refers to (blocking)."""
    results: Callable[[dict[str, Any]], dict[str, ArtifactRef]]
    """A finished job's state → its downloadable results by name."""
    branch: Callable[[dict[str, Any], dict[str, Any], Any], tuple[dict[str, Any], dict[str, Any]]]
    """(checkpoint values, changes, run context) → (the new job's stored input, state overrides)."""

    def graph_input(self, job_input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        """The graph's input state from the job's stored (validated) input."""
        return self.make_input(self.input_model.model_validate(job_input), ctx)


def ad_graph_input(opts: AdOptions, photo: ArtifactRef) -> dict[str, Any]:
    """The ad graph's input state: the stored photo and the validated options (CLI and service alike)."""
    return {
        "product_image": photo,
        "copy": AdCopy(headline=opts.headline, subline=opts.subline, cta=opts.cta),
        "background_prompt": opts.background_prompt,
        "size": opts.size,
        "seed": opts.seed,
        "text_position": opts.text_position,
        "font": opts.font,
        "restyle": opts.restyle,
    }


def _ad_prepare(opts: AdJobInput, ctx: Any) -> AdJobInput:
    ctx.artifacts.find(opts.product_image)  # ARTIFACT_NOT_FOUND before any job
    if opts.font:
        opts = opts.model_copy(update={"font": ctx.designer.fonts.resolve(opts.font)})
    return opts


def _ad_branch(values: dict[str, Any], changes: dict[str, Any], ctx: Any) -> tuple[dict, dict]:
    from service.jobs import branch_changes

    merged, overrides = branch_changes(values, changes, ctx.designer.fonts.resolve)
    return {**merged, "product_image": values["product_image"].id}, overrides


AD_RESULTS = ("cutout", "scene", "ad")


def _homepage_prepare(opts: HomepageJobInput, ctx: Any) -> HomepageJobInput:
    find_images(ctx.artifacts, opts.images)  # ARTIFACT_NOT_FOUND / INVALID_IMAGE before any job
    return opts


def _homepage_results(values: dict[str, Any]) -> dict[str, ArtifactRef]:
    out: dict[str, ArtifactRef] = {}
    if "site_zip" in values:
        out["site_zip"] = values["site_zip"]
    for name, ref in values.get("screens", {}).items():
        out[f"screen:{name}"] = ref
    return out


WORKFLOWS: dict[str, Workflow] = {
    "ad": Workflow(
        name="ad",
        nodes=AD_NODES,
        input_model=AdJobInput,
        build=build_ad_graph,
        outputs={"segment": "cutout", "background": "background", "composite": "scene", "render": "ad"},
        consumers=INPUT_CONSUMERS,
        make_input=lambda opts, ctx: ad_graph_input(opts, ctx.artifacts.find(opts.product_image)),
        prepare=_ad_prepare,
        results=lambda values: {k: values[k] for k in AD_RESULTS if k in values},
        branch=_ad_branch,
    ),
    "homepage": Workflow(
        name="homepage",
        nodes=HOMEPAGE_NODES,
        input_model=HomepageJobInput,
        build=build_homepage_graph,
        outputs={"render": "site_zip"},
        consumers=HOMEPAGE_INPUT_CONSUMERS,
        make_input=lambda opts, ctx: homepage_graph_input(opts, find_images(ctx.artifacts, opts.images)),
        prepare=_homepage_prepare,
        results=_homepage_results,
        branch=lambda values, changes, ctx: homepage_branch_changes(values, changes),
    ),
}
