from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agents.provenance import collect_fallbacks, provenance_of
from agents.site_schemas import design_problems
from graph.homepage_context import HomepageContext, homepage_context
from graph.state import HomepageState
from kernel.errors import AdgraphError


async def site_design(state: HomepageState, runtime: Runtime[HomepageContext]) -> dict[str, Any]:
    """Choose the design system: palette with readable text, installed fonts, spacing, components."""
    ctx = homepage_context(runtime.context)
    with collect_fallbacks() as fallbacks:
        design = await ctx.designer.design(profile=state["profile"], plan=state["plan"], style=state["style"])
    installed = {face.file for face in ctx.fonts.faces()}
    if problems := design_problems(design, ctx.fonts.families(), installed_files=installed):
        raise AdgraphError(
            "SITE_CHECK_FAILED", f"the design breaks the rules: {'; '.join(problems)}", part="design"
        )
    provenance = {**state.get("provenance", {}), "design": provenance_of(ctx.designer.name, fallbacks)}
    return {"design": design, "provenance": provenance}
