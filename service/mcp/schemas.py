"""What the MCP tools return: their `outputSchema`s, generated from these models (and the REST ones)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.schemas import CheckpointOut, FontOut


class FontList(BaseModel):
    fonts: list[FontOut]


class CheckpointList(BaseModel):
    job_id: str
    checkpoints: list[CheckpointOut] = Field(description="Oldest first; branch_job takes an id or a node")


class ClipScore(BaseModel):
    score: float = Field(description="100 x cosine of CLIP's image and text embeddings, floored at 0")
    interpretation: str = Field(description="weak, ok or strong")
    thresholds: dict[str, float]
    model: str
    image: str = Field(description="The artifact id scored")


class ImageAnalysis(BaseModel):
    image: str = Field(description="The artifact id analysed")
    width: int
    height: int
    product_box: dict[str, int] = Field(description="x, y, w, h of the product, in pixels")
    regions: list[dict[str, Any]] = Field(description="Free regions for text, best first")
    dominant: str = Field(description="The product's dominant colour, #rrggbb")
    accent: str = Field(description="Its most saturated distinct colour, #rrggbb")
    palette: list[str]
    brightness: list[list[float]] = Field(description="Mean luminance on a coarse grid, rows of columns")


class SystemStatus(BaseModel):
    status: str = Field(description="ok")
    workflows: dict[str, list[str]] = Field(description="Each workflow's nodes, in order")
    backends: dict[str, str] = Field(description="The backend each node runs with here (segment: u2netp, …)")
    jobs: dict[str, int] = Field(description="The caller's jobs by status (every tenant's for an admin)")
    fonts: int = Field(description="Installed fonts an ad can use")
    tenant: str
