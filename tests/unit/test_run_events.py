"""What nodes report from inside a step reaches the job's listener and result; a cancel inside a step ends
the run cancelled with its checkpoints intact."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from kernel.errors import StepCancelled
from service.running import run_job


class S(TypedDict, total=False):
    n: int
    out: int


async def first(state: S, runtime: Runtime) -> dict[str, Any]:
    runtime.stream_writer({"type": "progress", "fraction": 0.5, "message": "half way"})
    runtime.stream_writer({"type": "fallback", "agent": "planner", "part": "plan", "reason": "bad JSON"})
    return {"n": state["n"] + 1}


async def second(state: S, runtime: Runtime) -> dict[str, Any]:
    if state["n"] < 10:
        raise StepCancelled()
    return {"out": state["n"]}


def build() -> Any:
    b = StateGraph(S)
    b.add_node("first", first)
    b.add_node("second", second)
    b.add_edge(START, "first")
    b.add_edge("first", "second")
    b.add_edge("second", END)
    return b.compile(checkpointer=InMemorySaver())


async def test_custom_events_are_credited_to_their_node_and_kept_in_the_result():
    seen: list[tuple[str, dict[str, Any]]] = []
    result = await run_job(
        build(), None, "j1", {"n": 20}, listener=lambda k, d: seen.append((k, d)), order=("first", "second")
    )
    assert result.status == "succeeded" and result.values["out"] == 21
    kinds = [k for k, _ in seen]
    assert kinds.index("node_started") < kinds.index("progress") < kinds.index("fallback")
    progress = dict(seen)["progress"]
    assert progress == {"type": "progress", "node": "first", "fraction": 0.5, "message": "half way"}
    # progress is transient; a fallback is part of the job's record
    assert result.events == [
        {"type": "fallback", "node": "first", "agent": "planner", "part": "plan", "reason": "bad JSON"}
    ]


async def test_a_cancel_inside_a_step_ends_cancelled_and_resumes_from_the_last_checkpoint():
    graph = build()
    result = await run_job(graph, None, "j2", {"n": 1}, order=("first", "second"))
    assert (result.status, result.drained, result.error) == ("cancelled", "cancel", None)
    assert [n["name"] for n in result.nodes if n["status"] == "succeeded"] == ["first"]
    # The checkpoint after `first` holds; the resumed run does not redo it.
    await graph.aupdate_state({"configurable": {"thread_id": "j2"}}, {"n": 50})
    resumed = await run_job(graph, None, "j2", None, order=("first", "second"))
    assert resumed.status == "succeeded" and resumed.values["out"] == 50
    assert [n["name"] for n in resumed.nodes] == ["second"]
