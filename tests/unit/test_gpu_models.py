"""Finding local model weights and choosing each node's backend (no torch work, no models run)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_runtime.models import MODELS, locate
from kernel.errors import AdgraphError
from service import wiring
from service.settings import Settings
from service.wiring import choose
from service.wiring import models_report as report

FLUX = MODELS["flux"]


INDEX = json.dumps({"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"]})


def fake_flux(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(INDEX)
    (root / "transformer").mkdir()
    (root / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 1000)
    return root


def hub_cache(models_dir: Path, repo_id: str, revs: list[str], main: str | None) -> dict[str, Path]:
    """The Hugging Face cache layout: blobs, snapshots/<rev>/ of symlinks, refs/main."""
    cache = models_dir / f"models--{repo_id.replace('/', '--')}"
    (cache / "blobs").mkdir(parents=True)
    blob = cache / "blobs" / "abc"
    blob.write_bytes(b"\0" * 2048)
    out = {}
    for rev in revs:
        snap = cache / "snapshots" / rev
        (snap / "transformer").mkdir(parents=True)
        (snap / "model_index.json").write_text(INDEX)
        (snap / "transformer" / "w.safetensors").symlink_to(blob)
        out[rev] = snap
    if main:
        (cache / "refs").mkdir()
        (cache / "refs" / "main").write_text(main + "\n")
    return out


def test_an_explicit_path_wins_and_a_bad_one_says_what_is_wrong(tmp_path):
    good = fake_flux(tmp_path / "flux")
    found = locate(FLUX, good, tmp_path / "elsewhere")
    assert found.path == good and found.weights_bytes() == 1000
    missing = locate(FLUX, tmp_path / "nope", None)
    assert not missing.found and "ADGRAPH_FLUX_PATH" in missing.source and "not a directory" in missing.source
    (tmp_path / "empty").mkdir()
    assert "no model_index.json" in locate(FLUX, tmp_path / "empty", None).source


def test_a_models_root_in_hub_cache_layout_follows_refs_main(tmp_path):
    snaps = hub_cache(tmp_path, FLUX.repo_id, ["1111aaaa", "2222bbbb"], main="1111aaaa")
    found = locate(FLUX, None, tmp_path)
    assert found.path == snaps["1111aaaa"]
    assert found.weights_bytes() == 2048  # symlinks to blobs are followed
    assert "hub cache" in found.source
    # a plain folder named like the repo also works
    plain = fake_flux(tmp_path / "other" / "FLUX.1-dev")
    assert locate(FLUX, None, tmp_path / "other").path == plain


def test_model_unavailable_names_the_setting(tmp_path):
    located = locate(FLUX, tmp_path / "missing", None)
    with pytest.raises(AdgraphError) as e:
        choose("background", "flux", located, cuda=lambda: True)
    assert e.value.code == "MODEL_UNAVAILABLE" and e.value.http_status == 503
    assert "ADGRAPH_FLUX_PATH" in e.value.message and e.value.details["setting"] == "ADGRAPH_FLUX_PATH"


def test_auto_takes_the_gpu_backend_only_with_weights_and_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(wiring, "torch_installed", lambda: True)  # the choice given the gpu extra
    found = locate(FLUX, fake_flux(tmp_path / "flux"), None)
    absent = locate(FLUX, None, None)
    assert choose("background", "auto", found, cuda=lambda: True).backend == "flux"
    no_cuda = choose("background", "auto", found, cuda=lambda: False)
    assert (no_cuda.backend, no_cuda.reason) == ("studio", "flux weights found but no CUDA device")
    probed = []
    no_weights = choose("background", "auto", absent, cuda=lambda: probed.append(1) or True)
    assert no_weights.backend == "studio" and "not found" in no_weights.reason
    assert probed == []  # CUDA (torch) is not even looked at without weights
    # an explicit embedded name is taken as asked, an unknown one refused
    assert choose("background", "studio", found, cuda=lambda: True).backend == "studio"
    with pytest.raises(AdgraphError) as e:
        choose("background", "dalle", found)
    assert e.value.code == "INVALID_INPUT" and "ADGRAPH_BACKGROUND_BACKEND" in e.value.message


def test_report_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(wiring, "torch_installed", lambda: True)  # the report given the gpu extra
    settings = Settings(data_dir=tmp_path, flux_path=fake_flux(tmp_path / "flux"), background_backend="flux")
    rows = {r["model"]: r for r in report(settings, cuda=lambda: False)}
    assert set(rows) == {"birefnet", "flux", "qwen2vl", "clip"}
    flux = rows["flux"]
    assert flux["found"] and flux["path"] == str(tmp_path / "flux") and flux["weights_bytes"] == 1000
    assert flux["expected_bytes"] > 30e9 and flux["configured_backend"] == "flux"
    assert flux["auto"] == {"backend": "studio", "reason": "flux weights found but no CUDA device"}
    assert rows["birefnet"]["auto"]["backend"] == "u2netp" and not rows["birefnet"]["found"]
    assert rows["clip"]["node"] is None and "auto" not in rows["clip"]


def test_the_embedded_defaults_never_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from service.settings import Settings\n"
        "from service.wiring import make_ad_context, make_models\n"
        "ctx = make_ad_context(Settings(), None, make_models(Settings()))\n"
        "assert (ctx.segmenter.name, ctx.backdrop.name, ctx.analyzer.name) == ('u2netp', 'studio', 'stats')\n"
        "assert ctx.models.runtime is None\n"
        "print(sys.modules.get('torch') is not None)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADGRAPH_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "ADGRAPH_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def safetensors_file(path: Path, dtype: str, nbytes: int) -> None:
    """A valid safetensors file holding one tensor of `nbytes` bytes."""
    width = {"BF16": 2, "F32": 4}[dtype]
    header = json.dumps(
        {"w": {"dtype": dtype, "shape": [nbytes // width], "data_offsets": [0, nbytes]}}
    ).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * nbytes)


def test_only_the_weights_a_loader_reads_are_counted(tmp_path):
    flux = fake_flux(tmp_path / "flux")
    (flux / "flux1-dev.safetensors").write_bytes(
        b"\0" * 5000
    )  # the single-file checkpoint beside the folders
    (flux / "vae").mkdir()
    (flux / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 300)  # not in the index
    assert locate(FLUX, flux, None).weights_bytes() == 1000
    qwen = tmp_path / "qwen"
    safetensors_file(qwen / "model.safetensors", "BF16", 4096)
    (qwen / "pytorch_model.bin").write_bytes(b"\0" * 9999)  # the same weights again, never read
    (qwen / "config.json").write_text("{}")
    assert (
        locate(MODELS["qwen2vl"], qwen, None).weights_bytes()
        == qwen.joinpath("model.safetensors").stat().st_size
    )


def test_the_runtime_is_told_what_the_weights_take_at_the_load_dtype(tmp_path):
    torch = pytest.importorskip("torch")
    from gpu_runtime.loaders import model_spec

    half = tmp_path / "half"
    safetensors_file(half / "model.safetensors", "BF16", 4096)
    assert model_spec("qwen2vl", half, torch.bfloat16).expected_bytes == 4096
    assert model_spec("qwen2vl", half, torch.float32).expected_bytes == 8192  # bf16 weights widened
    full = tmp_path / "full"
    safetensors_file(full / "model.safetensors", "F32", 4096)
    spec = model_spec("qwen2vl", full, torch.bfloat16)
    assert spec.expected_bytes == 2048 and spec.dtype == torch.bfloat16


def test_remote_code_whose_imports_are_missing_is_not_picked(tmp_path, monkeypatch):
    # the remote code imports torch and transformers too: only the imports beyond the gpu extra are missing
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gpu_runtime import models

    monkeypatch.setattr(models, "torch_installed", lambda: True)
    birefnet = tmp_path / "birefnet"
    birefnet.mkdir()
    (birefnet / "config.json").write_text("{}")
    (birefnet / "BiRefNet_config.py").write_text("from transformers import PretrainedConfig\n")
    (birefnet / "birefnet.py").write_text(
        "import torch\nfrom kornia_not_here.filters import laplacian\n"
        "from .BiRefNet_config import BiRefNetConfig\nfrom BiRefNet_config import X\n"
        "    import timm_not_here\nfrom __future__ import annotations\n"
    )
    located = locate(MODELS["birefnet"], birefnet, None)
    assert located.missing_packages() == ["kornia_not_here", "timm_not_here"]
    auto = choose("segment", "auto", located, cuda=lambda: True)
    assert auto.backend == "u2netp" and "kornia_not_here, timm_not_here (not installed)" in auto.reason
    with pytest.raises(AdgraphError) as e:
        choose("segment", "birefnet", located, cuda=lambda: True)
    assert (
        e.value.code == "MODEL_UNAVAILABLE" and "pip install kornia_not_here timm_not_here" in e.value.message
    )


def test_a_variant_release_is_found_in_the_models_root_after_the_main_one(tmp_path):
    schnell = hub_cache(tmp_path, "black-forest-labs/FLUX.1-schnell", ["5555"], main="5555")
    found = locate(FLUX, None, tmp_path)
    assert found.path == schnell["5555"] and "FLUX.1-schnell" in found.source
    dev = hub_cache(tmp_path, FLUX.repo_id, ["7777"], main="7777")
    assert locate(FLUX, None, tmp_path).path == dev["7777"]  # the release the defaults are tuned for wins
    plain = tmp_path / "plain"
    (plain / "Qwen2-VL-2B-Instruct").mkdir(parents=True)
    (plain / "Qwen2-VL-2B-Instruct" / "config.json").write_text("{}")
    assert locate(MODELS["qwen2vl"], None, plain).path == plain / "Qwen2-VL-2B-Instruct"


@pytest.mark.parametrize(
    "content",
    [
        b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n",  # a clone without LFS
        (40).to_bytes(8, "little") + b'{"w": {"dtype": "F32", "shape"',  # a truncated download
        b"\x01\x02",  # not even a header length
    ],
)
def test_a_weights_file_that_is_not_safetensors_is_model_unavailable_naming_it(tmp_path, content):
    pytest.importorskip("torch")
    from gpu_runtime.loaders import bytes_at

    (tmp_path / "model.safetensors").write_bytes(content)
    with pytest.raises(AdgraphError) as e:
        bytes_at(tmp_path, 2)
    assert e.value.code == "MODEL_UNAVAILABLE" and "model.safetensors" in e.value.message


@pytest.mark.parametrize(
    ("guidance_embeds", "settings", "expected"),
    [
        (True, {}, (28, 3.5)),  # FLUX.1-dev
        (False, {}, (4, 0.0)),  # FLUX.1-schnell: distilled to a few steps, no guidance
        (None, {}, (28, 3.5)),  # no transformer config: taken as dev
        (False, {"flux_steps": 8, "flux_guidance": 1.5}, (8, 1.5)),  # the settings win
        (True, {"flux_guidance": 0.0}, (28, 0.0)),
    ],
)
def test_flux_draws_with_the_steps_and_guidance_its_checkpoint_was_made_for(
    tmp_path, guidance_embeds, settings, expected
):
    for module in ("torch", "diffusers", "transformers"):
        pytest.importorskip(module)  # the flux backend is made, not run
    from service.wiring import GpuModels, make_ad_context

    root = fake_flux(tmp_path / "flux")
    if guidance_embeds is not None:
        config = {"_class_name": "FluxTransformer2DModel", "guidance_embeds": guidance_embeds}
        (root / "transformer" / "config.json").write_text(json.dumps(config))
    located = locate(FLUX, root, None)
    models = GpuModels({"background": choose("background", "flux", located)}, {"flux": located})
    backdrop = make_ad_context(Settings(**settings), None, models).backdrop
    assert backdrop.name == "flux"
    assert (backdrop.steps, backdrop.guidance) == expected
