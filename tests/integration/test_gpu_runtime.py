"""The GPU model-swap runtime on the CPU: residency under a budget, swaps without disk loads, model-first
scheduling with an aging bound, cancellation, out-of-memory. Models are small random MLPs written to
safetensors files and read back by counting loaders, so every disk load is a real file read."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip(
    "torch", reason="the model runtime needs the gpu extra: pip install -e '.[dev,gpu]'"
)

from torch import nn  # noqa: E402

from gpu_runtime.runtime import ModelRuntime, ModelSpec  # noqa: E402
from gpu_runtime.weights import Weights  # noqa: E402
from kernel.errors import AdgraphError  # noqa: E402
from tests.randweights import MLP, DiskMLP, write_mlp  # noqa: E402
from tests.support import until  # noqa: E402

pytestmark = pytest.mark.integration

WIDTH, DEPTH = 64, 2


@pytest.fixture
def disk(tmp_path: Path) -> dict[str, tuple[DiskMLP, int]]:
    """Three models on disk, as the ad graph uses them: segment, background, analyze."""
    return {
        name: write_mlp(tmp_path, name, width=WIDTH, depth=DEPTH, seed=i)
        for i, name in enumerate(["segment", "background", "analyze"])
    }


def specs(disk: dict[str, tuple[DiskMLP, int]]) -> list[ModelSpec]:
    return [ModelSpec(name, loader, nbytes) for name, (loader, nbytes) in disk.items()]


def model_bytes(disk: dict[str, tuple[DiskMLP, int]]) -> int:
    sizes = {nbytes for _, nbytes in disk.values()}
    assert len(sizes) == 1
    return sizes.pop()


X = torch.linspace(-1, 1, 4 * WIDTH).reshape(4, WIDTH)


def reference(loader: DiskMLP) -> torch.Tensor:
    """The model's output computed from a fresh read of its file, outside the runtime."""
    fresh = DiskMLP(loader.path, loader.width, loader.depth)()
    with torch.inference_mode():
        return fresh(X)


async def forward(rt: ModelRuntime, name: str) -> torch.Tensor:
    async with rt.use(name) as model:
        return await rt.run(model, X)


async def test_least_recently_used_is_evicted_first(disk):
    one = model_bytes(disk)
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=2 * one + one // 2)
    for name in ["segment", "background", "segment", "analyze"]:
        await forward(rt, name)
    s = rt.stats()
    # background was used before segment's second use, so it went first
    assert s["resident"] == ["segment", "analyze"]
    assert s["models"]["background"]["state"] == "host"
    assert s["models"]["background"]["evictions"] == 1
    assert s["models"]["segment"]["evictions"] == 0
    assert s["used_bytes"] == 2 * one <= s["budget_bytes"]

    await forward(rt, "background")  # now segment is the least recently used
    s = rt.stats()
    assert s["resident"] == ["analyze", "background"]
    assert s["models"]["segment"]["state"] == "host"
    assert [s["models"][n]["loads"] for n in disk] == [1, 1, 1]
    await rt.close()


@pytest.mark.parametrize("copy_on_cpu", [False, True])
async def test_evicted_model_comes_back_without_a_second_disk_load(disk, copy_on_cpu):
    one = model_bytes(disk)
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=one, copy_on_cpu=copy_on_cpu)
    expected = {name: reference(loader) for name, (loader, _) in disk.items()}

    first = await forward(rt, "segment")
    await forward(rt, "background")  # evicts segment
    assert rt.stats()["models"]["segment"]["state"] == "host"
    again = await forward(rt, "segment")

    loader = disk["segment"][0]
    assert loader.calls == 1  # read from disk once
    m = rt.stats()["models"]["segment"]
    assert (m["loads"], m["swaps_in"], m["evictions"]) == (1, 1, 1)
    assert m["bytes_from_disk"] == one
    torch.testing.assert_close(first, expected["segment"], rtol=0, atol=0)
    torch.testing.assert_close(again, expected["segment"], rtol=0, atol=0)
    if copy_on_cpu:
        # placed once after the load, brought back once: two copies of the whole model
        assert m["bytes_moved"] == 2 * one
    else:
        assert m["bytes_moved"] == 0  # host memory is the device: nothing to copy
    await rt.close()


