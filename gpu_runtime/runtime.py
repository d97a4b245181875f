"""One model runtime per device: models kept resident under a memory budget, swapped from host RAM.

Nodes ask `async with runtime.use("flux") as pipe: image = await runtime.run(pipe, prompt)`. The runtime
gives the device to one `use` at a time; inside it, loads, moves and every `run` execute on the device's
single worker thread under `torch.inference_mode()`.

Residency: models stay on the device while they fit in `budget_bytes`; the least recently used is evicted
first. An evicted model keeps its weights in host RAM (pinned on CUDA), so bringing it back is one
host->device copy, not a load from disk, and eviction itself copies nothing. `empty_cache()` is called only
when memory must be returned (after an out-of-memory error, on close). On a CPU device the device *is* host
memory: residency is bookkeeping under the budget and a swap costs nothing (what CPU tests exercise).
Host copies can be bounded too (`host_budget_bytes`): past it the least recently used idle copy is dropped
and read from disk again when next needed.

Scheduling: when the device is released and several `use` calls wait, the oldest one whose model is already
resident goes first, so N queued jobs cost one swap per model rather than N. A waiter passed over by
`max_bypass` younger calls goes next regardless (aging bound; `max_bypass=0` is plain FIFO). A waiter whose
task is cancelled leaves the queue; a caller cancelled during a load or a call lets that work finish on
the device thread (it cannot be interrupted from outside) before the device is handed on, and a finished
load is kept. Long calls stop early through their own step callback.

Out of memory: a model larger than the whole budget is refused before it is read from disk. A
`torch.OutOfMemoryError` while loading, moving or inside `run` evicts every other model, returns the cached
memory and retries once; a second failure raises `AdgraphError("GPU_OUT_OF_MEMORY")`, which fails the node
with its checkpoints intact, so the job can be resumed.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch

from gpu_runtime.weights import Weights
from kernel.errors import AdgraphError

T = TypeVar("T")
GiB = 2**30
State = Literal["device", "host", "disk"]

# (id(runtime), model name) for each `use` the current task is inside.
_HELD: contextvars.ContextVar[tuple[tuple[int, str], ...]] = contextvars.ContextVar(
    "adgraph_gpu_held", default=()
)


@dataclass(frozen=True)
class ModelSpec:
    """A model the runtime can load: a name, a loader that reads its weights into host memory, its size."""

    name: str
    load: Callable[[], Any]
    """Reads the weights from disk into host (CPU) memory and returns an nn.Module, a diffusers pipeline,
    or an object holding modules in its attributes; the runtime finds the modules itself."""
    expected_bytes: int
    """Bytes of the weights once loaded (in `dtype`); used to make room before the first load."""
    dtype: torch.dtype | None = None
    """Floating-point weights are converted to this once, on the host, after the load."""
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a model spec needs a name")
        if self.expected_bytes < 0:
            raise ValueError(f"expected_bytes of {self.name!r} must be >= 0, got {self.expected_bytes}")


@dataclass(eq=False)
class _Model:
    spec: ModelSpec
    obj: Any = None
    weights: Weights | None = None
    state: State = "disk"
    nbytes: int = 0
    """Bytes on the device when resident: measured from the tensors once loaded, `expected_bytes` before."""
    loads: int = 0
    swaps_in: int = 0
    evictions: int = 0
    uses: int = 0
    drops: int = 0
    last_used: int = -1
    bytes_from_disk: int = 0
    bytes_moved: int = 0
    wait_seconds: float = 0.0
    load_seconds: float = 0.0
    swap_seconds: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "expected_bytes": self.spec.expected_bytes,
            "bytes": self.nbytes,
            "dtype": str(self.spec.dtype).removeprefix("torch.") if self.spec.dtype is not None else None,
            "description": self.spec.description,
            "state": self.state,
            "uses": self.uses,
            "loads": self.loads,
            "swaps_in": self.swaps_in,
            "evictions": self.evictions,
            "drops": self.drops,
            "bytes_from_disk": self.bytes_from_disk,
            "bytes_moved": self.bytes_moved,
            "wait_seconds": round(self.wait_seconds, 6),
            "load_seconds": round(self.load_seconds, 6),
            "swap_seconds": round(self.swap_seconds, 6),
        }


@dataclass(eq=False)
class _Waiter:
    name: str
    seq: int
    future: asyncio.Future[None]
    since: float
    bypassed: int = 0
    """Younger calls served while this one waited; at `max_bypass` it goes next."""


@dataclass
class _Totals:
    oom_retries: int = 0
    oom_failures: int = 0


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise AdgraphError(
            "INVALID_INPUT", f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'"
        ) from e
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise AdgraphError(
                "MODEL_UNAVAILABLE",
                f"device {device!r} was asked for, but torch sees no CUDA device "
                f"(torch {torch.__version__}); use device 'cpu' or install a CUDA build of torch",
                device=str(device),
            )
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
    elif resolved.type != "cpu":
        raise AdgraphError("INVALID_INPUT", f"unsupported device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")
    return resolved


def _device_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    import psutil

    return int(psutil.virtual_memory().total)


class ModelRuntime:
    """Models by name on one device, under a memory budget, served one `use` at a time."""

    def __init__(
        self,
        specs: Iterable[ModelSpec] = (),
        *,
        device: str | torch.device | None = None,
        budget_bytes: int | None = None,
        reserve_bytes: int = 2 * GiB,
        max_bypass: int = 4,
        copy_on_cpu: bool = False,
        host_budget_bytes: int | None = None,
        share: int = 1,
    ) -> None:
        """`budget_bytes` defaults to the device's memory minus `reserve_bytes` (activations, CUDA context),
        divided by `share`, the number of processes that each run a runtime on this device.

        `host_budget_bytes` bounds the host copies (pinned RAM on CUDA, which the OS cannot swap out): past
        it, the least recently used model that is not on the device is dropped and its next use reads it
        from disk again. None keeps every host copy.

        `copy_on_cpu` makes a CPU device behave like a separate memory: making a model resident copies its
        tensors and eviction drops the copy. Tests and the benchmark use it to exercise the swap path.
        """
        if max_bypass < 0:
            raise ValueError(f"max_bypass must be >= 0, got {max_bypass}")
        if share < 1:
            raise ValueError(f"share must be >= 1, got {share}")
        self.device = _resolve_device(device)
        if budget_bytes is None:
            budget_bytes = (_device_memory(self.device) - reserve_bytes) // share
        if budget_bytes <= 0:
            raise AdgraphError(
                "INVALID_INPUT",
                f"GPU memory budget must be positive, got {budget_bytes} bytes "
                f"(device memory minus a reserve of {reserve_bytes}); set the budget explicitly",
                budget_bytes=budget_bytes,
            )
        self.budget_bytes = int(budget_bytes)
        if host_budget_bytes is not None and host_budget_bytes <= 0:
            raise ValueError(f"host_budget_bytes must be positive, got {host_budget_bytes}")
        self.host_budget_bytes = host_budget_bytes
        self.max_bypass = max_bypass
        self._copies = self.device.type != "cpu" or copy_on_cpu
        self._pin = self.device.type == "cuda"
        self._models: dict[str, _Model] = {}
        self._resident: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._waiters: list[_Waiter] = []
        self._holder: _Waiter | None = None
        self._seq = itertools.count()
        self._totals = _Totals()
        self._lock = threading.Lock()  # stats() may be read from a metrics thread
        self._closed = False
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"adgraph-{self.device}", initializer=self._init_worker
        )
        self._clock = itertools.count()  # use order, for dropping host copies
        for spec in specs:
            self.register(spec)

    # -- registry ---------------------------------------------------------------------------------------

    def register(self, spec: ModelSpec) -> None:
        """Add a model; registering a name twice is an error (two specs would fight over one slot)."""
        if spec.name in self._models:
            raise ValueError(f"model {spec.name!r} is already registered")
        self._models[spec.name] = _Model(spec=spec, nbytes=spec.expected_bytes)

    @property
    def used_bytes(self) -> int:
        return sum(self._models[n].nbytes for n in self._resident)

    @property
    def host_bytes(self) -> int:
        """Bytes of weights held in host memory (every loaded model, resident or not)."""
        return sum(m.nbytes for m in self._models.values() if m.state != "disk")

    def _init_worker(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # tensors a model call creates land on this runtime's GPU

    # -- use --------------------------------------------------------------------------------------------

    def use(self, name: str) -> AbstractAsyncContextManager[Any]:
        """Wait for the device, make `name` resident, and yield the loaded object.

        The device is held for the whole `async with` body: nothing else runs on it and the model cannot
        be evicted meanwhile. A nested `use` of the same model in the same task yields it again.
        """
        if name not in self._models:
            registered = ", ".join(sorted(self._models)) or "none"
            raise AdgraphError(
                "MODEL_UNAVAILABLE",
                f"model {name!r} is not available on {self.device} (registered: {registered}); "
                "install its weights or pick a registered model",
                model=name,
                registered=sorted(self._models),
            )
        return self._use(name)

    @asynccontextmanager
    async def _use(self, name: str) -> AsyncIterator[Any]:
        held = _HELD.get()
        mine = [n for rid, n in held if rid == id(self)]
        if mine:
            if mine[-1] != name:
                raise RuntimeError(
                    f"use({name!r}) inside use({mine[-1]!r}) on the same device: one model at a time; "
                    "leave the first `async with` before asking for the next model"
                )
            yield self._models[name].obj
            return
        waiter = await self._acquire(name)
        token = _HELD.set((*held, (id(self), name)))
        try:
            model = self._models[name]
            await self._make_resident(model)
            with self._lock:
                model.uses += 1
                model.last_used = next(self._clock)
            yield model.obj
        finally:
            _HELD.reset(token)
            self._release(waiter)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the device's worker thread under `torch.inference_mode()`.

        Call it inside `use`. On `torch.OutOfMemoryError` the other models are evicted and `fn` runs once
        more, so `fn` must be safe to repeat (a forward pass is). If the awaiting task is cancelled, the
        call still finishes on the worker before the cancellation propagates, so the device is never
        handed on while a call is running; long calls check their own cancel flag (a step callback).
        """
        name = self._held_name()
        if name is None:
            raise RuntimeError("runtime.run() must be called inside `async with runtime.use(name)`")
        call = functools.partial(_inference, fn, args, kwargs)
        try:
            return await self._on_worker(call)
        except torch.OutOfMemoryError as first:
            evicted = await self._evict_all_but(name, empty_cache=True)
            with self._lock:
                self._totals.oom_retries += 1
            try:
                return await self._on_worker(call)
            except torch.OutOfMemoryError as second:
                with self._lock:
                    self._totals.oom_failures += 1
                raise self._oom_error(name, "running it", second, evicted) from first

    # -- scheduling -------------------------------------------------------------------------------------

    async def _acquire(self, name: str) -> _Waiter:
        if self._closed:
            raise AdgraphError(
                "MODEL_UNAVAILABLE", f"the model runtime on {self.device} is closed", model=name
            )
        loop = asyncio.get_running_loop()
        waiter = _Waiter(
            name=name, seq=next(self._seq), future=loop.create_future(), since=time.perf_counter()
        )
        self._waiters.append(waiter)
        self._dispatch()
        try:
            await waiter.future
        except BaseException:
            if self._holder is waiter:  # granted, then cancelled before it could start: pass it on
                self._release(waiter)
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        with self._lock:
            self._models[name].wait_seconds += time.perf_counter() - waiter.since
        return waiter

    def _release(self, waiter: _Waiter) -> None:
        if self._holder is waiter:
            self._holder = None
        self._dispatch()

    def _dispatch(self) -> None:
        if self._holder is not None:
            return
        self._waiters = [w for w in self._waiters if not w.future.done()]  # cancelled, not yet removed
        if not self._waiters:
            return
        chosen = self._pick()
        self._waiters.remove(chosen)
        for w in self._waiters:
            if w.seq < chosen.seq:
                w.bypassed += 1
        self._holder = chosen
        chosen.future.set_result(None)

    def _pick(self) -> _Waiter:
        overdue = [w for w in self._waiters if w.bypassed >= self.max_bypass]
        if overdue:
            return min(overdue, key=lambda w: w.seq)
        ready = [w for w in self._waiters if self._models[w.name].state == "device"]
        return min(ready or self._waiters, key=lambda w: w.seq)

    def _held_name(self) -> str | None:
        mine = [n for rid, n in _HELD.get() if rid == id(self)]
        return mine[-1] if mine else None

    # -- residency --------------------------------------------------------------------------------------

    async def _make_resident(self, model: _Model) -> None:
        """Bring the model onto the device. A cancelled caller still lets a started load or move finish
        and be recorded: the bytes read are kept for the next use, and the next holder never sees the
        device half-changed."""
        if model.state == "device":
            with self._lock:
                self._resident.move_to_end(model.spec.name)
            return
        await _finish_then_propagate(asyncio.ensure_future(self._place(model)))

    async def _place(self, model: _Model) -> None:
        name = model.spec.name
        try:
            await self._bring_in(model)
        except torch.OutOfMemoryError as first:
            evicted = await self._evict_all_but(name, empty_cache=True)
            with self._lock:
                self._totals.oom_retries += 1
            try:
                await self._bring_in(model)
            except torch.OutOfMemoryError as second:
                with self._lock:
                    self._totals.oom_failures += 1
                what = "loading it" if model.state == "disk" else "moving it to the device"
                raise self._oom_error(name, what, second, evicted) from first

    async def _bring_in(self, model: _Model) -> None:
        name = model.spec.name
        if model.state == "disk":
            # Room first, by the spec's size: on a CPU device the load itself is what takes the memory.
            await self._make_room(model, model.spec.expected_bytes)
            self._trim_host(keep=name, incoming=model.spec.expected_bytes)
            obj, weights, raw_bytes, seconds = await self._on_worker(
                functools.partial(_load, model.spec, self._pin)
            )
            with self._lock:
                model.obj, model.weights = obj, weights
                model.nbytes = weights.nbytes if weights.count else model.spec.expected_bytes
                model.state = "host"
                model.loads += 1
                model.bytes_from_disk += raw_bytes
                model.load_seconds += seconds
            first_placement = True
        else:
            first_placement = False
        await self._make_room(model, model.nbytes)
        assert model.weights is not None
        moved, seconds = await self._on_worker(functools.partial(self._to_device, model.weights))
        with self._lock:
            model.state = "device"
            model.bytes_moved += moved
            if first_placement:
                model.load_seconds += seconds
            else:
                model.swaps_in += 1
                model.swap_seconds += seconds
            self._resident[name] = None
            self._resident.move_to_end(name)
        self._trim_host(keep=name)

    async def _make_room(self, model: _Model, nbytes: int) -> None:
        """Evict least recently used models until `nbytes` fit; refuse a model larger than the budget."""
        name = model.spec.name
        if nbytes > self.budget_bytes:
            with self._lock:
                self._totals.oom_failures += 1
            raise AdgraphError(
                "GPU_OUT_OF_MEMORY",
                f"model {name!r} needs {_gib(nbytes)} but the GPU memory budget on {self.device} is "
                f"{_gib(self.budget_bytes)}; raise the budget, use a GPU with more memory, or load the model "
                "in a smaller dtype",
                model=name,
                needed_bytes=nbytes,
                budget_bytes=self.budget_bytes,
                device=str(self.device),
            )
        while self.used_bytes + nbytes > self.budget_bytes:
            victim = next((n for n in self._resident if n != name), None)
            if victim is None:
                break
            await self._evict(self._models[victim])

    async def _evict(self, model: _Model) -> None:
        seconds = 0.0
        if self._copies and model.weights is not None:
            seconds = await self._on_worker(functools.partial(_timed, model.weights.to_host))
        with self._lock:
            model.state = "host"
            model.evictions += 1
            model.swap_seconds += seconds
            self._resident.pop(model.spec.name, None)

    def _trim_host(self, keep: str, incoming: int = 0) -> None:
        """Drop host copies of models not on the device, least recently used first, to fit the host budget."""
        if self.host_budget_bytes is None:
            return
        while self.host_bytes + incoming > self.host_budget_bytes:
            idle = [m for n, m in self._models.items() if m.state == "host" and n != keep]
            if not idle:
                return  # what is left is on the device or being loaded: nothing to drop
            victim = min(idle, key=lambda m: m.last_used)
            with self._lock:
                victim.obj = victim.weights = None
                victim.state = "disk"
                victim.drops += 1

    async def _evict_all_but(self, name: str, *, empty_cache: bool) -> list[str]:
        victims = [n for n in self._resident if n != name]
        for victim in victims:
            await self._evict(self._models[victim])
        if empty_cache and self.device.type == "cuda":
            await self._on_worker(torch.cuda.empty_cache)
        return victims

    def _to_device(self, weights: Weights) -> tuple[int, float]:
        if not self._copies:
            return 0, 0.0
        start = time.perf_counter()
        try:
            moved = weights.to_device(self.device, copy=True)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        except BaseException:
            weights.to_host()  # drop what was copied; the host copies are intact
            raise
        return moved, time.perf_counter() - start

    def _oom_error(self, name: str, what: str, exc: BaseException, evicted: list[str]) -> AdgraphError:
        return AdgraphError(
            "GPU_OUT_OF_MEMORY",
            f"out of memory on {self.device} while {what} for model {name!r}, even after evicting "
            f"{', '.join(evicted) or 'nothing else'}; free the GPU of other processes, lower the resolution "
            "or batch size, or raise the reserve",
            model=name,
            device=str(self.device),
            evicted=evicted,
            error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )

    async def _on_worker(self, call: Callable[[], T]) -> T:
        """Run `call` on the worker; if cancelled, wait for it to finish, then propagate."""
        if self._closed:
            raise AdgraphError("MODEL_UNAVAILABLE", f"the model runtime on {self.device} is closed")
        return await _finish_then_propagate(asyncio.get_running_loop().run_in_executor(self._executor, call))

    # -- introspection and shutdown ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """JSON-able snapshot: budget, use, resident models (least recently used first), queue, counters."""
        with self._lock:
            resident = list(self._resident)
            return {
                "device": str(self.device),
                "budget_bytes": self.budget_bytes,
                "used_bytes": sum(self._models[n].nbytes for n in resident),
                "host_budget_bytes": self.host_budget_bytes,
                "host_bytes": sum(m.nbytes for m in self._models.values() if m.state != "disk"),
                "resident": resident,
                "busy": self._holder.name if self._holder is not None else None,
                "queue_depth": sum(1 for w in self._waiters if not w.future.done()),
                "queued": [w.name for w in self._waiters if not w.future.done()],
                "max_bypass": self.max_bypass,
                "oom_retries": self._totals.oom_retries,
                "oom_failures": self._totals.oom_failures,
                "models": {name: m.snapshot() for name, m in self._models.items()},
            }

    async def close(self) -> None:
        """Refuse new work, fail the waiters, finish the running call, drop the models and free the device."""
        if self._closed:
            return
        self._closed = True
        for w in self._waiters:
            if not w.future.done():
                w.future.set_exception(
                    AdgraphError(
                        "MODEL_UNAVAILABLE", f"the model runtime on {self.device} closed", model=w.name
                    )
                )
        self._waiters.clear()
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        with self._lock:
            for m in self._models.values():
                m.obj = m.weights = None
                m.state = "disk"
            self._resident.clear()
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):  # this runtime's GPU, not the calling thread's current one
                torch.cuda.empty_cache()


async def _finish_then_propagate(future: asyncio.Future[T]) -> T:
    """Await `future`; if the caller is cancelled meanwhile, let it finish first, then raise the cancel.

    Work on the device thread cannot be interrupted from outside, and the device must not be handed to the
    next caller while it runs.
    """
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:
                continue  # cancelled again: still wait, the cancellation is raised below
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what the caller sees
        raise


def _inference(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    with torch.inference_mode():
        return fn(*args, **kwargs)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _load(spec: ModelSpec, pin: bool) -> tuple[Any, Weights, int, float]:
    """Read the model from disk (on the worker thread); returns it, its weights, bytes read, seconds."""
    start = time.perf_counter()
    try:
        obj = spec.load()
    except OSError as e:  # missing or unreadable weights: the user can act on this
        raise AdgraphError(
            "MODEL_UNAVAILABLE",
            f"model {spec.name!r} could not be loaded: {e}; check that its weights are installed",
            model=spec.name,
        ) from e
    weights = Weights(obj)
    raw_bytes = weights.nbytes
    weights.prepare_host(spec.dtype, pin)
    return obj, weights, raw_bytes, time.perf_counter() - start


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"
