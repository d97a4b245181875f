"""Fixtures for the unit tests of the ad graph: its context with fakes and the graph over an in-memory
checkpointer (no browser, no model, no system fonts)."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agents.rules import RuleDesigner, RuleDeveloper, RulePlanner
from checkpoints.artifacts import FileArtifactStore
from checkpoints.saver import serializer
from graph.ad import build_ad_graph
from graph.context import AdContext
from nodes.backends.compose import StudioCompositor
from nodes.backends.stats import StatsAnalyzer
from nodes.backends.studio import StudioBackdrop
from service.workflows import state_types
from tests.unit.fakes import FakeFonts, FakeRenderer, FakeSegmenter


@pytest.fixture
def ctx(tmp_path) -> AdContext:
    """The ad's context: the embedded backdrop, compositor, analyzer and rule agents; a fake segmenter,
    renderer and font catalog."""
    return AdContext(
        artifacts=FileArtifactStore(tmp_path / "artifacts"),
        segmenter=FakeSegmenter(),
        backdrop=StudioBackdrop(),
        compositor=StudioCompositor(),
        analyzer=StatsAnalyzer(),
        planner=RulePlanner(),
        designer=RuleDesigner(FakeFonts()),
        developer=RuleDeveloper(),
        renderer=FakeRenderer(),
    )


@pytest.fixture
def graph():
    """The ad graph, checkpointing in memory with the service's serializer."""
    return build_ad_graph(InMemorySaver(serde=serializer(state_types())))