async def test_eviction_points_the_model_back_at_its_host_copy(disk):
    one = model_bytes(disk)
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=one, copy_on_cpu=True)
    async with rt.use("segment") as seg:
        pass
    weights = rt._models["segment"].weights
    assert weights is not None and not weights.on_host()  # resident: its own copy
    async with rt.use("background"):
        pass
    assert weights.on_host()  # evicted: the model's tensors are the host copies again
    slot = next(t for t in weights._tensors if t.param is seg.layers[0].weight)
    assert seg.layers[0].weight.data_ptr() == slot.host.data_ptr()
    await rt.close()


async def test_queued_jobs_share_one_load_per_model(disk):
    """Six ad jobs at once, a budget of one model: one load per model, not one per job."""
    one = model_bytes(disk)
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=one)
    expected = {name: reference(loader) for name, (loader, _) in disk.items()}

    async def ad_job() -> list[torch.Tensor]:
        return [await forward(rt, name) for name in ["segment", "background", "analyze"]]

    results = await asyncio.gather(*(ad_job() for _ in range(6)))

    for outs in results:
        for name, out in zip(["segment", "background", "analyze"], outs, strict=True):
            torch.testing.assert_close(out, expected[name], rtol=0, atol=0)
    s = rt.stats()
    assert [loader.calls for loader, _ in disk.values()] == [1, 1, 1]
    assert {n: (m["loads"], m["uses"], m["evictions"]) for n, m in s["models"].items()} == {
        "segment": (1, 6, 1),
        "background": (1, 6, 1),
        "analyze": (1, 6, 0),
    }
    assert s["queue_depth"] == 0 and s["busy"] is None
    await rt.close()


async def test_host_budget_drops_the_least_recently_used_host_copy(disk):
    """Pinned host RAM is finite too: past the host budget the oldest idle copy goes back to disk."""
    one = model_bytes(disk)
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=one, host_budget_bytes=2 * one)
    for name in ["segment", "background", "analyze", "segment", "analyze"]:
        await forward(rt, name)
        assert rt.stats()["host_bytes"] <= 2 * one
    m = rt.stats()["models"]
    assert (m["segment"]["loads"], m["segment"]["drops"]) == (2, 1)  # dropped for analyze, read again
    assert (m["background"]["state"], m["background"]["drops"]) == ("disk", 1)
    assert (m["analyze"]["loads"], m["analyze"]["swaps_in"]) == (1, 1)  # its host copy was kept
    assert [loader.calls for loader, _ in disk.values()] == [2, 1, 1]
    await rt.close()


class Gate:
    """Holds the device with one model while calls queue up behind it, in a known order."""

    def __init__(self, rt: ModelRuntime) -> None:
        self.rt = rt
        self.order: list[str] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []

    async def _call(self, label: str, name: str, hold: bool) -> None:
        async with self.rt.use(name):
            self.order.append(label)
            if hold:
                self.entered.set()
                await self.release.wait()

    async def hold(self, name: str) -> None:
        self.tasks.append(asyncio.create_task(self._call("holder", name, hold=True)))
        await self.entered.wait()

    async def queue(self, label: str, name: str) -> asyncio.Task[Any]:
        """Queue a call, and return once it waits in the runtime's queue (so the next one queues behind)."""
        depth = self.rt.stats()["queue_depth"]
        task = asyncio.create_task(self._call(label, name, hold=False))
        self.tasks.append(task)
        await until(lambda: self.rt.stats()["queue_depth"] == depth + 1, 10, what=f"{label} in the queue")
        return task

    async def finish(self) -> list[str]:
        self.release.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        return self.order[1:]


