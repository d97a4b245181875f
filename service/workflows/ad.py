"""The `ad` workflow: a product photo and a line of copy → cutout, scene and the finished ad."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agents import schemas as agent_schemas
from checkpoints.artifacts import FileArtifactStore
from checkpoints.ingest import check_proportions, require_image
from graph.ad import INPUT_CONSUMERS, build_ad_graph
from graph.state import AD_NODES
from kernel import models
from kernel.errors import AdgraphError
from kernel.models import SIZES, TEXT_POSITIONS, AdCopy
from service.workflows import Output, Tools, VariantSpec, Workflow

MAX_HEADLINE_CHARS = 120
MAX_LINE_CHARS = 200
MAX_COPIES = 8
MAX_SIZES = 3
COPY_FIELDS = ("headline", "subline", "cta")


def _no_nul(v: str | None) -> str | None:
    if v is not None and "\x00" in v:  # PostgreSQL cannot store it; refuse it before a job exists
        raise ValueError("text must not contain NUL (U+0000)")
    return v


class Copy(BaseModel):
    """One ad's lines of copy."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    headline: str = Field(min_length=1, max_length=MAX_HEADLINE_CHARS)
    subline: str = Field("", max_length=MAX_LINE_CHARS)
    cta: str = Field("", max_length=60)

    _checked = field_validator("headline", "subline", "cta")(_no_nul)


class AdOptions(BaseModel):
    """The ad job's inputs other than the photo."""

    # strict: `seed: true` or `"5"` is refused, not read as 1 or 5 (an int still passes for a float)
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    headline: str = Field(min_length=1, max_length=MAX_HEADLINE_CHARS)
    subline: str = Field("", max_length=MAX_LINE_CHARS)
    cta: str = Field("", max_length=60)
    copies: list[Copy] | None = Field(
        None,
        min_length=1,
        max_length=MAX_COPIES,
        description="Variants: one ad per copy (and per size of `sizes`), sharing the cut-out, backdrop and "
        "composition. The first copy is the job's own (`headline`, `subline`, `cta` may be left out).",
    )
    sizes: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SIZES,
        description="Variants: one ad per size (and per copy of `copies`), sharing the cut-out. The first "
        "is the job's own `size`.",
    )
    background_prompt: str = Field("", max_length=1000)
    size: str = "1080x1080"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    text_position: str = "auto"
    font: str | None = None
    restyle: float | None = Field(
        None,
        gt=0,
        le=1,
        description="With the flux backend: img2img strength from a first composition of the product on "
        "the studio backdrop (light and shadows fit the product). Unset: drawn from the prompt alone.",
    )

    _checked = field_validator("headline", "subline", "cta", "background_prompt", "font")(_no_nul)

    @model_validator(mode="before")
    @classmethod
    def _first_variant(cls, data: Any) -> Any:
        """With `copies` / `sizes`, the job's own copy and size are the first ones: filled in when left
        out, and refused when given otherwise."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        copies, sizes = data.get("copies"), data.get("sizes")
        if isinstance(copies, list) and copies and isinstance(copies[0], dict):
            first = {"subline": "", "cta": "", **copies[0]}
            for f in COPY_FIELDS:
                if f not in data:
                    data[f] = first.get(f)
                elif _stripped(data[f]) != _stripped(first.get(f)):
                    raise ValueError(f"{f} differs from the first of copies: give the copy one way, not both")
        if isinstance(sizes, list) and sizes:
            if "size" not in data:
                data["size"] = sizes[0]
            elif data["size"] != sizes[0]:
                raise ValueError("size differs from the first of sizes: give the size one way, not both")
        return data

    @model_validator(mode="after")
    def _distinct_variants(self) -> AdOptions:
        if self.copies and len({(c.headline, c.subline, c.cta) for c in self.copies}) < len(self.copies):
            raise ValueError("copies: each copy must differ from the others")
        return self

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: list[str] | None) -> list[str] | None:
        for size in v or ():
            cls._size(size)
        if v and len(set(v)) < len(v):
            raise ValueError("each size may be asked for once")
        return v

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        if v not in SIZES:
            raise ValueError(f"unknown size {v!r}; choose one of {', '.join(SIZES)}")
        return v

    @field_validator("text_position")
    @classmethod
    def _position(cls, v: str) -> str:
        if v not in TEXT_POSITIONS:
            raise ValueError(f"unknown text position {v!r}; choose one of {', '.join(TEXT_POSITIONS)}")
        return v

    @field_validator("font")
    @classmethod
    def _font(cls, v: str | None) -> str | None:
        return v or None


class AdJobInput(AdOptions):
    """Input of an `ad` job: an uploaded photo's artifact id and the copy."""

    product_image: str = Field(pattern=r"^[0-9a-f]{64}$", description="Artifact id from POST /v1/artifacts")


