"""The ad workflow, top to bottom: step 1 builds the product scene, step 2 lays the text over it."""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from graph.context import AdContext
from graph.state import AD_NODES, AdInput, AdState
from kernel.errors import TransientError
from nodes.analyze import analyze
from nodes.background import background
from nodes.code import code
from nodes.composite import composite
from nodes.design import design
from nodes.plan import plan
from nodes.render import render
from nodes.segment import segment

_FUNCS = {
    "segment": segment,
    "background": background,
    "composite": composite,
    "analyze": analyze,
    "plan": plan,
    "design": design,
    "code": code,
    "render": render,
}

# Which node first reads each input: a branch must start at or before it for the new value to matter.
INPUT_CONSUMERS: dict[str, str] = {
    "product_image": "segment",
    "background_prompt": "background",
    "seed": "background",
    "restyle": "background",
    "size": "background",
    "text_position": "composite",
    "copy": "plan",
    "font": "design",
}

# Only failures that can pass on their own (a crashed browser tab) are retried; bad input never is.
TRANSIENT = RetryPolicy(max_attempts=2, initial_interval=0.2, retry_on=TransientError)


def build_ad_graph(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    builder = StateGraph(AdState, context_schema=AdContext, input_schema=AdInput)
    for name in AD_NODES:
        builder.add_node(name, _FUNCS[name], retry_policy=TRANSIENT)
    builder.add_edge(START, AD_NODES[0])
    for a, b in zip(AD_NODES, AD_NODES[1:], strict=False):
        builder.add_edge(a, b)
    builder.add_edge(AD_NODES[-1], END)
    return builder.compile(checkpointer=checkpointer, name="ad")
