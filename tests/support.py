"""Helpers shared by the unit and integration tests. Test modules import helpers from here (or from a
conftest's fixtures), never from another test module."""

from __future__ import annotations

import asyncio
import inspect
import io
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from PIL import Image

T = TypeVar("T")

# Real shop photos from the system adgraph replaces (MIT); see data/photos/README.md.
PHOTOS = Path(__file__).resolve().parent / "data" / "photos"
# The `adgraph` console script of this interpreter's environment, for the subprocess tests.
ADGRAPH = str(Path(sys.executable).with_name("adgraph"))


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def wait_until(
    cond: Callable[[], T], timeout: float = 30.0, *, interval: float = 0.02, what: str | None = None
) -> T:
    """Call `cond` until it returns something truthy, and return that; fail after `timeout` seconds.

    For waiting on something a test can observe (a row's status, a file, a process), never for letting time
    pass: the wait ends as soon as the condition holds, and the timeout only bounds a test that would hang.
    """
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or _name(cond)}")
        time.sleep(interval)
    return value


async def until(
    cond: Callable[[], T | Awaitable[T]],
    within: float = 30.0,
    *,
    interval: float = 0.005,
    what: str | None = None,
) -> T:
    """`wait_until` inside a coroutine (`within` is its timeout): the event loop runs between the looks, and
    `cond` may be async."""
    deadline = time.monotonic() + within
    while not (value := await _call(cond)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or _name(cond)}")
        await asyncio.sleep(interval)
    return value


async def _call(cond: Callable[[], T | Awaitable[T]]) -> T:
    value = cond()
    return await value if inspect.isawaitable(value) else value  # type: ignore[return-value]


def _name(cond: Callable[..., object]) -> str:
    code = getattr(cond, "__code__", None)
    where = f" ({Path(code.co_filename).name}:{code.co_firstlineno})" if code else ""
    return f"{getattr(cond, '__qualname__', repr(cond))}{where}"
