"""A finished run's files in a folder (the CLI's `--out`): the workflow's own files, then result.json last,
so its presence means the folder is complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from checkpoints.artifacts import FileArtifactStore
from service.running import RunResult
from service.workflows import Workflow


def write_result(wf: Workflow, result: RunResult, store: FileArtifactStore, out: Path) -> dict[str, Any]:
    """Write the job's files into `out` and `result.json` (returned as a dict)."""
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"job_id": result.job_id, "status": result.status}
    doc.update(wf.files(result, store, out))
    doc["nodes"] = result.nodes
    doc["checkpoints"] = result.checkpoints
    if result.parent:
        doc["parent"] = result.parent
    if result.events:
        doc["events"] = result.events
    if result.error is not None:
        doc["error"] = result.error.to_dict()
    atomic_write(out / "result.json", json.dumps(doc, indent=2, ensure_ascii=False).encode())
    return doc


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".tmp-")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def write_zip(dest: Path, images: list[tuple[Path, str]], texts: dict[str, str]) -> None:
    """A ZIP at `dest` of image files (path, name in the zip), stored as they are (PNGs are compressed
    already) and copied one at a time, never all in memory; then small text files, deflated."""
    import zipfile

    with zipfile.ZipFile(dest, "w") as zf:
        for path, name in images:
            zf.write(path, name, compress_type=zipfile.ZIP_STORED)
        for name, text in texts.items():
            zf.writestr(name, text, zipfile.ZIP_DEFLATED)