@pytest.mark.parametrize(
    ("max_bypass", "order", "swaps"),
    [
        (4, ["seg2", "seg4", "bg1", "bg3"], {"segment": 0, "background": 0}),  # model first: one load of bg
        (0, ["bg1", "seg2", "bg3", "seg4"], {"segment": 2, "background": 1}),  # FIFO: back and forth
    ],
)
async def test_resident_model_is_served_first(disk, max_bypass, order, swaps):
    one = model_bytes(disk)
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=one, max_bypass=max_bypass)
    gate = Gate(rt)
    await gate.hold("segment")
    for label, name in [
        ("bg1", "background"),
        ("seg2", "segment"),
        ("bg3", "background"),
        ("seg4", "segment"),
    ]:
        await gate.queue(label, name)
    assert rt.stats()["queue_depth"] == 4
    assert await gate.finish() == order
    s = rt.stats()["models"]
    assert {n: s[n]["swaps_in"] for n in swaps} == swaps
    assert s["background"]["loads"] == 1
    await rt.close()


async def test_aging_bound_limits_how_many_calls_pass_a_waiter(disk):
    one = model_bytes(disk)
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=one, max_bypass=2)
    gate = Gate(rt)
    await gate.hold("segment")
    await gate.queue("bg1", "background")
    for i in range(2, 7):
        await gate.queue(f"seg{i}", "segment")
    order = await gate.finish()
    # two younger segment calls pass bg1, then it goes; the rest follow once segment is back
    assert order == ["seg2", "seg3", "bg1", "seg4", "seg5", "seg6"]
    assert order.index("bg1") <= rt.max_bypass
    await rt.close()


async def test_a_cancelled_waiter_leaves_the_queue(disk):
    one = model_bytes(disk)
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=one)
    gate = Gate(rt)
    await gate.hold("segment")
    doomed = await gate.queue("bg1", "background")
    await gate.queue("an2", "analyze")
    doomed.cancel()
    await until(lambda: rt.stats()["queued"] == ["analyze"], 10, what="the cancelled waiter to leave")
    assert await gate.finish() == ["an2"]
    assert doomed.cancelled()
    assert disk["background"][0].calls == 0  # never loaded for a job that was cancelled
    assert rt.stats()["queue_depth"] == 0 and rt.stats()["busy"] is None
    await forward(rt, "background")  # the device was handed on cleanly
    await rt.close()


async def test_cancelling_a_running_call_hands_the_device_on_only_after_it_finished(disk):
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=10 * model_bytes(disk))
    await forward(rt, "background")  # resident: the next call needs no worker time to start
    started, finished = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        threading.Event().wait(0.2)
        finished.set()

    async def long_call() -> None:
        async with rt.use("segment"):
            await rt.run(slow)

    task = asyncio.create_task(long_call())
    assert await asyncio.to_thread(started.wait, 10)
    seen: list[bool] = []

    async def next_call() -> None:
        async with rt.use("background"):
            seen.append(finished.is_set())

    follower = asyncio.create_task(next_call())
    await until(lambda: rt.stats()["queue_depth"] == 1, 10, what="the next call in the queue")
    task.cancel()
    await asyncio.gather(task, follower, return_exceptions=True)
    assert task.cancelled()
    assert seen == [True]
    await rt.close()


async def test_a_load_cut_short_by_cancellation_is_finished_and_kept(disk):
    loader, nbytes = disk["background"]
    started = threading.Event()

    def slow_load() -> MLP:
        started.set()
        threading.Event().wait(0.2)
        return loader()

    rt = ModelRuntime([ModelSpec("background", slow_load, nbytes)], device="cpu", budget_bytes=2 * nbytes)
    first = asyncio.create_task(forward(rt, "background"))
    assert await asyncio.to_thread(started.wait, 10)
    second = asyncio.create_task(forward(rt, "background"))
    await until(lambda: rt.stats()["queue_depth"] == 1, 10, what="the second call waiting for the load")
    first.cancel()
    out = await second
    assert first.cancelled()
    torch.testing.assert_close(out, reference(loader), rtol=0, atol=0)
    m = rt.stats()["models"]["background"]
    assert loader.calls == 1 and (m["loads"], m["state"], m["uses"]) == (1, "device", 1)
    await rt.close()


