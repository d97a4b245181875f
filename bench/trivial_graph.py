"""Graphs whose nodes do nothing, for measuring what a server adds per run and per node
(`bench/lg_api.py`): one of 1 node and one of 8, as `langgraph dev` loads them (`one`, `eight`) and as an
adgraph workflow entry (`workflow(n)`), so both servers run exactly the same graph."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import START, StateGraph
from pydantic import BaseModel


class State(TypedDict, total=False):
    n: int


async def step(state: State) -> State:
    return {"n": state.get("n", 0) + 1}


def build(nodes: int, checkpointer: Any = None, node: Any = step) -> Any:
    g = StateGraph(State)
    g.add_sequence([(f"n{i}", node) for i in range(nodes)])
    g.add_edge(START, "n0")
    return g.compile(checkpointer=checkpointer)


one = build(1)
eight = build(8)


class TrivialInput(BaseModel):
    n: int = 0


def workflow(nodes: int, *, name: str | None = None, step: Any = step) -> Any:
    """The graph as an entry of adgraph's workflow registry (see service/workflows/__init__.py); `step`:
    what each node does (by default nothing)."""
    from service.workflows import Workflow

    return Workflow(
        name=name or f"trivial{nodes}",
        nodes=tuple(f"n{i}" for i in range(nodes)),
        input_model=TrivialInput,
        build=lambda saver=None: build(nodes, saver, step),
        consumers={},
        branch_fields=("n",),
        previews={},
        prepare=lambda opts, tools: opts,
        graph_input=lambda opts, tools: {"n": opts.n},
        input_of=lambda values: {"n": values.get("n", 0)},
        artifacts_of=lambda opts: [],
        results=lambda values: {},
        files=lambda result, store, folder: {},
    )
