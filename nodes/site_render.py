from __future__ import annotations

import asyncio
import io
import zipfile
from typing import Any

from langgraph.runtime import Runtime
from PIL import Image

from agents.site_checks import check_site
from agents.site_schemas import SiteChecks
from graph.homepage_context import HomepageContext, homepage_context
from graph.state import SCREEN_WIDTHS, HomepageState
from kernel.errors import AdgraphError


async def site_render(state: HomepageState, runtime: Runtime[HomepageContext]) -> dict[str, Any]:
    """Screenshot every page at desktop and mobile width, run the checks, and zip the site."""
    ctx = homepage_context(runtime.context)
    site = state["site"]
    data = await asyncio.gather(*(ctx.artifacts.read_bytes(ref) for ref in site.files.values()))
    files = dict(zip(site.files, data, strict=True))
    results = check_site(files, state["profile"], state["design"])
    if failed := {name: found for name, found in results.items() if found}:  # never load a bad site
        raise AdgraphError("SITE_CHECK_FAILED", f"the site failed {', '.join(failed)}", checks=failed)
    runtime.stream_writer({"type": "progress", "fraction": 0.1, "message": "screenshots and accessibility"})
    shots, violations = await ctx.renderer.render_site(files, site.pages, SCREEN_WIDTHS, audit=ctx.audit)
    if ctx.audit:
        results["axe"] = [
            f"{page}: {v['impact']} {v['id']} ({v['help']}) at {', '.join(v['nodes'])}"
            for page, found in violations.items()
            for v in found
        ]
    checks = SiteChecks(results=results)
    if not checks.passed:
        failed = {name: found for name, found in results.items() if found}
        raise AdgraphError(
            "SITE_CHECK_FAILED",
            f"the site failed {', '.join(failed)}: "
            + "; ".join(p for found in failed.values() for p in found[:3]),
            checks=failed,
        )
    screens: dict[str, Any] = {}
    for page, by_width in shots.items():
        for label, png in by_width.items():
            with Image.open(io.BytesIO(png)) as im:
                size = im.size
            screens[f"{page.removesuffix('.html')}-{label}"] = await ctx.artifacts.put_bytes(
                png, "image/png", *size
            )
    site_zip = await ctx.artifacts.put_bytes(await asyncio.to_thread(zip_site, files), "application/zip")
    return {"screens": screens, "site_zip": site_zip, "checks": checks}


def zip_site(files: dict[str, bytes]) -> bytes:
    """The site as a zip under `site/`; fixed timestamps, so the same site gives the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(files):
            info = zipfile.ZipInfo(f"site/{path}", date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, files[path])
    return buf.getvalue()