async def test_model_larger_than_the_budget_fails_without_touching_the_others(disk, tmp_path):
    one = model_bytes(disk)
    big_loader, big_bytes = write_mlp(tmp_path, "big", width=2 * WIDTH, depth=DEPTH)
    rt = ModelRuntime([*specs(disk), ModelSpec("big", big_loader, big_bytes)], device="cpu", budget_bytes=one)
    await forward(rt, "segment")

    with pytest.raises(AdgraphError) as err:
        await forward(rt, "big")
    e = err.value
    assert e.code == "GPU_OUT_OF_MEMORY" and e.http_status == 507
    assert "'big'" in e.message and e.details["needed_bytes"] == big_bytes
    assert e.details["budget_bytes"] == one
    assert big_loader.calls == 0  # refused before reading the file
    s = rt.stats()
    assert s["resident"] == ["segment"] and s["models"]["segment"]["evictions"] == 0
    assert s["oom_failures"] == 1 and s["busy"] is None
    await forward(rt, "background")  # the runtime goes on serving
    await rt.close()


async def test_model_larger_than_expected_is_refused_after_its_load(disk, tmp_path):
    one = model_bytes(disk)
    loader, _ = write_mlp(tmp_path, "liar", width=2 * WIDTH, depth=DEPTH)
    rt = ModelRuntime([ModelSpec("liar", loader, one // 2)], device="cpu", budget_bytes=one)
    with pytest.raises(AdgraphError) as err:
        await forward(rt, "liar")
    assert err.value.code == "GPU_OUT_OF_MEMORY"
    assert rt.stats()["models"]["liar"]["state"] == "host"  # kept, measured: its real size is reported
    assert rt.stats()["models"]["liar"]["bytes"] > one
    await rt.close()


async def test_out_of_memory_in_a_call_evicts_the_others_and_retries_once(disk):
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=10 * model_bytes(disk))
    await forward(rt, "segment")
    await forward(rt, "background")
    calls = 0

    def needs_the_whole_gpu(model: nn.Module) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return model(X)

    async with rt.use("analyze") as model:
        out = await rt.run(needs_the_whole_gpu, model)
    torch.testing.assert_close(out, reference(disk["analyze"][0]), rtol=0, atol=0)
    s = rt.stats()
    assert calls == 2
    assert s["resident"] == ["analyze"]
    assert s["models"]["segment"]["evictions"] == 1 and s["models"]["background"]["evictions"] == 1
    assert s["oom_retries"] == 1 and s["oom_failures"] == 0
    await rt.close()


async def test_out_of_memory_twice_fails_the_call_with_gpu_out_of_memory(disk):
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=10 * model_bytes(disk))
    await forward(rt, "segment")

    def never_fits() -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 90.00 GiB")

    with pytest.raises(AdgraphError) as err:
        async with rt.use("analyze"):
            await rt.run(never_fits)
    e = err.value
    assert e.code == "GPU_OUT_OF_MEMORY"
    assert e.details["model"] == "analyze" and e.details["evicted"] == ["segment"]
    assert "Tried to allocate 90.00 GiB" in e.details["error"]
    assert rt.stats()["oom_failures"] == 1 and rt.stats()["busy"] is None
    await forward(rt, "segment")  # the device was released
    await rt.close()


async def test_out_of_memory_while_loading_retries_once_then_fails(disk):
    loader, nbytes = disk["segment"]
    failures = {"left": 1}

    def flaky_load() -> MLP:
        if failures["left"]:
            failures["left"] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory while loading")
        return loader()

    rt = ModelRuntime(
        [ModelSpec("segment", flaky_load, nbytes), ModelSpec("analyze", disk["analyze"][0], nbytes)],
        device="cpu",
        budget_bytes=10 * nbytes,
    )
    await forward(rt, "analyze")
    await forward(rt, "segment")
    s = rt.stats()
    assert s["models"]["segment"]["loads"] == 1 and s["models"]["analyze"]["evictions"] == 1
    assert s["oom_retries"] == 1

    failures["left"] = 2
    rt2 = ModelRuntime([ModelSpec("segment", flaky_load, nbytes)], device="cpu", budget_bytes=10 * nbytes)
    with pytest.raises(AdgraphError) as err:
        await forward(rt2, "segment")
    assert err.value.code == "GPU_OUT_OF_MEMORY" and "loading it" in err.value.message
    assert rt2.stats()["models"]["segment"]["state"] == "disk"
    await rt.close()
    await rt2.close()


async def test_unknown_model_and_missing_weights_are_model_unavailable(disk, tmp_path):
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=model_bytes(disk))
    with pytest.raises(AdgraphError) as err:
        rt.use("flux")
    assert err.value.code == "MODEL_UNAVAILABLE" and err.value.http_status == 503
    assert "'flux'" in err.value.message and err.value.details["registered"] == sorted(disk)

    rt.register(ModelSpec("gone", DiskMLP(tmp_path / "missing.safetensors", WIDTH, DEPTH), 1))
    with pytest.raises(AdgraphError) as err:
        await forward(rt, "gone")
    assert err.value.code == "MODEL_UNAVAILABLE" and "missing.safetensors" in err.value.message
    await forward(rt, "segment")
    await rt.close()


