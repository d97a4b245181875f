"""Turning a user's upload into a stored, validated product photo.

What is stored is what every reader can open: PNG, JPEG and WebP as uploaded (the same bytes, the same
id); HEIC/HEIF (through pillow-heif) and AVIF (Pillow's own plugin), what phones take, are decoded here
once, turned upright by their EXIF orientation and stored as JPEG (quality 95, no chroma subsampling,
their colour profile kept), or PNG where there is transparency. Converting once beats teaching every
reader the format: the nodes, the artifact store and the browser showing a homepage's photos (Chromium
draws no HEIC) all read PNG and JPEG.

Checking costs little memory whatever the pixel count: the size comes from the header; a PNG is checked
by inflating its image data a megabyte at a time and throwing it away (never holding the decoded image),
a JPEG by decoding it at 1/8 scale, a WebP by its RIFF structure (and decoded whole only up to
`WEBP_DECODE_PIXELS`: Pillow's WebP decoder takes ~15 bytes a pixel). HEIC and AVIF are decoded whole to
be converted; all decodes run `MAX_DECODES` at once.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from checkpoints.artifacts import FileArtifactStore, upright_size
from kernel.errors import AdgraphError
from kernel.models import ArtifactRef

T = TypeVar("T")
register_heif_opener()  # HEIC/HEIF; AVIF is Pillow's own (built into its wheels since 11.3)

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
"""Stored as uploaded."""
_CONVERTED = {"HEIF": "image/heif", "AVIF": "image/avif"}
"""Decoded at upload and stored as JPEG (or PNG)."""
IMAGE_MIMES: tuple[str, ...] = tuple(_MIME.values())
"""What a stored image artifact is (what a node can open)."""
KINDS = "a PNG, JPEG, WebP, HEIC or AVIF image"
MIN_SIDE = 16
MAX_ASPECT = 8
"""The long side may be at most 8x the short one. The tightest product slot is a 1200x628 ad's (at most
42 % of its width by 80 % of its height, ~504x502 px): an 8:1 product there is still ~63 px thin, while a
10000x16 strip would be under a pixel."""
MAX_DECODES = 2
"""Uploads decoded at once (the check of a JPEG at 1/8 scale, a small WebP, a HEIC or AVIF to convert: a
12 MP phone photo takes ~170 MB while it is converted), always on the same threads: memory a decode frees
is reused by the next instead of staying with whichever request thread decoded last (glibc keeps one
heap per thread; eight 12 MP AVIFs at once peaked at 1.5 GB on eight threads, 0.5 GB on these two)."""
WEBP_DECODE_PIXELS = 4_000_000
"""A WebP up to this many pixels is decoded to check it (~60 MB); a larger one only has its structure
checked (a 6000x6000 WebP took ~540 MB to decode), and a corrupt bitstream shows when a job opens it."""
_decoder = ThreadPoolExecutor(MAX_DECODES, thread_name_prefix="adgraph-decode")


def _decoding(work: Callable[[], T]) -> T:
    """`work()` on a decode thread (waiting for one to be free)."""
    return _decoder.submit(work).result()


def check_proportions(name: str, width: int, height: int) -> None:
    """INVALID_IMAGE for an image too small or too thin to make an ad of."""
    if min(width, height) < MIN_SIDE:
        raise AdgraphError(
            "INVALID_IMAGE", f"{name} is {width}x{height}; it must be at least {MIN_SIDE} px on each side"
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        ratio = max(width, height) / min(width, height)
        raise AdgraphError(
            "INVALID_IMAGE",
            f"{name} is {width}x{height}: an extreme aspect ratio ({ratio:.0f}:1); "
            f"the long side may be at most {MAX_ASPECT}x the short one, or the product is a sliver in the ad",
            width=width,
            height=height,
            max_aspect=MAX_ASPECT,
        )


def require_image(ref: ArtifactRef, field: str) -> ArtifactRef:
    """INVALID_IMAGE unless the artifact is a stored image (not a site's zip, a page, a font)."""
    if ref.mime not in IMAGE_MIMES:
        raise AdgraphError(
            "INVALID_IMAGE", f"{field}: artifact {ref.id} is {ref.mime}, not an image", field=field
        )
    return ref


def validate_image(data: bytes, *, max_pixels: int, name: str = "image") -> tuple[str, int, int]:
    """Check that `data` is a complete image of a kind we take, within `max_pixels` and not too thin;
    return (its MIME type, width, height), the size as shown (after its EXIF orientation).

    The size check runs on the header, before any pixel is decoded, so a decompression bomb costs nothing.
    """
    with _open(data, max_pixels=max_pixels, name=name) as im:
        w, h = upright_size(im)  # before a JPEG's check decodes it at 1/8 scale
        if im.format in _CONVERTED:
            _decoding(lambda: _load(im, name))
        else:
            _check_complete(im, data, name)
        return {**_MIME, **_CONVERTED}[im.format], w, h


def store_photo(
    store: FileArtifactStore, data: bytes, *, max_pixels: int, name: str = "image"
) -> ArtifactRef:
    """Check and store an upload (HEIC and AVIF converted, see the module's doc); its ref has the size as
    shown."""
    with _open(data, max_pixels=max_pixels, name=name) as im:
        if im.format in _MIME:
            w, h = upright_size(im)
            _check_complete(im, data, name)
            return store.put_bytes_sync(data, _MIME[im.format], w, h)

        def convert() -> tuple[bytes, str, int, int]:
            photo = ImageOps.exif_transpose(_load(im, name))
            return *_encode(photo, im.info.get("icc_profile")), photo.width, photo.height

        stored, mime, w, h = _decoding(convert)
    return store.put_bytes_sync(stored, mime, w, h)


def _open(data: bytes, *, max_pixels: int, name: str) -> Image.Image:
    """The opened image (header only), its kind, pixel count and proportions checked."""
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
        raise AdgraphError("INVALID_IMAGE", f"{name} is not {KINDS}") from e
    try:
        if im.format not in _MIME and im.format not in _CONVERTED:
            raise AdgraphError("INVALID_IMAGE", f"{name} is {im.format}; upload {KINDS}")
        w, h = im.size
        if w * h > max_pixels:
            raise AdgraphError(
                "IMAGE_TOO_LARGE",
                f"{name} is {w}x{h} = {w * h} pixels; the limit is {max_pixels} (ADGRAPH_MAX_IMAGE_PIXELS)",
                width=w,
                height=h,
                max_pixels=max_pixels,
            )
        check_proportions(name, w, h)
    except BaseException:
        im.close()
        raise
    return im


def _load(im: Image.Image, name: str) -> Image.Image:
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise AdgraphError("INVALID_IMAGE", f"{name} is truncated or corrupt: {e}") from e
    return im


def _check_complete(im: Image.Image, data: bytes, name: str) -> None:
    """A truncated or corrupt file fails here, not three nodes later; without holding the decoded image."""
    problem = {"PNG": png_problem, "WEBP": webp_problem}.get(im.format, lambda _: None)(data)
    if problem:
        raise AdgraphError("INVALID_IMAGE", f"{name} is truncated or corrupt: {problem}")
    if im.format == "PNG" or (im.format == "WEBP" and im.width * im.height > WEBP_DECODE_PIXELS):
        return
    if im.format == "JPEG":  # decoded at 1/8 scale: every byte of the stream read, 1/64 the pixels
        im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
    _decoding(lambda: _load(im, name))


def _encode(image: Image.Image, icc_profile: bytes | None) -> tuple[bytes, str]:
    buf = io.BytesIO()
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    if image.mode in ("RGBA", "LA", "PA") and image.getchannel("A").getextrema()[0] < 255:
        image.save(buf, format="PNG", **extra)
        return buf.getvalue(), "image/png"
    image.convert("RGB").save(buf, format="JPEG", quality=95, subsampling=0, **extra)
    return buf.getvalue(), "image/jpeg"


# -- PNG: checked without decoding -----------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PIECE = 2**20


def png_problem(data: bytes) -> str | None:
    """What is wrong with a PNG, or None: each chunk whole and matching its CRC up to IEND, and the image
    data inflating to as many bytes as its header's rows need. The inflated bytes are thrown away a
    megabyte at a time, so memory stays flat whatever the pixel count."""
    if not data.startswith(_PNG_SIGNATURE):
        return "no PNG signature"
    view, pos = memoryview(data), len(_PNG_SIGNATURE)
    inflate, inflated, expected = zlib.decompressobj(), 0, None
    while True:
        if pos + 12 > len(data):
            return "it ends before its IEND chunk"
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            return f"its {kind!r} chunk is cut off"
        body = view[pos + 8 : end - 4]
        if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack_from(">I", data, end - 4)[0]:
            return f"its {kind!r} chunk fails its CRC"
        if kind == b"IHDR" and length >= 13:
            expected = _raw_size(bytes(body[:13]))
        elif kind == b"IDAT" and expected is not None and inflated < expected:
            try:
                tail = body
                while tail:
                    inflated += len(inflate.decompress(tail, _PIECE))
                    tail = inflate.unconsumed_tail
            except zlib.error as e:
                return f"its image data does not inflate ({e})"
        elif kind == b"IEND":
            break
        pos = end
    if expected is None:
        return "no IHDR chunk before its image data"
    with_pending = inflated + len(inflate.flush()) if inflated < expected else inflated
    if with_pending < expected:
        return f"its image data holds {with_pending} of the {expected} bytes its rows need"
    return None


def webp_problem(data: bytes) -> str | None:
    """What is wrong with a WebP's RIFF structure, or None: the file as long as its header says, and every
    chunk whole, one of them image data."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return "no RIFF WEBP header"
    end = struct.unpack_from("<I", data, 4)[0] + 8
    if end > len(data):
        return f"it holds {len(data)} of the {end} bytes its header announces"
    pos, image = 12, False
    while pos + 8 <= end:
        kind, length = struct.unpack_from("<4sI", data, pos)
        if pos + 8 + length > end:
            return f"its {kind!r} chunk is cut off"
        image = image or kind in (b"VP8 ", b"VP8L", b"ANMF")
        pos += 8 + length + (length & 1)
    return None if image else "no image data in it"


def _raw_size(ihdr: bytes) -> int:
    """Bytes of inflated image data (each row's filter byte and samples) a PNG header announces."""
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    bits = depth * _CHANNELS.get(colour, 4)

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w > 0 and h > 0 else 0

    if not interlace:
        return rows(width, height)
    return sum(rows((width - x + dx - 1) // dx, (height - y + dy - 1) // dy) for x, y, dx, dy in _ADAM7)
