"""The workflows the service runs: their input schema, nodes, graph builder and outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from pydantic import Field

from graph.ad import INPUT_CONSUMERS, build_ad_graph
from graph.models import AdCopy
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

    def output_key(self, node: str) -> str:
        return _AD_OUTPUT_KEYS[node]

    def graph_input(self, job_input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        """The graph's input state from the job's stored (validated) input."""
        opts = AdJobInput.model_validate(job_input)
        return {
            "product_image": ctx.artifacts.find(opts.product_image),
            "copy": AdCopy(headline=opts.headline, subline=opts.subline, cta=opts.cta),
            "background_prompt": opts.background_prompt,
            "size": opts.size,
            "seed": opts.seed,
            "text_position": opts.text_position,
            "font": opts.font,
        }


_AD_OUTPUT_KEYS = {
    "segment": "cutout",
    "background": "background",
    "composite": "scene",
    "analyze": "analysis",
    "plan": "text_plan",
    "design": "design",
    "code": "text_layer_html",
    "render": "ad",
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
