"""CLIP score: how well an image matches a text, for evaluating generated ads.

The score is 100 x the cosine of CLIP's image and text embeddings, floored at 0 (the usual CLIPScore
convention, as torchmetrics reports it). For CLIP ViT-L/14, captions that describe an image score about
25-35 and unrelated image/text pairs about 10-18 (published CLIPScore figures for MS-COCO and for
text-to-image benchmarks), so the interpretation bands are:

    weak   < 20    the image does not show what the text says
    ok     20-26   related; the main subject is there
    strong >= 26   a close match

The bands are for ViT-L/14; other CLIP sizes shift the scale by a few points.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

THRESHOLDS = {"ok": 20.0, "strong": 26.0}


def interpret(score: float) -> str:
    if score >= THRESHOLDS["strong"]:
        return "strong"
    if score >= THRESHOLDS["ok"]:
        return "ok"
    return "weak"


class ClipScorer:
    """CLIP through the model runtime: `await score(image, text)` -> 0..100."""

    name = "clip"

    def __init__(self, runtime: Any, *, model: str = "clip") -> None:
        self.runtime, self.model = runtime, model

    async def score(self, image: Image.Image, text: str) -> float:
        async with self.runtime.use(self.model) as clip:
            return await self.runtime.run(clip_score, clip, image, text)


def clip_score(clip: Any, image: Image.Image, text: str) -> float:
    """Runs on the runtime's thread."""
    import torch

    device, dtype = clip.model.device, clip.model.dtype
    pixels = clip.image_processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
    tokens = clip.tokenizer([text], padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.inference_mode():
        img = clip.model.get_image_features(pixel_values=pixels.to(device, dtype))
        txt = clip.model.get_text_features(
            input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device)
        )
        img = _embedding(img)
        txt = _embedding(txt)
        cos = torch.nn.functional.cosine_similarity(img.float(), txt.float()).item()
    return round(max(cos, 0.0) * 100.0, 4)


def _embedding(out: Any) -> Any:
    # transformers 5 may return a model output rather than a bare tensor
    if hasattr(out, "pooler_output") and not hasattr(out, "shape"):
        return out.pooler_output
    return out
