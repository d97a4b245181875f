"""Random-weight models saved as safetensors, and loaders that read them from disk and count the reads.

The GPU runtime's tests and `bench/model_swap.py` use these: a plain MLP whose size is set by width and
depth (64x2 is a few KiB for unit tests, 2048x12 is 200 MB for the benchmark), built on the meta device and
filled from the file the way real loaders do (`load_state_dict(assign=True)`). The loader reads the whole
file into memory, so a load is a full disk read and the weights are not backed by the page cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load, save_file
from torch import nn


class MLP(nn.Module):
    """`depth` square linear layers with tanh, then a per-feature `scale` buffer."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.register_buffer("scale", torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x * self.scale


def save_mlp(path: Path, *, width: int, depth: int, seed: int = 0) -> int:
    """Write a random MLP's weights to `path` (safetensors); returns the bytes of its tensors."""
    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for i in range(depth):
        tensors[f"layers.{i}.weight"] = torch.randn(width, width, generator=g) * width**-0.5
        tensors[f"layers.{i}.bias"] = torch.randn(width, generator=g) * 0.1
    tensors["scale"] = 1 + torch.rand(width, generator=g)
    save_file(tensors, str(path))
    return sum(t.numel() * t.element_size() for t in tensors.values())


def drop_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages, so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@dataclass
class DiskMLP:
    """A `ModelSpec.load`: reads the MLP at `path` from disk each call and counts the calls."""

    path: Path
    width: int
    depth: int
    cold: bool = False
    """Drop the file from the page cache before each read (benchmark: every load is a real disk read)."""
    calls: int = 0

    def __call__(self) -> MLP:
        self.calls += 1
        if self.cold:
            drop_page_cache(self.path)
        with torch.device("meta"):
            model = MLP(self.width, self.depth)
        # read the whole file now: load_file would map it and read lazily, on the first forward pass
        model.load_state_dict(load(self.path.read_bytes()), assign=True)
        return model.eval()


def write_mlp(directory: Path, name: str, *, width: int, depth: int, seed: int = 0) -> tuple[DiskMLP, int]:
    """Save a random MLP as `directory/name.safetensors`; returns its counting loader and its bytes."""
    path = directory / f"{name}.safetensors"
    nbytes = save_mlp(path, width=width, depth=depth, seed=seed)
    return DiskMLP(path, width, depth), nbytes
