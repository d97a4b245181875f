"""The GPU backends (BiRefNet, FLUX, Qwen2-VL) loaded by the real loaders through the model runtime, on
the CPU, with tiny random-weight models: an ad job runs end to end, reports each diffusion step, stops
mid-diffusion when cancelled and resumes from its checkpoint. The pictures are noise; the job is real."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from langgraph.runtime import RunControl
from PIL import Image

from checkpoints.history import thread_config
from checkpoints.saver import open_checkpointer
from graph.ad import build_ad_graph
from kernel.models import AdCopy, Box, Placement
from service.outputs import write_result
from service.running import new_job_id, run_job
from service.wiring import open_ad_context
from service.workflows import WORKFLOWS, state_types
from tests.support import ADGRAPH, png_bytes

pytestmark = pytest.mark.integration
on_session_loop = pytest.mark.asyncio(loop_scope="session")


class GpuEnv:
    def __init__(self, graph: Any, ctx: Any) -> None:
        self.graph, self.ctx = graph, ctx

    def input(self, photo: Image.Image, **kw: Any) -> dict[str, Any]:
        return {
            "product_image": self.ctx.artifacts.put_image_sync(photo),
            "copy": AdCopy(headline="갓 볶은 원두", subline="매일 아침 로스팅", cta="주문하기"),
            "background_prompt": "warm beige linen",
            "size": "1200x628",
            "seed": 7,
            "text_position": "auto",
            "font": None,
            **kw,
        }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gpu(tiny_models, tmp_path_factory) -> AsyncIterator[GpuEnv]:
    settings = tiny_models.settings(tmp_path_factory.mktemp("gpu-job"))
    async with (
        open_checkpointer(settings.checkpoints, state_types()) as saver,
        open_ad_context(settings, evaluations=True) as ctx,
    ):
        yield GpuEnv(build_ad_graph(saver), ctx)


@on_session_loop
async def test_an_ad_job_runs_end_to_end_on_the_three_gpu_backends(gpu, coffee, tmp_path):
    ctx = gpu.ctx
    assert (ctx.segmenter.name, ctx.backdrop.name, ctx.analyzer.name) == ("birefnet", "flux", "qwen2vl")
    events: list[tuple[str, dict[str, Any]]] = []
    job_id = new_job_id()
    result = await run_job(
        gpu.graph,
        ctx,
        job_id,
        gpu.input(coffee, restyle=0.5),  # img2img from a first composition
        listener=lambda kind, data: events.append((kind, data)),
    )
    assert result.status == "succeeded", result.error and result.error.to_dict()

    ad = await ctx.artifacts.open_image(result.values["ad"])
    assert ad.size == (1200, 628)
    cutout = await ctx.artifacts.open_image(result.values["cutout"])
    assert cutout.size == coffee.size and cutout.mode == "RGBA"

    # which backend made what is in state, and so in every checkpoint after its node
    backends = {"segment": "birefnet", "background": "flux", "analyze": "qwen2vl"}
    assert {n: result.values[f"{n}_backend"] for n in backends} == backends
    history = [s async for s in gpu.graph.aget_state_history(thread_config(job_id))]
    after_segment = [s for s in history if "cutout" in s.values]
    assert after_segment and all(s.values["segment_backend"] == "birefnet" for s in after_segment)

    # each diffusion step was reported, credited to the background node
    steps = [d for k, d in events if k == "progress" and d["node"] == "background"]
    assert [d["message"] for d in steps] == ["diffusion step 1/1"]  # 2 steps at strength 0.5
    # the tiny VLM answers noise: every part of the analysis is measured instead, and the job says so
    fallbacks = [e for e in result.events if e["type"] == "fallback"]
    assert {e["part"] for e in fallbacks} == {"regions", "dominant", "accent", "palette"}
    assert all(e["agent"] == "qwen2vl" and e["node"] == "analyze" for e in fallbacks)

    doc = write_result(WORKFLOWS["ad"], result, ctx.artifacts, tmp_path / "out")
    assert doc["backends"] == backends
    assert json.loads((tmp_path / "out" / "result.json").read_text())["backends"] == backends
    with Image.open(tmp_path / "out" / "ad.png") as saved:
        assert saved.size == (1200, 628)

    stats = ctx.models.runtime.stats()
    for name in ("birefnet", "flux", "qwen2vl"):
        assert stats["models"][name]["loads"] == 1 and stats["models"][name]["uses"] >= 1
    assert stats["models"]["clip"]["loads"] == 0  # registered, never needed by a job


@on_session_loop
async def test_a_cancel_stops_the_diffusion_midway_and_the_job_resumes(gpu, coffee):
    job_id, control = new_job_id(), RunControl()
    progress: list[str] = []

    def listener(kind: str, data: dict[str, Any]) -> None:
        if kind == "node_started" and data["node"] == "background":
            control.request_drain("cancel")  # the user cancels while the backdrop is being drawn
        if kind == "progress":
            progress.append(data["message"])

    result = await run_job(gpu.graph, gpu.ctx, job_id, gpu.input(coffee), listener=listener, control=control)
    assert (result.status, result.drained, result.error) == ("cancelled", "cancel", None)
    # it stopped after the first of two steps, inside the node, before writing anything
    assert progress == ["diffusion step 1/2"]
    assert "background" not in result.values and result.checkpoints[-1]["node"] == "segment"
    assert [(n["name"], n["status"]) for n in result.nodes] == [
        ("segment", "succeeded"),
        ("background", "interrupted"),
    ]

    resumed = await run_job(gpu.graph, gpu.ctx, job_id, None)
    assert resumed.status == "succeeded", resumed.error and resumed.error.to_dict()
    assert [n["name"] for n in resumed.nodes][:2] == ["background", "composite"]  # segment not redone
    assert resumed.values["background_backend"] == "flux"
    bg = await gpu.ctx.artifacts.open_image(resumed.values["background"])
    assert bg.size == (1200, 628)


def run_cli(args: list[str], env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ADGRAPH, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_cli_makes_an_ad_with_the_gpu_backends(cli_env, tiny_models, tmp_path, coffee):
    photo = tmp_path / "coffee.png"
    photo.write_bytes(png_bytes(coffee))
    env = {**cli_env, **{f"ADGRAPH_{k.upper()}": str(v) for k, v in TINY_ENV.items()}}
    env.update(
        ADGRAPH_BIREFNET_PATH=str(tiny_models.birefnet),
        ADGRAPH_FLUX_PATH=str(tiny_models.flux),
        ADGRAPH_QWEN2VL_PATH=str(tiny_models.qwen2vl),
    )
    out_dir = tmp_path / "out"
    args = ["ad", "--product", str(photo), "--headline", "갓 볶은 원두", "--prompt", "따뜻한 베이지 린넨"]
    out = run_cli([*args, "--size", "1080x1920", "--out", str(out_dir)], env)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads((out_dir / "result.json").read_text())
    assert doc["status"] == "succeeded"
    assert doc["backends"] == {"segment": "birefnet", "background": "flux", "analyze": "qwen2vl"}
    with Image.open(out_dir / "ad.png") as ad:
        assert ad.size == (1080, 1920)
    assert "adgraph: background: diffusion step 2/2" in out.stderr
    assert "adgraph: analyze: qwen2vl fell back for regions" in out.stderr


TINY_ENV = {
    "segment_backend": "birefnet",
    "background_backend": "flux",
    "analyze_backend": "qwen2vl",
    "gpu_device": "cpu",
    "flux_steps": 2,
    "flux_resolution": 64,
    "birefnet_resolution": 64,
    "qwen2vl_max_new_tokens": 8,
}


def test_cli_refuses_a_forced_backend_whose_weights_are_missing(cli_env, tmp_path, coffee):
    photo = tmp_path / "coffee.png"
    photo.write_bytes(png_bytes(coffee))
    env = {**cli_env, "ADGRAPH_BACKGROUND_BACKEND": "flux", "ADGRAPH_FLUX_PATH": str(tmp_path / "no-flux")}
    out = run_cli(
        ["ad", "--product", str(photo), "--headline", "h", "--prompt", "p", "--out", str(tmp_path / "o")], env
    )
    assert out.returncode == 2, out.stderr
    error = json.loads(out.stdout)["error"]
    assert error["code"] == "MODEL_UNAVAILABLE"
    assert "ADGRAPH_FLUX_PATH" in error["message"] and error["details"]["setting"] == "ADGRAPH_FLUX_PATH"
    assert "error: MODEL_UNAVAILABLE" in out.stderr
    assert not (tmp_path / "o" / "result.json").exists()


def test_models_list_reads_a_hub_cache_root(cli_env, tiny_models, tmp_path):
    # a models root laid out like a Hugging Face cache, holding the tiny FLUX as a snapshot
    cache = tmp_path / "hub" / "models--black-forest-labs--FLUX.1-dev"
    (cache / "snapshots").mkdir(parents=True)
    (cache / "snapshots" / "0123456789abcdef").symlink_to(tiny_models.flux, target_is_directory=True)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("0123456789abcdef")
    env = {**cli_env, "ADGRAPH_MODELS_DIR": str(tmp_path / "hub"), "ADGRAPH_CLIP_PATH": str(tiny_models.clip)}

    out = run_cli(["models", "list", "--json"], env)
    assert out.returncode == 0, out.stderr
    rows = {r["model"]: r for r in json.loads(out.stdout)}
    flux = rows["flux"]
    assert flux["found"] and flux["path"] == str(cache / "snapshots" / "0123456789abcdef")
    assert 0 < flux["weights_bytes"] < 5_000_000 and flux["expected_bytes"] > 30e9
    assert flux["auto"] == {"backend": "studio", "reason": "flux weights found but no CUDA device"}
    assert rows["clip"]["found"] and rows["clip"]["source"] == "ADGRAPH_CLIP_PATH"
    assert not rows["birefnet"]["found"] and rows["birefnet"]["auto"]["backend"] == "u2netp"
    assert "no models--ZhengPeng7--BiRefNet" in rows["birefnet"]["source"]

    # the human-readable form, in process (the same command; torch is already imported here)
    from typer.testing import CliRunner

    from service.cli import app

    text = CliRunner().invoke(app, ["models", "list"], env=env).output
    assert "flux (black-forest-labs/FLUX.1-dev): found" in text
    assert "background: configured auto; auto picks studio (flux weights found but no CUDA device)" in text
    assert "birefnet (ZhengPeng7/BiRefNet): missing" in text


def test_a_directory_that_is_not_the_model_is_model_unavailable_naming_the_setting(tiny_models, tmp_path):
    import shutil

    import torch

    from gpu_runtime.loaders import load
    from kernel.errors import AdgraphError

    broken = tmp_path / "flux"
    shutil.copytree(tiny_models.flux, broken)
    shutil.rmtree(broken / "transformer")  # an interrupted copy
    with pytest.raises(AdgraphError) as e:
        load("flux", broken, torch.float32)
    assert e.value.code == "MODEL_UNAVAILABLE" and e.value.details["setting"] == "ADGRAPH_FLUX_PATH"
    assert str(broken) in e.value.message and "black-forest-labs/FLUX.1-dev" in e.value.message
    with pytest.raises(AdgraphError) as e:
        load("qwen2vl", tiny_models.clip, torch.float32)  # another model's directory
    assert e.value.code == "MODEL_UNAVAILABLE" and "ADGRAPH_QWEN2VL_PATH" in e.value.message


@on_session_loop
async def test_the_real_loaders_objects_survive_eviction_and_swap_in(tiny_models, coffee):
    """A budget that holds one model at a time: each backend's model is evicted and copied back in (as to
    a GPU), and FLUX draws the same picture for the same seed after its round trip."""
    import torch

    from gpu_runtime.birefnet import BiRefNetSegmenter
    from gpu_runtime.flux import FluxBackdrop
    from gpu_runtime.loaders import model_spec
    from gpu_runtime.qwen2vl import QwenAnalyzer
    from gpu_runtime.runtime import ModelRuntime
    from nodes.backends.stats import StatsAnalyzer
    from nodes.backends.studio import StudioBackdrop

    specs = [model_spec(n, getattr(tiny_models, n), torch.float32) for n in ("birefnet", "flux", "qwen2vl")]
    biggest = max(s.expected_bytes for s in specs)
    runtime = ModelRuntime(specs, device="cpu", budget_bytes=biggest + 1024, copy_on_cpu=True)
    try:
        segmenter = BiRefNetSegmenter(runtime, resolution=64)
        flux = FluxBackdrop(runtime, steps=2, resolution=64)
        qwen = QwenAnalyzer(runtime, StatsAnalyzer(), max_new_tokens=4)
        ask = {"size": (96, 64), "prompt": "linen", "product_palette": [], "seed": 3}
        first = await flux.generate(**ask)
        matte = await segmenter.segment(coffee)
        scene = await StudioBackdrop().generate(**ask)
        placement = Placement(
            scale=0.1,
            x=30,
            y=10,
            product_box=Box(x=30, y=10, w=40, h=40),
            text_area=Box(x=0, y=0, w=96, h=10),
        )
        analysis = await qwen.analyze(scene=scene, placement=placement)
        again = await flux.generate(**ask)
        assert matte.size == coffee.size and analysis.product_box == placement.product_box
        assert again.tobytes() == first.tobytes()  # the weights came back intact
        stats = runtime.stats()
        assert stats["models"]["flux"]["loads"] == 1 and stats["models"]["flux"]["swaps_in"] == 1
        assert stats["models"]["flux"]["evictions"] >= 1 and stats["models"]["flux"]["bytes_moved"] > 0
        assert stats["used_bytes"] <= stats["budget_bytes"] and stats["resident"] == ["flux"]
    finally:
        await runtime.close()


def test_img2img_keeps_the_resident_pipeline_in_its_dtype(tiny_models):
    """A restyle borrows the text-to-image pipeline's modules; it must not recast them (bf16 -> fp32 would
    double FLUX's 24 GB on the GPU)."""
    import torch

    from gpu_runtime.flux import diffuse
    from gpu_runtime.loaders import load_flux

    pipe = load_flux(tiny_models.flux, torch.bfloat16)
    steps: list[int] = []
    call = {
        "prompt": "linen",
        "image": Image.new("RGB", (64, 64), (200, 180, 150)),
        "strength": 0.5,
        "num_inference_steps": 2,
        "height": 64,
        "width": 64,
        "guidance_scale": 3.5,
    }
    image = diffuse(pipe, call, 1, lambda i, n: steps.append(i))
    assert image.size == (64, 64) and steps
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder_2.dtype == torch.bfloat16


async def test_the_runtime_takes_its_share_of_the_device_and_the_host_budget_from_the_settings(
    tiny_models, tmp_path
):
    import psutil

    from service.wiring import make_models

    reserve = 2**30
    settings = tiny_models.settings(
        tmp_path,
        gpu_memory_budget=None,
        gpu_memory_reserve=reserve,
        gpu_processes=3,  # three workers on one device
        gpu_host_budget=300 * 2**20,
    )
    models = make_models(settings, evaluations=False)
    try:
        runtime = models.runtime
        assert runtime.budget_bytes == (psutil.virtual_memory().total - reserve) // 3
        assert runtime.host_budget_bytes == 300 * 2**20
        assert runtime.stats()["host_budget_bytes"] == 300 * 2**20
    finally:
        await models.close()
