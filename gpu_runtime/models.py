"""Where each GPU model's weights are on this machine (which backend each node gets is the service's
choice: `service/wiring.py`).

Weights are only ever read from local directories: one per model (`ADGRAPH_FLUX_PATH`, ...) or a models
root laid out like a Hugging Face cache (`models--org--name/snapshots/<rev>/`). Nothing here downloads, and
nothing here imports torch unless a GPU backend could actually be used.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kernel.errors import AdgraphError


@dataclass(frozen=True)
class ModelInfo:
    """A model the GPU backends know how to load (data, not code)."""

    name: str
    repo_id: str
    """Its Hugging Face id: the folder name in a hub-cache layout."""
    setting: str
    """The Settings field that points at its directory."""
    expected_bytes: int
    """Size of the released weights as shipped (what the runtime must hold)."""
    marker: str
    """A file every copy of the model has at its root."""
    variants: tuple[str, ...] = ()
    """Other releases the same loader takes, looked for under ADGRAPH_MODELS_DIR after `repo_id`."""


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(
            "birefnet",
            "ZhengPeng7/BiRefNet",
            "birefnet_path",
            885_000_000,
            "config.json",
            ("ZhengPeng7/BiRefNet_HR", "ZhengPeng7/BiRefNet_lite", "briaai/RMBG-2.0"),
        ),
        # FLUX.1-dev in bf16: transformer 23.8 GB, T5-XXL 9.8 GB, CLIP-L 0.25 GB, VAE 0.34 GB
        ModelInfo(
            "flux",
            "black-forest-labs/FLUX.1-dev",
            "flux_path",
            34_190_000_000,
            "model_index.json",
            ("black-forest-labs/FLUX.1-schnell", "black-forest-labs/FLUX.1-Krea-dev"),
        ),
        ModelInfo(
            "qwen2vl",
            "Qwen/Qwen2-VL-7B-Instruct",
            "qwen2vl_path",
            16_580_000_000,
            "config.json",
            ("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-72B-Instruct"),
        ),
        ModelInfo(
            "clip",
            "openai/clip-vit-large-patch14",
            "clip_path",
            1_710_000_000,
            "config.json",
            ("openai/clip-vit-large-patch14-336", "openai/clip-vit-base-patch32"),
        ),
    )
}

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def env_name(setting: str) -> str:
    return f"ADGRAPH_{setting.upper()}"


@dataclass(frozen=True)
class Located:
    """Where a model was looked for and whether a usable copy is there."""

    info: ModelInfo
    path: Path | None
    """The directory to load from (None when nothing usable was found)."""
    source: str
    """How it was found or why not, in words."""

    @property
    def found(self) -> bool:
        return self.path is not None

    def weights_bytes(self) -> int:
        return weights_bytes(self.path) if self.path is not None else 0

    def missing_packages(self) -> list[str]:
        """Packages the model's own code (remote code, e.g. BiRefNet's birefnet.py) imports that are not
        installed; transformers would refuse to load it."""
        return missing_packages(self.path) if self.path is not None else []

    def require(self) -> Path:
        """The directory, or MODEL_UNAVAILABLE naming the setting to fix."""
        if self.path is None:
            raise AdgraphError(
                "MODEL_UNAVAILABLE",
                f"{self.info.name} weights are not available: {self.source}. "
                f"Set {env_name(self.info.setting)} to a local copy of {self.info.repo_id} "
                "(or ADGRAPH_MODELS_DIR to a Hugging Face cache "
                "that holds it); nothing is downloaded at run time",
                model=self.info.name,
                setting=env_name(self.info.setting),
            )
        return self.path


def locate(info: ModelInfo, path: Path | None, models_dir: Path | None) -> Located:
    """An explicit `path` wins; else `models_dir` in hub-cache layout, or a plain `models_dir/<name>`."""
    if path is not None:
        if not path.is_dir():
            return Located(info, None, f"{env_name(info.setting)}={path} is not a directory")
        if not (path / info.marker).is_file():
            return Located(info, None, f"{env_name(info.setting)}={path} has no {info.marker}")
        return Located(info, path, f"{env_name(info.setting)}")
    if models_dir is None:
        return Located(info, None, f"neither {env_name(info.setting)} nor ADGRAPH_MODELS_DIR is set")
    if not models_dir.is_dir():
        return Located(info, None, f"ADGRAPH_MODELS_DIR={models_dir} is not a directory")
    for repo_id in (info.repo_id, *info.variants):
        snapshot = _snapshot(models_dir / f"models--{repo_id.replace('/', '--')}", info.marker)
        if snapshot is not None:
            where = f"hub cache {repo_id}, revision {snapshot.name[:12]}"
            return Located(info, snapshot, f"ADGRAPH_MODELS_DIR ({where})")
    for plain in (
        *(models_dir / r.split("/")[-1] for r in (info.repo_id, *info.variants)),
        models_dir / info.name,
    ):
        if (plain / info.marker).is_file():
            return Located(info, plain, f"ADGRAPH_MODELS_DIR ({plain.name}/)")
    cache = f"models--{info.repo_id.replace('/', '--')}"
    return Located(
        info, None, f"no {cache} or {info.repo_id.split('/')[-1]}/ (or a variant) under {models_dir}"
    )


def _snapshot(cache: Path, marker: str) -> Path | None:
    """The snapshot `refs/main` names, else the newest complete one."""
    snapshots = cache / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = cache / "refs" / "main"
    if ref.is_file():
        named = snapshots / ref.read_text().strip()
        if (named / marker).is_file():
            return named
    complete = [s for s in snapshots.iterdir() if (s / marker).is_file()]
    return max(complete, key=lambda s: s.stat().st_mtime) if complete else None


def weight_files(path: Path) -> list[Path]:
    """The weight files a loader would read under `path` (hub-cache symlinks followed).

    A diffusers pipeline reads only the component folders its model_index.json names (FLUX.1-dev's repo also
    carries a 24 GB single-file checkpoint at its root), and where a folder has safetensors the .bin/.pt
    copies beside them are not read.
    """
    roots = [path]
    index = path / "model_index.json"
    if index.is_file():
        try:
            names = [k for k in json.loads(index.read_text()) if not k.startswith("_")]
        except ValueError:
            names = []
        roots = [path / n for n in names if (path / n).is_dir()]
    files: list[Path] = []
    for root in roots:
        for folder, _, names in os.walk(root, followlinks=True):
            weights = [n for n in names if n.endswith(WEIGHT_SUFFIXES)]
            if any(n.endswith(".safetensors") for n in weights):
                weights = [n for n in weights if n.endswith(".safetensors")]
            files += [Path(folder) / n for n in weights]
    return files


def weights_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in weight_files(path))


_IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.M)


def missing_packages(path: Path) -> list[str]:
    """Top-level modules imported by the .py files at the root of `path` that cannot be found."""
    local = {f.stem for f in path.glob("*.py")}
    wanted: set[str] = set()
    for f in path.glob("*.py"):
        wanted.update(_IMPORT.findall(f.read_text(errors="replace")))
    return sorted(m for m in wanted - local - {"__future__"} if importlib.util.find_spec(m) is None)


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def cuda_available() -> bool:
    if not torch_installed():
        return False
    import torch

    return bool(torch.cuda.is_available())