async def test_cuda_asked_for_without_cuda_says_so():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(AdgraphError) as err:
        ModelRuntime(device="cuda")
    assert err.value.code == "MODEL_UNAVAILABLE" and "no CUDA device" in err.value.message
    with pytest.raises(AdgraphError) as err:
        ModelRuntime(device="tpu")
    assert err.value.code == "INVALID_INPUT"


async def test_run_outside_use_and_nested_use_are_refused(disk):
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=10 * model_bytes(disk))
    with pytest.raises(RuntimeError, match="inside"):
        await rt.run(lambda: None)
    async with rt.use("segment") as outer:
        async with rt.use("segment") as inner:  # same model, same task: re-entrant
            assert inner is outer
        with pytest.raises(RuntimeError, match="one model at a time"):
            async with rt.use("background"):
                pass
    await rt.close()


async def test_calls_run_on_one_worker_thread_in_inference_mode(disk):
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=10 * model_bytes(disk))

    def where() -> tuple[str, bool]:
        return threading.current_thread().name, torch.is_inference_mode_enabled()

    seen = set()
    for name in disk:
        async with rt.use(name):
            seen.add(await rt.run(where))
    assert len(seen) == 1
    thread, inference = seen.pop()
    assert thread.startswith("adgraph-cpu") and thread != threading.current_thread().name and inference
    await rt.close()


@dataclass
class Bundle:
    """What a transformers loader returns: a model and a processor that holds no tensors."""

    model: nn.Module
    processor: Any
    extras: dict[str, nn.Module]


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(32, 16)
        self.head = nn.Linear(16, 32, bias=False)
        self.head.weight = self.embed.weight  # tied, as in language models
        self.norm = nn.BatchNorm1d(16)


