"""Request models: what a user may ask for, checked before any job exists."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kernel.errors import AdgraphError
from kernel.models import SIZES, TEXT_POSITIONS

MAX_HEADLINE_CHARS = 120
MAX_LINE_CHARS = 200


class AdOptions(BaseModel):
    """The ad job's inputs other than the photo."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    headline: str = Field(min_length=1, max_length=MAX_HEADLINE_CHARS)
    subline: str = Field("", max_length=MAX_LINE_CHARS)
    cta: str = Field("", max_length=60)
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

    @field_validator("headline", "subline", "cta", "background_prompt", "font")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:  # PostgreSQL cannot store it; refuse it before a job exists
            raise ValueError("text must not contain NUL (U+0000)")
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


def parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate `data`, turning pydantic's errors into one INVALID_INPUT naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = [f"{'.'.join(map(str, err['loc'])) or 'input'}: {err['msg']}" for err in e.errors()]
        raise AdgraphError(
            "INVALID_INPUT",
            "; ".join(problems),
            fields=[".".join(map(str, err["loc"])) for err in e.errors()],
        ) from None
