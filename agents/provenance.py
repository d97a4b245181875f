"""Which agent produced each part of a job's output, and whether it fell back to the rules.

An LLM agent that gives up on its model's answer and uses the rule-based policy calls `report_fallback`:
the node running it records that in state (`provenance`, reported in result.json) and LangGraph's custom
stream carries it to the job's events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal

from kernel.models import Frozen


class PartProvenance(Frozen):
    agent: Literal["rules", "llm"]
    """The agent configured for this part."""
    fallback: bool = False
    """True when the LLM's answer was unusable and the rule-based policy produced the part."""
    reason: str | None = None


_reports: ContextVar[list[dict[str, Any]] | None] = ContextVar("adgraph_fallbacks", default=None)


def report_fallback(*, agent: str, part: str, reason: str) -> None:
    """Record that `agent` fell back to the rules for `part` (e.g. "plan", "design.palette")."""
    event = {"type": "fallback", "agent": agent, "part": part, "reason": reason}
    reports = _reports.get()
    if reports is not None:
        reports.append(event)
    try:
        from langgraph.config import get_stream_writer

        get_stream_writer()(event)
    except RuntimeError:  # called outside a graph run (a unit test calling the agent directly)
        pass


@contextlib.contextmanager
def collect_fallbacks() -> Iterator[list[dict[str, Any]]]:
    """Collect the `report_fallback` calls made inside the block (same task or threads it starts)."""
    reports: list[dict[str, Any]] = []
    token = _reports.set(reports)
    try:
        yield reports
    finally:
        _reports.reset(token)


def provenance_of(agent_name: str, reports: list[dict[str, Any]]) -> PartProvenance:
    kind: Literal["rules", "llm"] = "llm" if agent_name == "llm" else "rules"
    if not reports:
        return PartProvenance(agent=kind)
    return PartProvenance(agent=kind, fallback=True, reason="; ".join(r["reason"] for r in reports)[:500])