async def test_modules_are_found_in_bundles_tied_weights_stay_tied_and_dtype_applies():
    def load() -> Bundle:
        torch.manual_seed(0)
        shared = nn.Linear(16, 16)
        return Bundle(Tied().eval(), processor={"size": 224}, extras={"a": shared, "again": shared})

    b = load()
    w = Weights(b)
    assert {type(m) for m in w.modules} == {Tied, nn.Linear}
    expected = (32 * 16 + 16 * 2 + 16 * 2) * 4 + 8 + (16 * 16 + 16) * 4  # BatchNorm counts in int64
    assert w.nbytes == expected

    spec = ModelSpec("vl", load, expected // 2, dtype=torch.bfloat16)
    rt = ModelRuntime([spec], device="cpu", budget_bytes=expected, copy_on_cpu=True)
    async with rt.use("vl") as bundle:
        tied = bundle.model
        assert tied.head.weight is tied.embed.weight
        assert tied.embed.weight.dtype == torch.bfloat16
        assert tied.norm.num_batches_tracked.dtype == torch.int64  # only floating tensors convert
        ids = torch.tensor([[1, 2, 3]])
        logits = await rt.run(lambda: tied.head(tied.embed(ids)))
    assert logits.shape == (1, 3, 32)
    m = rt.stats()["models"]["vl"]
    assert m["bytes_from_disk"] == expected  # as loaded, fp32
    assert m["bytes"] == (expected - 8) // 2 + 8  # resident in bf16
    assert m["dtype"] == "bfloat16"
    await rt.close()


async def test_an_object_without_torch_modules_is_accounted_by_its_expected_bytes():
    """A backend that is not torch (an ONNX session, say) still takes its turn and its share of the budget."""
    loads = 0

    def load() -> dict[str, str]:
        nonlocal loads
        loads += 1
        return {"session": "onnx"}

    rt = ModelRuntime([ModelSpec("onnx", load, 600), ModelSpec("other", load, 600)], budget_bytes=1000)
    async with rt.use("onnx") as obj:
        assert obj == {"session": "onnx"}
    async with rt.use("other"):
        pass
    async with rt.use("onnx"):
        pass
    s = rt.stats()
    assert s["models"]["onnx"]["bytes"] == 600 and s["used_bytes"] == 600 and loads == 2
    assert (s["models"]["onnx"]["evictions"], s["models"]["onnx"]["swaps_in"]) == (1, 1)  # no reload
    assert s["models"]["other"]["evictions"] == 1
    await rt.close()


def test_packing_puts_every_tensor_in_one_buffer_with_values_and_ties_kept():
    """What pinning on CUDA does first: one flat buffer, page-locked in one call instead of per tensor."""
    torch.manual_seed(0)
    model = Tied().eval()
    model.norm.running_mean.uniform_()
    model.head.bias = nn.Parameter(torch.randn(32, dtype=torch.bfloat16))  # odd size, other dtype
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.tensor([[3, 1, 4]])
    with torch.inference_mode():
        expected = model.head.weight @ model.embed(ids)[0].T

    w = Weights(model)
    flat = w.pack()
    storages = {t.host.untyped_storage().data_ptr() for t in w._tensors}
    assert storages == {flat.untyped_storage().data_ptr()}
    assert flat.numel() >= w.nbytes and flat.numel() - w.nbytes < 64 * w.count  # aligned, not rounded up
    assert model.head.weight is model.embed.weight
    for k, v in model.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k
    assert w.on_host()
    with torch.inference_mode():
        torch.testing.assert_close(model.head.weight @ model.embed(ids)[0].T, expected, rtol=0, atol=0)


async def test_stats_are_json_and_count_waiting(disk):
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=model_bytes(disk))
    gate = Gate(rt)
    await gate.hold("segment")
    await gate.queue("bg", "background")
    queued_at = time.perf_counter()
    during = rt.stats()
    assert during["busy"] == "segment" and during["queue_depth"] == 1 and during["queued"] == ["background"]
    released_at = time.perf_counter()
    await gate.finish()
    s = json.loads(json.dumps(rt.stats()))
    assert s["device"] == "cpu" and s["budget_bytes"] == model_bytes(disk)
    # it waited at least from when it was seen queued until the holder let go
    assert s["models"]["background"]["wait_seconds"] >= round(released_at - queued_at, 6)
    assert s["models"]["analyze"]["state"] == "disk" and s["models"]["analyze"]["loads"] == 0
    assert s["models"]["background"]["load_seconds"] > 0
    await rt.close()


async def test_close_fails_waiters_and_refuses_new_work(disk):
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=model_bytes(disk))
    gate = Gate(rt)
    await gate.hold("segment")
    waiting = await gate.queue("bg", "background")
    await rt.close()
    with pytest.raises(AdgraphError) as err:
        await waiting
    assert err.value.code == "MODEL_UNAVAILABLE"
    gate.release.set()
    await asyncio.gather(*gate.tasks, return_exceptions=True)
    with pytest.raises(AdgraphError) as err:
        await forward(rt, "segment")
    assert err.value.code == "MODEL_UNAVAILABLE" and "closed" in err.value.message
    assert rt.stats()["resident"] == []

    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=model_bytes(disk))
    async with rt.use("segment") as model:
        await rt.close()  # shutting down while a node holds the device
        with pytest.raises(AdgraphError) as err:
            await rt.run(model, X)  # no new work starts on a closed runtime
    assert err.value.code == "MODEL_UNAVAILABLE"


