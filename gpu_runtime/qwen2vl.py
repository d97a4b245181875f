"""The GPU `analyze` backend: Qwen2-VL looks at the scene; its answer fills the `stats` schema.

The scene is always measured by the embedded `stats` analyzer first (brightness, region luminance and
emptiness are measurements, not opinions). The VLM then ranks the free regions and names the product's
colours. Its answer is parsed leniently (code fences, prose around the JSON, truncated JSON, boxes as
lists, dicts or Qwen's "(x1,y1),(x2,y2)"); every part it did not answer usably keeps the measured value,
and each such part is reported as a fallback with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from kernel.color import parse_color
from kernel.models import Box, Placement, SceneAnalysis

PROMPT = (
    "This is an advertising image, {w}x{h} pixels, with a product in it. Text will be laid over calm "
    "areas that do not cover the product. Answer with one JSON object only, no prose:\n"
    '{{"free_regions": [{{"name": "top", "box": [x0, y0, x1, y1]}}], "dominant": "#rrggbb", '
    '"accent": "#rrggbb", "palette": ["#rrggbb", "#rrggbb"]}}\n'
    "Boxes use coordinates from 0 to 1000 across the image's width and height. free_regions: the calm "
    "areas best suited for text, best first. dominant: the product's main colour. accent: its most vivid "
    "distinct colour. palette: up to 5 of the product's colours, most frequent first."
)
SYSTEM = "You are a careful art director. You answer in strict JSON."
SCALE = 1000
MIN_REGION_SHARE = 0.01
"""A region smaller than 1 % of the canvas cannot hold text."""
PRODUCT_OVERLAP = 0.15
"""A region that puts more than 15 % of its area on the product is refused."""
MATCH = 0.5
"""A VLM box names a measured region when they share half of the smaller one."""

_PAIR_BOX = re.compile(r"\(\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\)\s*,?\s*\(\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\)")


@dataclass
class VlmAnswer:
    """What could be read from the answer, in canvas pixels, and what could not (part, reason)."""

    regions: list[tuple[str, Box]] = field(default_factory=list)
    dominant: str | None = None
    accent: str | None = None
    palette: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


class QwenAnalyzer:
    """`Analyzer`: the `stats` measurement, with Qwen2-VL's reading of the scene where it is usable."""

    name = "qwen2vl"

    def __init__(
        self,
        runtime: Any,
        measure: Any,
        *,
        model: str = "qwen2vl",
        max_new_tokens: int = 256,
        max_side: int = 896,
    ) -> None:
        self.runtime, self.measure, self.model = runtime, measure, model
        self.max_new_tokens, self.max_side = max_new_tokens, max_side

    async def analyze(
        self,
        *,
        scene: Image.Image,
        placement: Placement,
        fallback: Callable[[str, str], None] | None = None,
    ) -> SceneAnalysis:
        measured = await self.measure.analyze(scene=scene, placement=placement)
        small = await asyncio.to_thread(_thumbnail, scene, self.max_side)  # off the loop and the device
        prompt = PROMPT.format(w=scene.width, h=scene.height)
        async with self.runtime.use(self.model) as vl:
            text = await self.runtime.run(ask, vl, small, prompt, self.max_new_tokens)
        analysis, problems = merge(measured, parse_answer(text, scene.size))
        if fallback is not None:
            for part, reason in problems:
                fallback(part, reason)
        return analysis


def _thumbnail(scene: Image.Image, max_side: int) -> Image.Image:
    small = scene.convert("RGB")
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return small


def ask(vl: Any, image: Image.Image, prompt: str, max_new_tokens: int) -> str:
    """One greedy answer about `image`. Runs on the runtime's thread.

    `Qwen2VLProcessor` needs torchvision, so this does what it does: the PIL image processor makes the
    patches, and the prompt's `<|image_pad|>` is repeated once per merged patch.
    """
    import torch

    vis = vl.image_processor(images=[image], return_tensors="pt")
    n_image_tokens = int(vis["image_grid_thw"][0].prod()) // vl.image_processor.merge_size**2
    text = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|>{'<|image_pad|>' * n_image_tokens}<|vision_end|>{prompt}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    enc = vl.tokenizer([text], return_tensors="pt")
    device, dtype = vl.model.device, vl.model.dtype
    inputs = {k: v.to(device) for k, v in enc.items()}
    inputs["pixel_values"] = vis["pixel_values"].to(device, dtype)
    inputs["image_grid_thw"] = vis["image_grid_thw"].to(device)
    with torch.inference_mode():
        out = vl.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return vl.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


# -- reading the answer ----------------------------------------------------------------------------------


def parse_answer(text: str, canvas: tuple[int, int]) -> VlmAnswer:
    """Read regions and colours from the VLM's `text`; never raises."""
    answer = VlmAnswer()
    doc = _json_object(text)
    if doc is None:
        snippet = " ".join(text.split())[:80]
        reason = f"the answer holds no JSON object: {snippet!r}" if snippet else "the answer was empty"
        answer.problems = [(part, reason) for part in ("regions", "dominant", "accent", "palette")]
        return answer
    _read_regions(doc, canvas, answer)
    for part in ("dominant", "accent"):
        raw = _first(doc, part, f"{part}_color", f"{part}_colour")
        color = parse_color(raw)
        if color is None:
            answer.problems.append((part, f"no usable colour: {raw!r}" if raw is not None else "not given"))
        setattr(answer, part, color)
    raw_palette = _first(doc, "palette", "colors", "colours")
    if isinstance(raw_palette, list):
        colors = [c for c in (parse_color(v) for v in raw_palette) if c is not None]
        answer.palette = list(dict.fromkeys(colors))[:5]
    if not answer.palette:
        answer.problems.append(
            ("palette", f"no usable colours: {raw_palette!r}" if raw_palette is not None else "not given")
        )
    return answer


