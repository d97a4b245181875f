"""Loaders: read a model's weights from its local directory into host memory, and the specs the
runtime swaps them by. torch, diffusers and transformers are imported inside the functions, so importing
this module costs nothing on a machine that only uses the embedded backends."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_runtime.models import MODELS, env_name, weight_files
from kernel.errors import AdgraphError

if TYPE_CHECKING:
    import torch

    from gpu_runtime.runtime import ModelSpec


def torch_dtype(name: str, device: str) -> torch.dtype:
    """`auto`: bfloat16 on CUDA (what the released weights are), float32 on the CPU (bf16 is slow there)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def _offline() -> None:
    # Belt and braces: the paths are local, but a library must never reach for the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_birefnet(path: Path, dtype: torch.dtype) -> Any:
    """BiRefNet through its own modeling code, which ships in the model directory (trust_remote_code)."""
    _offline()
    from transformers import AutoModelForImageSegmentation

    auto_map = _config(path).get("auto_map") or {}
    if "AutoModelForImageSegmentation" not in auto_map:
        raise ValueError("its config.json has no auto_map entry for AutoModelForImageSegmentation")
    model, info = AutoModelForImageSegmentation.from_pretrained(
        str(path), trust_remote_code=True, local_files_only=True, dtype=dtype, output_loading_info=True
    )
    _complete(info)
    return model.eval()


def load_flux(path: Path, dtype: torch.dtype) -> Any:
    _offline()
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class ImageTextModel:
    """A transformers model with its tokenizer and PIL image processor (Qwen2-VL without
    `Qwen2VLProcessor`, which needs torchvision; CLIP). The runtime moves `model`; the rest is host-side."""

    model: Any
    tokenizer: Any
    image_processor: Any


def load_qwen2vl(path: Path, dtype: torch.dtype) -> ImageTextModel:
    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    return _image_text(path, dtype, "qwen2_vl", Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil)


def load_clip(path: Path, dtype: torch.dtype) -> ImageTextModel:
    from transformers import CLIPImageProcessorPil, CLIPModel

    return _image_text(path, dtype, "clip", CLIPModel, CLIPImageProcessorPil)


def _image_text(
    path: Path, dtype: torch.dtype, model_type: str, model_cls: Any, proc_cls: Any
) -> ImageTextModel:
    _offline()
    from transformers import AutoTokenizer

    _model_type(path, model_type)
    model, info = model_cls.from_pretrained(
        str(path), dtype=dtype, local_files_only=True, output_loading_info=True
    )
    _complete(info)
    return ImageTextModel(
        model=model.eval(),
        tokenizer=AutoTokenizer.from_pretrained(str(path), local_files_only=True),
        image_processor=proc_cls.from_pretrained(str(path), local_files_only=True),
    )


def _config(path: Path) -> dict[str, Any]:
    import json

    return json.loads((path / "config.json").read_text())


def _model_type(path: Path, expected: str) -> None:
    found = _config(path).get("model_type")
    if found != expected:
        raise ValueError(f"its config.json is for model_type {found!r}, not {expected!r}")


def _complete(info: dict[str, Any]) -> None:
    """transformers fills weights missing from the checkpoint with random ones; that is a broken copy."""
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise ValueError(f"{len(missing)} weights are missing from the checkpoint, e.g. {missing[:3]}")


LOADERS = {"birefnet": load_birefnet, "flux": load_flux, "qwen2vl": load_qwen2vl, "clip": load_clip}


def load(name: str, path: Path, dtype: torch.dtype) -> Any:
    """Load model `name` from `path`; a directory that is not a loadable copy of it is MODEL_UNAVAILABLE
    naming the setting (a missing component, a config from another model, remote code that fails)."""
    try:
        return LOADERS[name](path, dtype)
    except AdgraphError:
        raise
    except Exception as e:
        info = MODELS[name]
        raise AdgraphError(
            "MODEL_UNAVAILABLE",
            f"{name} could not be loaded from {path}: {type(e).__name__}: {str(e)[:300]}. Check that "
            f"{env_name(info.setting)} (or ADGRAPH_MODELS_DIR) holds a complete copy of {info.repo_id}",
            model=name,
            setting=env_name(info.setting),
            path=str(path),
        ) from e


def model_spec(name: str, path: Path, dtype: torch.dtype) -> ModelSpec:
    """The runtime's spec for model `name` at `path`; its size is what the weights take at `dtype`."""
    from gpu_runtime.runtime import ModelSpec

    return ModelSpec(
        name=name,
        load=partial(load, name, path, dtype),
        expected_bytes=bytes_at(path, dtype.itemsize),
        dtype=dtype,
        description=f"{MODELS[name].repo_id} from {path}",
    )


_FLOAT_WIDTH = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}


def bytes_at(path: Path, itemsize: int) -> int:
    """What the weights under `path` take once loaded with floats of `itemsize` bytes (safetensors headers
    are read for their dtypes and sizes; other files count as they are on disk)."""
    import json
    import struct

    total = 0
    for f in weight_files(path):
        if f.suffix != ".safetensors":
            total += f.stat().st_size
            continue
        try:  # a git-lfs pointer or a truncated download is not a safetensors file: say so, don't crash
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                if not 2 <= n <= f.stat().st_size - 8:
                    raise ValueError(f"header length {n} does not fit a {f.stat().st_size}-byte file")
                header = json.loads(fh.read(n))
        except (struct.error, ValueError) as e:  # json.JSONDecodeError is a ValueError
            raise AdgraphError(
                "MODEL_UNAVAILABLE",
                f"{f} is not a safetensors file ({e}); is it a git-lfs pointer or a partial download?",
                file=str(f),
            ) from e
        for key, t in header.items():
            if key == "__metadata__":
                continue
            size = t["data_offsets"][1] - t["data_offsets"][0]
            width = _FLOAT_WIDTH.get(t["dtype"])
            total += size // width * itemsize if width else size
    return total


def device_of(model: Any) -> torch.device:
    """The device a module (or a pipeline) sits on."""
    if hasattr(model, "device"):
        return model.device
    return next(model.parameters()).device


def dtype_of(model: Any) -> torch.dtype:
    if hasattr(model, "dtype"):
        return model.dtype
    return next(model.parameters()).dtype
