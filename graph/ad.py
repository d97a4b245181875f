"""The ad workflow, top to bottom: step 1 builds the product scene, step 2 lays the text over it."""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graph.context import AdContext
from graph.retry import TRANSIENT
from graph.state import AD_NODES, AdInput, AdState
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


def build_ad_graph(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    builder = StateGraph(AdState, context_schema=AdContext, input_schema=AdInput)
    builder.set_node_defaults(retry_policy=TRANSIENT)
    builder.add_sequence([(name, _FUNCS[name]) for name in AD_NODES])
    builder.add_edge(START, AD_NODES[0])
    builder.add_edge(AD_NODES[-1], END)
    return builder.compile(checkpointer=checkpointer, name="ad")