def merge(measured: SceneAnalysis, answer: VlmAnswer) -> tuple[SceneAnalysis, list[tuple[str, str]]]:
    """The measured analysis with the VLM's readings where usable; the product box is always the one
    composite placed (it knows exactly where the product is)."""
    problems = list(answer.problems)
    product = measured.product_box
    preferred: list[int] = []
    refused: list[str] = []
    for name, box in answer.regions:
        if box.intersection(product) > PRODUCT_OVERLAP * box.area:
            refused.append(f"{name} covers the product")
            continue
        scores = [box.overlap(r.box) for r in measured.regions]
        best = max(range(len(scores)), key=scores.__getitem__, default=None)
        if best is not None and scores[best] >= MATCH and best not in preferred:
            preferred.append(best)
        elif best is None or scores[best] < MATCH:
            refused.append(f"{name} matches no free region")
    if answer.regions and not preferred:
        problems.append(("regions", "; ".join(refused) or "no usable region"))
    regions = [measured.regions[i] for i in preferred]
    regions += [r for i, r in enumerate(measured.regions) if i not in preferred]
    update: dict[str, Any] = {"regions": regions}
    if answer.dominant:
        update["dominant"] = answer.dominant
    if answer.accent:
        update["accent"] = answer.accent
    if answer.palette:
        update["palette"] = answer.palette
    return measured.model_copy(update=update), problems


def _read_regions(doc: dict[str, Any], canvas: tuple[int, int], answer: VlmAnswer) -> None:
    raw = _first(doc, "free_regions", "regions", "text_regions")
    if not isinstance(raw, list) or not raw:
        answer.problems.append(
            ("regions", "no list of free regions" if raw is None else f"not a list: {raw!r}")
        )
        return
    bad = []
    for i, item in enumerate(raw):
        name, spec = f"region {i + 1}", item
        if isinstance(item, dict):
            name, spec = str(item.get("name") or name), item.get("box")
        box = _box(spec, canvas)
        if box is None:
            bad.append(f"{name}: unusable box {spec!r}")
        else:
            answer.regions.append((name, box))
    if not answer.regions:
        answer.problems.append(("regions", "; ".join(bad)[:300]))


def _first(doc: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in doc:
            return doc[key]
    return None


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text`; a truncated one (the token limit hit) is closed and read.

    Only the first `{` is repaired (a truncated answer is cut at its end; later ones are inner objects or
    noise), and the repair tries at most `_REPAIR_TRIES` cut points: a long broken answer costs
    milliseconds, not seconds."""
    decoder = json.JSONDecoder()
    for n, match in enumerate(re.finditer(r"\{", text)):
        try:
            doc, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            repaired = _close(text[match.start() :]) if n == 0 else None
            doc = json.loads(repaired) if repaired is not None else None
        if isinstance(doc, dict):
            return doc
    return None


_REPAIR_TRIES = 64


def _close(fragment: str) -> str | None:
    """Close a truncated JSON text: cut it back to the last complete value, then close its brackets.

    One pass notes, at each place a value may end (after `,` `}` `]` `"` or a digit, outside a string),
    the brackets still open; the last `_REPAIR_TRIES` of those are tried, latest first."""
    cuts: list[tuple[int, str]] = []  # (where the body ends, closers) per candidate cut
    stack: list[str] = []
    in_string = escaped = False
    for i, ch in enumerate(fragment):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                cuts.append((i + 1, "".join(reversed(stack))))
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}" and stack:
            stack.pop()
            cuts.append((i + 1, "".join(reversed(stack))))
        elif ch == ",":
            cuts.append((i, "".join(reversed(stack))))
        elif ch.isdigit():
            cuts.append((i + 1, "".join(reversed(stack))))
    for end, closers in reversed(cuts[-_REPAIR_TRIES:]):
        body = fragment[:end]
        try:
            json.loads(body + closers)
        except json.JSONDecodeError:
            continue
        return body + closers
    return None


def _box(spec: Any, canvas: tuple[int, int]) -> Box | None:
    """A box in 0..1000 coordinates (list, dict or "(x1,y1),(x2,y2)") as canvas pixels, or None."""
    coords: list[float] | None = None
    if isinstance(spec, str) and (m := _PAIR_BOX.search(spec)):
        coords = [float(v) for v in m.groups()]
    elif isinstance(spec, list | tuple) and len(spec) == 4:
        coords = [float(v) for v in spec if isinstance(v, int | float) and not isinstance(v, bool)]
    elif isinstance(spec, dict):
        if all(k in spec for k in ("x0", "y0", "x1", "y1")):
            coords = [spec["x0"], spec["y0"], spec["x1"], spec["y1"]]
        elif all(k in spec for k in ("x", "y", "w", "h")):
            coords = [spec["x"], spec["y"], spec["x"] + spec["w"], spec["y"] + spec["h"]]
        if coords is not None and not all(isinstance(v, int | float) for v in coords):
            coords = None
    if coords is None or len(coords) != 4:
        return None
    x0, y0, x1, y1 = (min(max(float(v), 0.0), SCALE) for v in coords)
    if x1 <= x0 or y1 <= y0:
        return None
    w, h = canvas
    box = Box(
        x=round(x0 * w / SCALE),
        y=round(y0 * h / SCALE),
        w=round((x1 - x0) * w / SCALE),
        h=round((y1 - y0) * h / SCALE),
    )
    return box if box.area >= MIN_REGION_SHARE * w * h else None
