from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from agents.provenance import collect_fallbacks, provenance_of
from agents.site_checks import code_problems
from agents.site_schemas import CSS_PATH, SiteImage, SiteManifest, font_paths
from graph.homepage_context import HomepageContext, homepage_context
from graph.state import HomepageState
from kernel.errors import AdgraphError
from nodes.backends.web_images import for_the_web

_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


async def site_code(state: HomepageState, runtime: Runtime[HomepageContext]) -> dict[str, Any]:
    """Write every page's HTML and the stylesheet, check them, and store the site's files."""
    ctx = homepage_context(runtime.context)
    plan, design = state["plan"], state["design"]
    web = await asyncio.gather(*(for_the_web(ctx.artifacts, ref) for ref in state["images"]))
    images = [
        SiteImage(
            src=f"images/photo-{i + 1}.{_EXT[ref.mime]}", width=ref.width or 800, height=ref.height or 600
        )
        for i, ref in enumerate(web)
    ]
    fonts = font_paths(design)
    with collect_fallbacks() as fallbacks:
        code = await ctx.developer.code(profile=state["profile"], plan=plan, design=design, images=images)
    pages = [p.filename for p in plan.pages]
    problems = code_problems(
        code,
        profile=state["profile"],
        design=design,
        images=images,
        pages=pages,
        extra=dict.fromkeys(fonts, b""),
    )
    if problems:
        raise AdgraphError(
            "SITE_CHECK_FAILED", f"the site's code breaks the rules: {'; '.join(problems[:10])}", part="code"
        )
    put = ctx.artifacts.put_bytes
    font_data = await asyncio.gather(*(asyncio.to_thread(Path(f).read_bytes) for f in fonts.values()))
    refs = await asyncio.gather(
        *(put(code.pages[name].encode(), "text/html") for name in pages),
        put(code.css.encode(), "text/css"),
        *(put(data, "font/ttf") for data in font_data),
    )
    files = dict(zip([*pages, CSS_PATH, *fonts], refs, strict=True))
    files.update({image.src: ref for image, ref in zip(images, web, strict=True)})
    provenance = {**state.get("provenance", {}), "code": provenance_of(ctx.developer.name, fallbacks)}
    return {"site": SiteManifest(files=files, pages=pages), "provenance": provenance}
