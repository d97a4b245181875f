"""Turning a user's upload into a stored, validated product photo."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from checkpoints.artifacts import FileArtifactStore
from kernel.errors import AdgraphError
from kernel.models import ArtifactRef

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def validate_image(data: bytes, *, max_pixels: int, name: str = "image") -> tuple[str, int, int]:
    """Check that `data` is a complete PNG/JPEG/WebP within `max_pixels`; return (mime, width, height).

    The size check runs on the header, before any pixel is decoded, so a decompression bomb costs nothing.
    """
    if not data:
        raise AdgraphError("INVALID_IMAGE", f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise AdgraphError("IMAGE_TOO_LARGE", f"{name} is a decompression bomb: {e}") from e
    except Image.DecompressionBombWarning as e:
        raise AdgraphError("IMAGE_TOO_LARGE", f"{name} has too many pixels: {e}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise AdgraphError("INVALID_IMAGE", f"{name} is not a PNG, JPEG or WebP image") from e
    with im:
        if im.format not in _MIME:
            raise AdgraphError("INVALID_IMAGE", f"{name} is {im.format}; upload a PNG, JPEG or WebP image")
        w, h = im.size
        if w * h > max_pixels:
            raise AdgraphError(
                "IMAGE_TOO_LARGE",
                f"{name} is {w}x{h} = {w * h} pixels; the limit is {max_pixels} (ADGRAPH_MAX_IMAGE_PIXELS)",
                width=w,
                height=h,
                max_pixels=max_pixels,
            )
        if min(w, h) < 16:
            raise AdgraphError("INVALID_IMAGE", f"{name} is {w}x{h}; it must be at least 16 px on each side")
        try:
            im.load()  # decode everything: a truncated file fails here, not three nodes later
        except (OSError, SyntaxError, ValueError) as e:
            raise AdgraphError("INVALID_IMAGE", f"{name} is truncated or corrupt: {e}") from e
        return _MIME[im.format], w, h


def store_photo(
    store: FileArtifactStore, data: bytes, *, max_pixels: int, name: str = "image"
) -> ArtifactRef:
    mime, w, h = validate_image(data, max_pixels=max_pixels, name=name)
    return store.put_bytes_sync(data, mime, w, h)
