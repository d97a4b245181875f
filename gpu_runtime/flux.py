"""The GPU `background` backend: FLUX.1 text-to-image, or img2img from a first composition of the scene.

Each diffusion step reports progress and looks at the job's cancel flag (diffusers' `callback_on_step_end`);
a cancel raises `StepCancelled` on the runtime's thread, which ends the job cancelled and resumable.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from kernel.errors import StepCancelled
from kernel.prompt_words import KO_RE, KO_WORDS
from kernel.script import has_hangul

DEFAULT_PROMPT = "a clean, softly lit studio backdrop"
STYLE = "empty product photography background, nothing in front, no text"
MULTIPLE = 16  # FLUX packs 2x2 latents of an 8x VAE: sides must be multiples of 16
_KO_PLACE = {"wall": "wall", "floor": "tabletop"}


def flux_defaults(model_dir: Path) -> tuple[int, float]:
    """Steps and guidance the checkpoint was made for: FLUX.1-dev embeds the guidance scale (28 steps,
    guidance 3.5); FLUX.1-schnell does not (distilled to 4 steps; guidance is ignored, so 0). Told apart by
    `guidance_embeds` in the transformer's config; a config that cannot be read counts as dev."""
    try:
        config = json.loads((model_dir / "transformer" / "config.json").read_text())
    except (OSError, ValueError):
        return 28, 3.5
    return (28, 3.5) if config.get("guidance_embeds", True) else (4, 0.0)


def flux_prompt(prompt: str) -> str:
    """The prompt FLUX's English text encoders understand. A Korean prompt is carried over through the
    studio backdrop's vocabulary (colours, tones, materials, light, wall / floor); other words are lost."""
    prompt = prompt.strip()
    if has_hangul(prompt):
        words = []
        for m in KO_RE.finditer(prompt):
            kind, meaning = KO_WORDS[m.group()]
            word = _KO_PLACE.get(kind, meaning) if kind != "ignore" else ""
            if word and word not in words:
                words.append(word)
        prompt = " ".join(words)
    return f"{prompt or DEFAULT_PROMPT}, {STYLE}"


class FluxBackdrop:
    """`Backdrop` backed by a FLUX pipeline held by the model runtime."""

    name = "flux"
    restyles = True
    """Takes `init_image` (img2img)."""

    def __init__(
        self,
        runtime: Any,
        *,
        model: str = "flux",
        steps: int = 28,
        guidance: float = 3.5,
        resolution: int = 1024,
        max_sequence_length: int = 256,
    ) -> None:
        self.runtime, self.model = runtime, model
        self.steps, self.guidance, self.resolution = steps, guidance, resolution
        self.max_sequence_length = max_sequence_length

    async def generate(
        self,
        *,
        size: tuple[int, int],
        prompt: str,
        product_palette: list[str],
        seed: int,
        init_image: Image.Image | None = None,
        strength: float = 0.6,
        progress: Callable[[float, str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Image.Image:
        """An RGB image of `size`; from `init_image` (img2img at `strength`) when one is given."""
        width, height = generation_size(size, self.resolution)
        loop = asyncio.get_running_loop()
        caller = contextvars.copy_context()  # `progress` may need the node's context (LangGraph's writer)

        def on_step(done: int, total: int) -> None:  # on the runtime's thread
            if progress is not None:
                message = f"diffusion step {done}/{total}"
                loop.call_soon_threadsafe(progress, done / total, message, context=caller)
            if cancelled is not None and cancelled():
                raise StepCancelled(f"cancelled after diffusion step {done}/{total}")

        call = {
            "prompt": flux_prompt(prompt),
            "width": width,
            "height": height,
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance,
            "max_sequence_length": self.max_sequence_length,
        }
        if init_image is not None:
            call["image"] = init_image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
            call["strength"] = strength
        async with self.runtime.use(self.model) as pipe:
            image = await self.runtime.run(diffuse, pipe, call, seed, on_step)
        return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def generation_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """The canvas scaled so its long side is `resolution`, each side a multiple of 16."""
    scale = resolution / max(size)
    return tuple(max(MULTIPLE, round(side * scale / MULTIPLE) * MULTIPLE) for side in size)  # type: ignore[return-value]


def diffuse(pipe: Any, call: dict[str, Any], seed: int, on_step: Callable[[int, int], None]) -> Image.Image:
    """Run the pipeline (img2img when `call` has an image). Runs on the runtime's thread."""
    import torch

    if "image" in call:
        from diffusers import FluxImg2ImgPipeline

        # Shares the resident modules; nothing is copied. Without a dtype from_pipe casts them to float32.
        pipe = FluxImg2ImgPipeline.from_pipe(pipe, dtype=pipe.dtype)
        pipe.set_progress_bar_config(disable=True)

    def step_end(p: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        on_step(i + 1, getattr(p, "_num_timesteps", None) or call["num_inference_steps"])
        return kwargs

    # A CPU generator gives the same noise for a seed on any device.
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.inference_mode():
        out = pipe(**call, generator=generator, callback_on_step_end=step_end)
    return out.images[0]
