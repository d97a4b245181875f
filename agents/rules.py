"""The rule-based agents in one place: the policies every LLM agent falls back to."""

from __future__ import annotations

from .designer import BODY_MIN_PX, HEADLINE_MIN_PX, MIN_CONTRAST, RuleDesigner
from .developer import RuleDeveloper
from .planner import RulePlanner

__all__ = ["BODY_MIN_PX", "HEADLINE_MIN_PX", "MIN_CONTRAST", "RuleDesigner", "RuleDeveloper", "RulePlanner"]
