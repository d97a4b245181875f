"""Results of deterministic steps kept by the hash of what they read, so the same work is done once.

A step (the cut-out of a photo) whose output depends only on its input artifacts and the backend that
made it is looked up by `step_key(...)` before it runs. Entries are tiny JSON files next to the artifacts
(`<root>/ab/cdef….json`, written atomically), so every process over one data dir shares them. An entry
whose artifact has left the store (its jobs deleted) is a miss: the step runs again and writes it anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from checkpoints.artifacts import FileArtifactStore
from kernel.models import ArtifactRef


def step_key(scope: str, step: str, *parts: Any) -> str:
    """The key of a step's result: who may reuse it (`scope`, a tenant), the step, and everything its
    output depends on (the backend and its version, the input artifacts' ids, parameters)."""
    blob = json.dumps([scope, step, *parts], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class FileStepCache:
    """`StepCache` (graph.context) over files beside a `FileArtifactStore`."""

    def __init__(self, root: str | os.PathLike[str], artifacts: FileArtifactStore) -> None:
        self.root, self.artifacts = Path(root), artifacts

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"malformed step key {key!r}")
        return self.root / key[:2] / f"{key[2:]}.json"

    def _get(self, key: str) -> ArtifactRef | None:
        try:
            ref = ArtifactRef.model_validate_json(self._path(key).read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return ref if self.artifacts.contains_sync(ref) else None  # its file may have been deleted since

    def _put(self, key: str, ref: ArtifactRef) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(ref.model_dump_json())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    async def get(self, key: str) -> ArtifactRef | None:
        return await asyncio.to_thread(self._get, key)

    async def put(self, key: str, ref: ArtifactRef) -> None:
        await asyncio.to_thread(self._put, key, ref)
