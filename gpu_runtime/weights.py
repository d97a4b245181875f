"""The tensors of a loaded model, each with a host copy, swapped between host and device by storage.

A loader returns an `nn.Module`, a diffusers pipeline, or any object holding modules in its attributes (a
dataclass bundling a model and its processor, a dict). `Weights` finds every parameter and buffer once,
keeps one host tensor per distinct tensor (tied weights stay tied), and moves the model by pointing each
parameter's `.data` (and each buffer slot) at a device copy or back at the host copy. Eviction therefore
copies nothing: the host copy is still there. Tensors that a module keeps in plain attributes (not
registered as parameter or buffer) are not seen and stay where the loader put them.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

_MAX_DEPTH = 3  # pipeline -> components dict -> module is as deep as real loaders nest
_ALIGN = 64


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _register(flat: torch.Tensor) -> None:
    """Page-lock `flat` in place for fast, asynchronous host-to-device copies (no copy, no rounding).

    The same call torch's distributed checkpoint stager makes (torch/cuda/_pin_memory_utils.py).
    """
    err = torch.cuda.cudart().cudaHostRegister(flat.data_ptr(), flat.numel(), 1)  # cudaHostRegisterPortable
    if int(err) != 0:
        raise RuntimeError(f"cudaHostRegister failed with error {int(err)}")


def _unregister(flat: torch.Tensor) -> None:
    torch.cuda.cudart().cudaHostUnregister(flat.data_ptr())


def find_modules(obj: Any) -> list[nn.Module]:
    """The top-level `nn.Module`s reachable from `obj` through attributes, dicts, lists and tuples."""
    found: dict[int, nn.Module] = {}
    seen: set[int] = set()

    def walk(value: Any, depth: int) -> None:
        if id(value) in seen or depth > _MAX_DEPTH:
            return
        seen.add(id(value))
        if isinstance(value, nn.Module):
            found.setdefault(id(value), value)
            return
        if isinstance(value, torch.Tensor | str | bytes | int | float | bool | type) or value is None:
            return
        if isinstance(value, dict):
            children: Iterator[Any] = iter(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            children = iter(value)
        elif dataclasses.is_dataclass(value):
            children = (getattr(value, f.name) for f in dataclasses.fields(value))
        elif hasattr(value, "__dict__"):
            children = iter(vars(value).values())
        else:
            return
        for child in children:
            walk(child, depth + 1)

    walk(obj, 0)
    return list(found.values())


@dataclass(eq=False)
class _Tensor:
    """One distinct tensor: its host copy and every place that holds it."""

    host: torch.Tensor
    param: nn.Parameter | None = None
    buffer_slots: list[tuple[nn.Module, str]] = field(default_factory=list)

    def point_at(self, tensor: torch.Tensor) -> None:
        if self.param is not None:
            self.param.data = tensor  # the Parameter object stays, so every module that shares it follows
        for module, name in self.buffer_slots:
            module._buffers[name] = tensor

    @property
    def nbytes(self) -> int:
        return self.host.numel() * self.host.element_size()


class Weights:
    """Every parameter and buffer reachable from a loaded object, with host copies."""

    def __init__(self, obj: Any) -> None:
        self.modules = find_modules(obj)
        self._tensors: list[_Tensor] = []
        by_id: dict[int, _Tensor] = {}
        visited: set[int] = set()
        for top in self.modules:
            for module in top.modules():
                if id(module) in visited:
                    continue
                visited.add(id(module))
                for param in module._parameters.values():
                    if param is not None and id(param) not in by_id:
                        by_id[id(param)] = _Tensor(host=param.data, param=param)
                for name, buf in module._buffers.items():
                    if buf is None:
                        continue
                    entry = by_id.get(id(buf))
                    if entry is None:
                        entry = by_id[id(buf)] = _Tensor(host=buf)
                    entry.buffer_slots.append((module, name))
        self._tensors = list(by_id.values())
        self.pinned = False
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of the distinct tensors (numel * element size), as they are now on the host."""
        return sum(t.nbytes for t in self._tensors)

    @property
    def count(self) -> int:
        return len(self._tensors)

    def prepare_host(self, dtype: torch.dtype | None, pin: bool) -> None:
        """Make the host copies final: on the CPU, in `dtype` (floating tensors only), pinned if asked.

        Done once after the disk load, so every later swap is a plain copy at full (pinned) bandwidth.
        Pinning packs the tensors into one buffer and page-locks it with `cudaHostRegister`: PyTorch's
        pinned allocator rounds every allocation up to a power of two, which would cost up to twice the
        model's size in locked RAM if each tensor were pinned on its own.
        """
        for t in self._tensors:
            host = t.host
            if host.device.type != "cpu":
                host = host.to("cpu")
            if dtype is not None and host.is_floating_point() and host.dtype != dtype:
                host = host.to(dtype)
            if host is not t.host:
                t.host = host
                t.point_at(host)
        if pin and self._tensors:
            flat = self.pack()
            try:
                _register(flat)
            except (RuntimeError, AssertionError):  # registration refused: pin tensor by tensor instead
                self._pin_each()
            else:
                self._finalizer = weakref.finalize(self, _unregister, flat)
                self._finalizer.atexit = False  # at exit the CUDA context may already be gone
            self.pinned = True

    def pack(self) -> torch.Tensor:
        """Copy every host tensor into one flat byte buffer (64-byte aligned slices) and point the model
        at views of it; returns the buffer. Each original is freed as soon as nothing else holds it."""
        sizes = [_aligned(t.nbytes) for t in self._tensors]
        flat = torch.empty(sum(sizes), dtype=torch.uint8)
        offset = 0
        for t, size in zip(self._tensors, sizes, strict=True):
            if t.nbytes:
                view = flat[offset : offset + t.nbytes].view(t.host.dtype).view(t.host.shape)
                view.copy_(t.host)
                t.host = view
                t.point_at(view)
            offset += size
        return flat

    def _pin_each(self) -> None:
        for t in self._tensors:
            if not t.host.is_pinned():
                t.host = t.host.pin_memory()
                t.point_at(t.host)

    def to_device(self, device: torch.device, *, copy: bool = False) -> int:
        """Copy every host tensor to `device` and point the model at the copies; returns bytes copied.

        With `copy`, a CPU "device" gets real copies too (how CPU tests exercise the swap path).
        """
        moved = 0
        for t in self._tensors:
            if device.type == "cpu":
                if not copy:
                    continue
                dev = t.host.clone()
            else:
                dev = t.host.to(device, non_blocking=self.pinned)
            t.point_at(dev)
            moved += t.nbytes
        return moved

    def to_host(self) -> None:
        """Point the model back at the host copies; the device copies are dropped, nothing is copied."""
        for t in self._tensors:
            t.point_at(t.host)

    def on_host(self) -> bool:
        """True when every parameter and buffer is its host copy (nothing left on the device)."""
        for t in self._tensors:
            current = (
                t.param.data if t.param is not None else t.buffer_slots[0][0]._buffers[t.buffer_slots[0][1]]
            )
            if current.data_ptr() != t.host.data_ptr():
                return False
        return True
