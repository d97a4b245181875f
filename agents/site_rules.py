"""The rule-based homepage agents in one place: the policies every LLM homepage agent falls back to."""

from __future__ import annotations

from .site_designer import RuleSiteDesigner
from .site_developer import RuleSiteDeveloper
from .site_planner import RuleSitePlanner

__all__ = ["RuleSiteDesigner", "RuleSiteDeveloper", "RuleSitePlanner"]