def _prepare(opts: AdJobInput, tools: Tools) -> AdJobInput:
    # ARTIFACT_NOT_FOUND / INVALID_IMAGE before any job: a site's zip is no product photo
    ref = require_image(tools.artifacts.find(opts.product_image), "product_image")
    if ref.width and ref.height:
        check_proportions(f"product_image {ref.id}", ref.width, ref.height)
    copies = [c.model_dump() for c in opts.copies or ()] or [{f: getattr(opts, f) for f in COPY_FIELDS}]
    for field, text in ((f, c[f]) for c in copies for f in COPY_FIELDS):
        if missing := tools.undrawable(text):
            chars = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing)
            raise AdgraphError(
                "INVALID_INPUT",
                f"{field}: no installed font can draw {chars}; it would show as an empty box (remove it, "
                "or have the server install a colour emoji font such as fonts-noto-color-emoji)",
                field=field,
                characters=missing,
            )
    if opts.font:
        opts = opts.model_copy(update={"font": tools.resolve_font(opts.font)})
    return opts


def _stripped(v: Any) -> Any:
    return v.strip() if isinstance(v, str) else v


def _variants(opts: AdJobInput) -> list[VariantSpec]:
    """Copies x sizes, size by size: variant 0 is the job (first size, first copy); the first copy of each
    other size is a branch of the job after `segment` (the cut-out shared, a backdrop and composition of
    its own); each other copy is a branch of its size's first variant after `analyze` (only the text layer
    runs again)."""
    copies = [c.model_dump() for c in opts.copies or ()] or [{f: getattr(opts, f) for f in COPY_FIELDS}]
    sizes = opts.sizes or [opts.size]
    if len(copies) * len(sizes) == 1:
        return []
    specs = []
    for i, size in enumerate(sizes):
        for j, copy in enumerate(copies):
            k = i * len(copies) + j
            if k == 0:
                source, node, changes = None, None, {}
            elif j == 0:
                source, node, changes = 0, "segment", {"size": size}
            else:
                source, node, changes = i * len(copies), "analyze", copy
            specs.append(VariantSpec(k, source, node, changes, {"size": size, **copy}))
    return specs


def _graph_input(opts: AdJobInput, tools: Tools) -> dict[str, Any]:
    return {
        "product_image": tools.artifacts.find(opts.product_image),
        "copy": AdCopy(headline=opts.headline, subline=opts.subline, cta=opts.cta),
        "background_prompt": opts.background_prompt,
        "size": opts.size,
        "seed": opts.seed,
        "text_position": opts.text_position,
        "font": opts.font,
        "restyle": opts.restyle,
    }


def _input_of(values: dict[str, Any]) -> dict[str, Any]:
    copy: AdCopy = values["copy"]
    return {
        "product_image": values["product_image"].id,
        "headline": copy.headline,
        "subline": copy.subline,
        "cta": copy.cta,
        "background_prompt": values["background_prompt"],
        "size": values["size"],
        "seed": values["seed"],
        "text_position": values["text_position"],
        "font": values["font"],
        "restyle": values.get("restyle"),
    }


# The nodes whose backend shaped each output image (their names are in state as `<node>_backend`).
IMAGE_NODES = {
    "cutout": ("segment",),
    "scene": ("segment", "background"),
    "ad": ("segment", "background", "analyze"),
}
OUTPUT_FILES = {"cutout": "cutout.png", "scene": "scene.png", "ad": "ad.png"}


def backends_of(values: dict[str, Any], image: str | None = None) -> dict[str, str]:
    """Node -> backend that ran it (u2netp/birefnet, studio/flux, stats/qwen2vl), for one image or all."""
    nodes = IMAGE_NODES.get(image, ()) if image else ("segment", "background", "analyze")
    return {n: values[f"{n}_backend"] for n in nodes if f"{n}_backend" in values}


def _results(values: dict[str, Any]) -> dict[str, Output]:
    return {k: Output(values[k], backends_of(values, k)) for k in IMAGE_NODES if k in values}


def _files(result: Any, store: FileArtifactStore, out: Path) -> dict[str, Any]:
    """cutout.png, scene.png and ad.png; a failed run leaves no image that could pass for its output."""
    from service.outputs import atomic_copy

    artifacts: dict[str, str] = {}
    for key, filename in OUTPUT_FILES.items():
        ref = result.values.get(key) if result.status == "succeeded" else None
        if ref is not None:
            atomic_copy(store.local_path_sync(ref), out / filename)
            artifacts[key] = str(out / filename)
        else:
            (out / filename).unlink(missing_ok=True)
    doc: dict[str, Any] = {"artifacts": artifacts}
    if backends := backends_of(result.values):
        doc["backends"] = backends
    return doc


AD = Workflow(
    name="ad",
    nodes=AD_NODES,
    input_model=AdJobInput,
    build=build_ad_graph,
    consumers=INPUT_CONSUMERS,
    branch_fields=("headline", "subline", "cta", "background_prompt", "seed", "font", "size"),
    previews={"segment": "cutout", "background": "background", "composite": "scene", "render": "ad"},
    prepare=_prepare,
    graph_input=_graph_input,
    input_of=_input_of,
    artifacts_of=lambda opts: [opts.product_image],
    variants=_variants,
    results=_results,
    files=_files,
    state_types=(
        models.ArtifactRef,
        models.Box,
        models.AdCopy,
        models.Placement,
        models.Region,
        models.SceneAnalysis,
        agent_schemas.TextBlock,
        agent_schemas.TextPlan,
        agent_schemas.BlockStyle,
        agent_schemas.Scrim,
        agent_schemas.ButtonStyle,
        agent_schemas.TextDesign,
    ),
)
