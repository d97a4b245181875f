from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agents.provenance import collect_fallbacks, provenance_of
from agents.site_schemas import plan_problems
from graph.homepage_context import HomepageContext, homepage_context
from graph.state import HomepageState
from kernel.errors import AdgraphError


async def site_plan(state: HomepageState, runtime: Runtime[HomepageContext]) -> dict[str, Any]:
    """Choose the pages and sections and write their copy in the profile's language."""
    ctx = homepage_context(runtime.context)
    profile = state["profile"]
    with collect_fallbacks() as fallbacks:
        plan = await ctx.planner.plan(profile=profile, images=len(state["images"]), pages=state["pages"])
    if problems := plan_problems(plan, profile):
        raise AdgraphError(
            "SITE_CHECK_FAILED", f"the site plan breaks the rules: {'; '.join(problems)}", part="plan"
        )
    provenance = {**state.get("provenance", {}), "plan": provenance_of(ctx.planner.name, fallbacks)}
    return {"plan": plan, "provenance": provenance}
