"""The homepage workflow's run context: the three agents, the renderer and the artifact store.

Agents are protocols: the rule-based ones (`agents/site_rules.py`) and the LLM ones implement the same
calls and return the same validated types (`agents/site_schemas.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agents.site_schemas import DesignSystem, Profile, SiteCode, SiteImage, SitePlan
from graph.context import ArtifactStore
from kernel.models import ArtifactRef, FontFace


class SitePlanner(Protocol):
    name: str
    """"rules" or "llm": reported per part in result.json."""

    async def plan(self, *, profile: Profile, images: int, pages: list[str] | None) -> SitePlan:
        """Pages (index and gallery always, at most 5; `pages` asks for specific ones), sections, copy."""
        ...


class SiteDesigner(Protocol):
    name: str

    async def design(self, *, profile: Profile, plan: SitePlan, style: str | None) -> DesignSystem: ...


class SiteDeveloper(Protocol):
    name: str

    async def code(
        self, *, profile: Profile, plan: SitePlan, design: DesignSystem, images: list[SiteImage]
    ) -> SiteCode:
        """Every page of `plan` as HTML plus one stylesheet; local images only, all text escaped."""
        ...


class SiteFonts(Protocol):
    def families(self, *, hangul_only: bool = False) -> list[str]: ...
    def faces(self) -> list[FontFace]: ...


class SiteRenderer(Protocol):
    async def render_site(
        self, files: dict[str, bytes], pages: list[str], widths: dict[str, int], *, audit: bool = False
    ) -> tuple[dict[str, dict[str, bytes]], dict[str, list[dict]]]:
        """PNG of each page (full height) at each named width, {page: {"desktop": png, …}}, and with
        `audit` axe-core's serious and critical violations per page."""
        ...


class SiteArtifacts(ArtifactStore, Protocol):
    async def put_bytes(
        self, data: bytes, mime: str, width: int | None = None, height: int | None = None
    ) -> ArtifactRef: ...
    async def read_bytes(self, ref: ArtifactRef) -> bytes: ...


@dataclass(frozen=True)
class HomepageContext:
    artifacts: SiteArtifacts
    planner: SitePlanner
    designer: SiteDesigner
    developer: SiteDeveloper
    renderer: SiteRenderer
    fonts: SiteFonts
    audit: bool = True
    """Run axe-core on every page in `render` (needs node_modules/axe-core)."""


_default_context: HomepageContext | None = None


def set_default_homepage_context(ctx: HomepageContext | None) -> None:
    """For hosts that cannot pass a context per run (the LangGraph dev server behind Studio)."""
    global _default_context
    _default_context = ctx


def homepage_context(runtime_context: HomepageContext | None) -> HomepageContext:
    if runtime_context is not None:
        return runtime_context
    if _default_context is None:
        raise RuntimeError("the homepage graph was run without a context: pass context=HomepageContext(...)")
    return _default_context
