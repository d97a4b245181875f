"""The homepage workflow, top to bottom: plan the pages, design them, code them, render and check them."""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graph.homepage_context import HomepageContext
from graph.retry import TRANSIENT
from graph.state import HOMEPAGE_NODES, HomepageInput, HomepageState
from nodes.site_code import site_code
from nodes.site_design import site_design
from nodes.site_plan import site_plan
from nodes.site_render import site_render

_FUNCS = {"plan": site_plan, "design": site_design, "code": site_code, "render": site_render}

# Which node first reads each input: a branch must start at or before it for the new value to matter.
HOMEPAGE_INPUT_CONSUMERS: dict[str, str] = {
    "profile": "plan",
    "images": "plan",
    "pages": "plan",
    "style": "design",
}


def build_homepage_graph(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    builder = StateGraph(HomepageState, context_schema=HomepageContext, input_schema=HomepageInput)
    builder.set_node_defaults(retry_policy=TRANSIENT)
    builder.add_sequence([(name, _FUNCS[name]) for name in HOMEPAGE_NODES])
    builder.add_edge(START, HOMEPAGE_NODES[0])
    builder.add_edge(HOMEPAGE_NODES[-1], END)
    return builder.compile(checkpointer=checkpointer, name="homepage")
