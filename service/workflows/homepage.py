"""The `homepage` workflow: a business profile (and photos) → a small site, its screenshots and a zip."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents import provenance, site_schemas
from agents.site_schemas import MAX_PAGES, PAGE_KINDS, Profile
from checkpoints.artifacts import FileArtifactStore
from checkpoints.ingest import require_image
from graph.homepage import HOMEPAGE_INPUT_CONSUMERS, build_homepage_graph
from graph.state import HOMEPAGE_NODES
from kernel import models
from kernel.models import ArtifactRef
from service.workflows import Output, Tools, Workflow

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
    return [require_image(store.find(i), "images") for i in ids]


def _prepare(opts: HomepageJobInput, tools: Tools) -> HomepageJobInput:
    find_images(tools.artifacts, opts.images)  # ARTIFACT_NOT_FOUND / INVALID_IMAGE before any job
    return opts


def _graph_input(opts: HomepageJobInput, tools: Tools) -> dict[str, Any]:
    images = find_images(tools.artifacts, opts.images)
    return {"profile": opts.profile, "images": images, "pages": opts.pages, "style": opts.style}


def _input_of(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "profile": values["profile"].model_dump(exclude_none=True),
        "images": [ref.id for ref in values["images"]],
        "pages": values["pages"],
        "style": values["style"],
    }


def _results(values: dict[str, Any]) -> dict[str, Output]:
    out: dict[str, Output] = {}
    if "site_zip" in values:
        out["site_zip"] = Output(values["site_zip"], {})
    for name, ref in values.get("screens", {}).items():
        out[f"screen:{name}"] = Output(ref, {})
    return out


def _checks(values: dict[str, Any], error: Any = None) -> dict[str, Any] | None:
    if "checks" in values:
        return {n: {"passed": not f, "problems": f} for n, f in values["checks"].results.items()}
    if error is not None and "checks" in error.details:
        return {n: {"passed": False, "problems": f} for n, f in error.details["checks"].items()}
    return None


def _report(values: dict[str, Any]) -> dict[str, Any]:
    """Which agent made each part (and any fallback), and what each check found."""
    report: dict[str, Any] = {
        "agents": {part: p.model_dump() for part, p in values.get("provenance", {}).items()},
    }
    if (checks := _checks(values)) is not None:
        report["checks"] = checks
    if "site" in values:
        report["pages"] = values["site"].pages
    return report


def _files(result: Any, store: FileArtifactStore, out_dir: Path) -> dict[str, Any]:
    """site/, screens/<page>-desktop.png and -mobile.png, site.zip."""
    from service.outputs import atomic_copy

    for stale in ("site", "screens"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)
    (out_dir / "site.zip").unlink(missing_ok=True)
    values = result.values
    doc: dict[str, Any] = {"workflow": "homepage"}
    if result.status == "succeeded":
        site = values["site"]
        for path, ref in site.files.items():
            dst = out_dir / "site" / path
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_copy(store.local_path_sync(ref), dst)
        (out_dir / "screens").mkdir()
        for name, ref in values["screens"].items():
            atomic_copy(store.local_path_sync(ref), out_dir / "screens" / f"{name}.png")
        atomic_copy(store.local_path_sync(values["site_zip"]), out_dir / "site.zip")
        doc["pages"] = site.pages
        doc["artifacts"] = {
            "site": str(out_dir / "site" / "index.html"),
            "site_zip": str(out_dir / "site.zip"),
            "screens": {n: str(out_dir / "screens" / f"{n}.png") for n in values["screens"]},
        }
    elif "plan" in values:
        doc["pages"] = [p.filename for p in values["plan"].pages]
    doc["agents"] = {part: p.model_dump() for part, p in values.get("provenance", {}).items()}
    if (checks := _checks(values, result.error)) is not None:
        doc["checks"] = checks
    return doc


HOMEPAGE = Workflow(
    name="homepage",
    nodes=HOMEPAGE_NODES,
    input_model=HomepageJobInput,
    build=build_homepage_graph,
    consumers=HOMEPAGE_INPUT_CONSUMERS,
    branch_fields=("style", "pages", "profile"),
    previews={"render": "site_zip"},
    prepare=_prepare,
    graph_input=_graph_input,
    input_of=_input_of,
    artifacts_of=lambda opts: list(opts.images),
    results=_results,
    files=_files,
    report=_report,
    state_types=(
        models.ArtifactRef,
        site_schemas.Profile,
        site_schemas.SiteSection,
        site_schemas.SitePage,
        site_schemas.SitePlan,
        site_schemas.Palette,
        site_schemas.TypeScale,
        site_schemas.DesignSystem,
        site_schemas.SiteManifest,
        site_schemas.SiteChecks,
        provenance.PartProvenance,
    ),
)