async def test_prometheus_collector_reports_the_runtime_at_scrape_time(disk):
    from prometheus_client import CollectorRegistry, generate_latest

    from gpu_runtime.metrics import register_runtime_metrics

    one = model_bytes(disk)
    rt = ModelRuntime(specs(disk), device="cpu", budget_bytes=one)
    registry = CollectorRegistry()
    register_runtime_metrics(rt, registry)
    for name in ["segment", "background", "segment"]:
        await forward(rt, name)
    text = generate_latest(registry).decode()
    assert f'adgraph_gpu_budget_bytes{{device="cpu"}} {float(one)}' in text
    assert 'adgraph_gpu_model_resident{device="cpu",model="segment"} 1.0' in text
    assert 'adgraph_gpu_model_resident{device="cpu",model="background"} 0.0' in text
    assert 'adgraph_gpu_model_loads_total{device="cpu",model="segment"} 1.0' in text
    assert 'adgraph_gpu_model_swaps_in_total{device="cpu",model="segment"} 1.0' in text
    assert 'adgraph_gpu_model_evictions_total{device="cpu",model="background"} 1.0' in text
    assert f'adgraph_gpu_model_disk_read_bytes_total{{device="cpu",model="segment"}} {float(one)}' in text
    assert 'adgraph_gpu_queue_depth{device="cpu"} 0.0' in text
    await rt.close()


def test_bad_configuration_is_refused_with_the_value_named(disk):
    import psutil

    rt = ModelRuntime(device="cpu", reserve_bytes=2**30)
    assert rt.budget_bytes == psutil.virtual_memory().total - 2**30  # default: the memory minus a reserve
    with pytest.raises(AdgraphError) as err:
        ModelRuntime(device="cpu", budget_bytes=0)
    assert err.value.code == "INVALID_INPUT" and "0 bytes" in err.value.message
    with pytest.raises(ValueError, match="max_bypass"):
        ModelRuntime(device="cpu", budget_bytes=1, max_bypass=-1)
    with pytest.raises(ValueError, match="already registered"):
        ModelRuntime([*specs(disk), *specs(disk)], device="cpu", budget_bytes=1)
    with pytest.raises(ValueError, match="expected_bytes"):
        ModelSpec("x", lambda: None, -1)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
async def test_cuda_swaps_weights_from_pinned_host_copies(disk):
    one = model_bytes(disk)
    rt = ModelRuntime(specs(disk), device="cuda", budget_bytes=one)
    expected = reference(disk["segment"][0])
    async with rt.use("segment") as seg:
        assert seg.layers[0].weight.is_cuda and seg.scale.is_cuda
        out = await rt.run(lambda: seg(X.cuda()).cpu())
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    async with rt.use("background"):
        pass
    # evicted: the parameters are the pinned host copies again, nothing was copied back
    assert not seg.layers[0].weight.is_cuda and seg.layers[0].weight.is_pinned()
    reserved = torch.cuda.memory_reserved()
    async with rt.use("segment") as again:
        assert again is seg and seg.layers[0].weight.is_cuda
        out = await rt.run(lambda: seg(X.cuda()).cpu())
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert torch.cuda.memory_reserved() >= reserved  # no empty_cache() on a plain swap
    m = rt.stats()["models"]["segment"]
    assert (m["loads"], m["swaps_in"], m["bytes_moved"]) == (1, 1, 2 * one)
    assert disk["segment"][0].calls == 1
    await rt.close()


@needs_cuda
async def test_cuda_out_of_memory_evicts_then_fails_with_gpu_out_of_memory(disk):
    rt = ModelRuntime(specs(disk), device="cuda", budget_bytes=10 * model_bytes(disk))
    async with rt.use("segment"):
        pass
    too_much = 2 * torch.cuda.get_device_properties(0).total_memory

    with pytest.raises(AdgraphError) as err:
        async with rt.use("analyze"):
            await rt.run(lambda: torch.empty(too_much, dtype=torch.uint8, device="cuda"))
    assert err.value.code == "GPU_OUT_OF_MEMORY" and err.value.details["evicted"] == ["segment"]
    assert rt.stats()["oom_retries"] == 1 and rt.stats()["resident"] == ["analyze"]
    await rt.close()
