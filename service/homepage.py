"""The homepage workflow's side of the service and CLI: its input, checked before a job exists, and the
files a finished job leaves (site/, screens/, site.zip, result.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.site_schemas import MAX_PAGES, PAGE_KINDS, Profile
from checkpoints.artifacts import FileArtifactStore
from kernel.errors import AdgraphError
from kernel.models import ArtifactRef
from service.jobs import RunResult, _atomic_copy, _atomic_write

MAX_IMAGES = 12


class HomepageJobInput(BaseModel):
    """Input of a `homepage` job: the business profile, photos (artifact ids), pages and a style hint."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    profile: Profile
    images: list[str] = Field(
        default_factory=list,
        max_length=MAX_IMAGES,
        description="Artifact ids (POST /v1/artifacts, or an ad job's result) for the hero and gallery.",
    )
    pages: list[str] | None = Field(
        None, description=f"Pages to make, from {', '.join(PAGE_KINDS)}; index and gallery are always made."
    )
    style: str | None = Field(None, max_length=200, description="A style hint: warm, modern, classic, …")

    @field_validator("images")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        for artifact_id in v:
            if len(artifact_id) != 64 or any(c not in "0123456789abcdef" for c in artifact_id):
                raise ValueError(f"{artifact_id!r} is not an artifact id (64 hex digits)")
        return v

    @field_validator("pages")
    @classmethod
    def _pages(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        if len(v) > MAX_PAGES:
            raise ValueError(f"{len(v)} pages requested; a site has at most {MAX_PAGES}")
        unknown = [p for p in v if p not in PAGE_KINDS]
        if unknown:
            raise ValueError(f"unknown pages {unknown}; choose from {', '.join(PAGE_KINDS)}")
        if len(set(v) | {"index", "gallery"}) > MAX_PAGES:
            raise ValueError(
                f"{len(set(v) | {'index', 'gallery'})} pages with index and gallery; at most {MAX_PAGES}"
            )
        return list(dict.fromkeys(v))

    @field_validator("style")
    @classmethod
    def _style(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("text must not contain NUL (U+0000)")
        return v or None


def find_images(store: FileArtifactStore, ids: list[str]) -> list[ArtifactRef]:
    """The stored images with those ids: ARTIFACT_NOT_FOUND / INVALID_IMAGE before any job exists."""
    refs = [store.find(i) for i in ids]
    for ref in refs:
        if ref.mime not in ("image/png", "image/jpeg", "image/webp"):
            raise AdgraphError(
                "INVALID_IMAGE", f"artifact {ref.id} is {ref.mime}, not a PNG, JPEG or WebP image"
            )
    return refs


def homepage_graph_input(opts: HomepageJobInput, images: list[ArtifactRef]) -> dict[str, Any]:
    return {"profile": opts.profile, "images": images, "pages": opts.pages, "style": opts.style}


def write_homepage_outputs(result: RunResult, store: FileArtifactStore, out_dir: Path) -> dict[str, Any]:
    """site/, screens/<page>-desktop.png and -mobile.png, site.zip, then result.json (written last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("site", "screens"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)
    (out_dir / "site.zip").unlink(missing_ok=True)
    values = result.values
    doc: dict[str, Any] = {"job_id": result.job_id, "workflow": "homepage", "status": result.status}
    if result.status == "succeeded":
        site = values["site"]
        for path, ref in site.files.items():
            dst = out_dir / "site" / path
            dst.parent.mkdir(parents=True, exist_ok=True)
            _atomic_copy(store.path(ref), dst)
        (out_dir / "screens").mkdir()
        for name, ref in values["screens"].items():
            _atomic_copy(store.path(ref), out_dir / "screens" / f"{name}.png")
        _atomic_copy(store.path(values["site_zip"]), out_dir / "site.zip")
        doc["pages"] = site.pages
        doc["artifacts"] = {
            "site": str(out_dir / "site" / "index.html"),
            "site_zip": str(out_dir / "site.zip"),
            "screens": {n: str(out_dir / "screens" / f"{n}.png") for n in values["screens"]},
        }
    elif "plan" in values:
        doc["pages"] = [p.filename for p in values["plan"].pages]
    doc["nodes"] = result.nodes
    doc["checkpoints"] = result.checkpoints
    doc["agents"] = {part: p.model_dump() for part, p in values.get("provenance", {}).items()}
    if "checks" in values:
        doc["checks"] = {
            name: {"passed": not found, "problems": found} for name, found in values["checks"].results.items()
        }
    elif result.error is not None and "checks" in result.error.details:
        doc["checks"] = {
            n: {"passed": False, "problems": f} for n, f in result.error.details["checks"].items()
        }
    if result.events:
        doc["events"] = result.events
    if result.parent:
        doc["parent"] = result.parent
    if result.error is not None:
        doc["error"] = result.error.to_dict()
    _atomic_write(out_dir / "result.json", json.dumps(doc, indent=2, ensure_ascii=False).encode())
    return doc


HOMEPAGE_BRANCH_FIELDS = ("style", "pages", "profile")


def homepage_branch_changes(
    values: dict[str, Any], changes: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply a branch's `changes` to a homepage checkpoint's `values`: (the new job's input, state overrides).

    "Same plan, new design" is a branch from `plan` with a new `style`."""
    from service.jobs import check_branch
    from service.requests import parse

    check_branch(values, changes, HOMEPAGE_BRANCH_FIELDS, first_key="profile", what="a homepage branch")
    current = {
        "profile": values["profile"].model_dump(exclude_none=True),
        "images": [ref.id for ref in values["images"]],
        "pages": values["pages"],
        "style": values["style"],
    }
    merged = parse(HomepageJobInput, {**current, **changes})
    overrides: dict[str, Any] = {}
    if merged.profile != values["profile"]:
        overrides["profile"] = merged.profile
    for key in ("pages", "style"):
        if getattr(merged, key) != values[key]:
            overrides[key] = getattr(merged, key)
    return merged.model_dump(mode="json", exclude_none=False), overrides
