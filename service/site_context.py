"""Building the homepage workflow's run context (rule agents by default) from settings."""

from __future__ import annotations

from typing import Any

from agents.site_rules import RuleSiteDesigner, RuleSiteDeveloper, RuleSitePlanner
from checkpoints.artifacts import FileArtifactStore
from graph.homepage_context import HomepageContext, SiteRenderer
from nodes.backends.fonts import FontconfigCatalog
from service.settings import Settings


def make_homepage_context(
    settings: Settings, renderer: SiteRenderer, *, agents: tuple[Any, Any, Any] | None = None
) -> HomepageContext:
    """Rule agents, or `agents` = (planner, designer, developer) (the LLM ones, which fall back to these)."""
    fonts = FontconfigCatalog()
    planner, designer, developer = agents or (RuleSitePlanner(), RuleSiteDesigner(fonts), RuleSiteDeveloper())
    return HomepageContext(
        artifacts=FileArtifactStore(settings.artifacts_dir),
        planner=planner,
        designer=designer,
        developer=developer,
        renderer=renderer,
        fonts=fonts,
    )
