"""Profiles, fakes and helpers for the homepage unit tests (no browser, no models)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from PIL import Image

from agents.site_rules import RuleSiteDesigner, RuleSiteDeveloper, RuleSitePlanner
from agents.site_schemas import Profile
from checkpoints.artifacts import FileArtifactStore
from graph.homepage_context import HomepageContext
from kernel.errors import AdgraphError
from tests.unit.fakes import FakeKoreanFonts

KO = {
    "store_name": "카페 봄",
    "store_type": "카페",
    "budget": "월 30만원",
    "period": "3개월",
    "advertising_goal": "신규 고객 유치",
    "target_customer": "20-30대 직장인",
    "advertising_media": "인스타그램",
    "store_strength": "직접 로스팅한 원두, 수제 디저트, 조용한 분위기",
    "location": "서울 성동구 성수동 123",
    "phone_number": "02-123-4567",
}
EN = {
    "store_name": "Blue Door Bakery",
    "store_type": "bakery",
    "advertising_goal": "more weekday visits",
    "target_customer": "families and commuters",
    "store_strength": "sourdough baked at 5am; butter croissants; friendly staff",
    "location": "12 High Street, Leeds",
    "phone_number": "+44 113 496 0000",
}


def profile(data: dict[str, Any] = KO, **changes: Any) -> Profile:
    return Profile.model_validate({**data, **changes})


def tiny_png(width: int = 8, height: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 100, 50)).save(buf, format="PNG")
    return buf.getvalue()


class FakeSiteRenderer:
    """Tiny PNGs of the right widths instead of Chromium; `violations` is what the audit reports; the first
    `fail_times` renders raise `failure()` instead."""

    def __init__(
        self,
        violations: dict[str, list[dict]] | None = None,
        *,
        fail_times: int = 0,
        failure: Callable[[], Exception] | None = None,
    ) -> None:
        self.violations = violations or {}
        self.screenshots: list[tuple[str, str]] = []
        self.seen: dict[str, bytes] = {}
        self.calls, self.fail_times = 0, fail_times
        self.failure = failure or (lambda: AdgraphError("RENDER_FAILED", "injected failure"))

    async def render_site(
        self, files: dict[str, bytes], pages: list[str], widths: dict[str, int], *, audit: bool = False
    ) -> tuple[dict[str, dict[str, bytes]], dict[str, list[dict]]]:
        self.calls += 1
        if self.fail_times > 0:
            self.fail_times -= 1
            raise self.failure()
        self.seen = dict(files)
        out: dict[str, dict[str, bytes]] = {}
        for page in pages:
            assert page in files
            out[page] = {}
            for label, width in widths.items():
                self.screenshots.append((page, label))
                out[page][label] = tiny_png(width, 10)
        return out, ({page: self.violations.get(page, []) for page in pages} if audit else {})


def site_context(tmp_path, renderer: Any = None, **agents: Any) -> HomepageContext:
    fonts = FakeKoreanFonts()
    return HomepageContext(
        artifacts=FileArtifactStore(tmp_path / "artifacts"),
        planner=agents.get("planner", RuleSitePlanner()),
        designer=agents.get("designer", RuleSiteDesigner(fonts)),
        developer=agents.get("developer", RuleSiteDeveloper()),
        renderer=renderer or FakeSiteRenderer(),
        fonts=fonts,
    )
