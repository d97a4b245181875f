"""Building the homepage workflow's run context (rule agents by default) from settings."""

from __future__ import annotations

from typing import Any

from agents.site_rules import RuleSiteDesigner, RuleSiteDeveloper, RuleSitePlanner
from checkpoints.artifacts import FileArtifactStore
from graph.homepage_context import HomepageContext, SiteRenderer
from nodes.backends.fonts import FontconfigCatalog
from service.settings import Settings


def make_homepage_context(
    settings: Settings,
    renderer: SiteRenderer,
    *,
    agents: tuple[Any, Any, Any] | None = None,
    chat: Any = None,
) -> HomepageContext:
    """Rule agents; LLM agents over `chat` (the ad context's, see `service.context.chat_of`), which fall
    back to the rules part by part; or `agents` = (planner, designer, developer)."""
    fonts = FontconfigCatalog()
    if agents is None and chat is not None:
        from agents.llm import Usage
        from agents.llm_site import LLMSiteDesigner, LLMSiteDeveloper, LLMSitePlanner

        usage = Usage()
        agents = (
            LLMSitePlanner(chat, usage),
            LLMSiteDesigner(chat, fonts, usage),
            LLMSiteDeveloper(chat, usage),
        )
    planner, designer, developer = agents or (RuleSitePlanner(), RuleSiteDesigner(fonts), RuleSiteDeveloper())
    return HomepageContext(
        artifacts=FileArtifactStore(settings.artifacts_dir),
        planner=planner,
        designer=designer,
        developer=developer,
        renderer=renderer,
        fonts=fonts,
    )
