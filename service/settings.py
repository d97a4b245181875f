"""Settings, read once: environment variables with the ADGRAPH_ prefix, or a .env file."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADGRAPH_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path(".adgraph"), description="Artifacts and the SQLite databases live here.")
    checkpoint_url: str | None = Field(
        None, description="sqlite:///FILE or postgresql://…; default: SQLite in data_dir."
    )
    max_image_pixels: int = Field(40_000_000, gt=0, description="Larger uploads are IMAGE_TOO_LARGE.")
    chromium_path: str = "/usr/bin/chromium"
    render_timeout_s: float = Field(20.0, gt=0)
    render_pages: int = Field(2, ge=1, description="Chromium tabs kept warm for rendering at once.")
    onnx_threads: int = Field(2, ge=1)

    @cached_property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def checkpoints(self) -> str:
        return self.checkpoint_url or f"sqlite:///{self.data_dir / 'checkpoints.db'}"
