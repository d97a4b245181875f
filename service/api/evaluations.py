"""Evaluations of generated images: the CLIP score of an image against a text."""

from __future__ import annotations

import asyncio
import io
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from PIL import Image
from pydantic import BaseModel

from checkpoints.ingest import validate_image
from kernel.errors import AdgraphError
from service.api.deps import CallerDep, ComponentsDep, JobsDep
from service.schemas import ErrorResponse

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])


class ClipScoreOut(BaseModel):
    score: float
    """100 x cosine of CLIP's image and text embeddings, floored at 0."""
    interpretation: str
    """weak (< thresholds.ok), ok, or strong (>= thresholds.strong); bands for CLIP ViT-L/14."""
    thresholds: dict[str, float]
    model: str
    image: str | None
    """The artifact id scored, when one was given."""


@router.post(
    "/clip-score",
    response_model=ClipScoreOut,
    responses={
        404: {"model": ErrorResponse},
        413: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
async def clip_score(
    parts: ComponentsDep,
    jobs: JobsDep,
    caller: CallerDep,
    text: Annotated[str, Form(min_length=1, max_length=1000, description="What the image should show.")],
    artifact_id: Annotated[
        str | None, Form(pattern=r"^[0-9a-f]{64}$", description="A stored image (POST /v1/artifacts).")
    ] = None,
    file: Annotated[UploadFile | None, File(description="Or an image uploaded with the request.")] = None,
) -> ClipScoreOut:
    """How well an image matches a text (form fields: `text`, and `artifact_id` or `file`)."""
    from gpu_runtime.clip import THRESHOLDS, interpret

    caller.require("read")
    if (artifact_id is None) == (file is None):
        raise AdgraphError(
            "INVALID_INPUT", "give exactly one of artifact_id or file", fields=["artifact_id", "file"]
        )
    if artifact_id is not None:
        ref = await jobs.artifact(caller, artifact_id)
        image = await parts.artifacts.open_image(ref)
    else:
        assert file is not None
        data = await file.read()
        max_pixels = parts.settings.max_image_pixels
        await asyncio.to_thread(validate_image, data, max_pixels=max_pixels, name=file.filename or "file")
        image = Image.open(io.BytesIO(data))
    # bad input is refused first, whether or not the model is here
    models = parts.models
    scorer = models.require_clip()
    score = await scorer.score(image, text)
    return ClipScoreOut(
        score=score,
        interpretation=interpret(score),
        thresholds=THRESHOLDS,
        model=models.located["clip"].info.repo_id,
        image=artifact_id,
    )
