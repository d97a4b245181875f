"""What leaves the server about itself: error bodies without file paths at any depth, and the one
server secret every process of a data dir agrees on."""

from __future__ import annotations

import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from kernel.errors import AdgraphError, public
from service.accounts import server_secret


def test_paths_are_taken_out_of_an_errors_details_at_any_depth() -> None:
    err = AdgraphError(
        "INVALID_INPUT",
        "cannot read /srv/adgraph/data/artifacts/ab/cd.png",
        file="/srv/adgraph/data/x.png",
        problems=[{"field": "product_image", "message": "no file at /srv/adgraph/data/ab/cd.png"}],
        nested={"where": ("data/artifacts/ab/cd.zip", 3)},
        count=2,
    )
    shown = public(err)
    assert "/srv" not in str(shown) and "data/artifacts" not in str(shown)
    assert shown["details"]["problems"][0]["field"] == "product_image"
    assert shown["details"]["nested"]["where"][1] == 3 and shown["details"]["count"] == 2
    assert "<path>" in shown["message"]


def test_processes_starting_at_once_agree_on_one_secret(tmp_path) -> None:
    settings = SimpleNamespace(secret=None, data_dir=tmp_path)
    start = threading.Barrier(8)

    def read(_: int) -> bytes:
        start.wait()
        return server_secret(settings)

    with ThreadPoolExecutor(8) as pool:
        seen = set(pool.map(read, range(8)))
    assert len(seen) == 1 and len(seen.pop()) == 64
    path = tmp_path / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no temporary file left


def test_an_empty_secret_file_is_refused_not_used(tmp_path) -> None:
    (tmp_path / "secret.key").write_text("")
    with pytest.raises(AdgraphError, match="secret.key"):
        server_secret(SimpleNamespace(secret=None, data_dir=tmp_path))
