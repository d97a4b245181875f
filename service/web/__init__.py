"""The web studio at `/`: static HTML, CSS and JS served by us, a thin door over the REST API.

The browser keeps the API key in sessionStorage and sends it as `X-API-Key` on each fetch; no cookie is
ever set, so there is no ambient credential and no CSRF surface. Every asset comes from this package."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8"}
FILES = {p.name: p for p in STATIC.iterdir() if p.suffix in TYPES}

router = APIRouter(include_in_schema=False)


def _file(name: str) -> FileResponse:
    path = FILES.get(name)
    if path is None:
        raise HTTPException(404, f"no studio asset {name!r}")
    return FileResponse(
        path,
        media_type=TYPES[path.suffix],
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
    )


@router.get("/")
async def index() -> FileResponse:
    return _file("index.html")


@router.get("/studio/{name}")
async def asset(name: str) -> FileResponse:
    return _file(name)
