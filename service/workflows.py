"""The workflows the service runs: their input schema, nodes, graph builder and outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from pydantic import Field

from graph.ad import INPUT_CONSUMERS, build_ad_graph
from graph.models import AdCopy, ArtifactRef
from graph.state import AD_NODES
from service.requests import AdOptions


class AdJobInput(AdOptions):
    """Input of an `ad` job: an uploaded photo's artifact id and the copy."""

    product_image: str = Field(pattern=r"^[0-9a-f]{64}$", description="Artifact id from POST /v1/artifacts")


@dataclass(frozen=True)
class Workflow:
    name: str
    nodes: tuple[str, ...]
    input_model: type[AdOptions]
    build: Callable[..., CompiledStateGraph]
    outputs: dict[str, str]
    """State key written by each node that produces an image (shown as a checkpoint preview)."""
    consumers: dict[str, str]

    def graph_input(self, job_input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        """The graph's input state from the job's stored (validated) input."""
        opts = AdJobInput.model_validate(job_input)
        return ad_graph_input(opts, ctx.artifacts.find(opts.product_image))


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


WORKFLOWS: dict[str, Workflow] = {
    "ad": Workflow(
        name="ad",
        nodes=AD_NODES,
        input_model=AdJobInput,
        build=build_ad_graph,
        outputs={"segment": "cutout", "background": "background", "composite": "scene", "render": "ad"},
        consumers=INPUT_CONSUMERS,
    ),
}
