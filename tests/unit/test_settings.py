from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.processes import parse_cpu_list
from service.settings import Settings


def test_worker_cpus_is_a_cpu_list() -> None:
    assert parse_cpu_list(Settings(worker_cpus="0,2-3").worker_cpus) == {0, 2, 3}
    with pytest.raises(ValidationError):
        Settings(worker_cpus="all of them")


def test_checkpoints_follow_a_postgresql_database_and_stay_in_sqlite_otherwise(tmp_path) -> None:
    pg = "postgresql://postgres@127.0.0.1:5432/x"
    assert Settings(data_dir=tmp_path, database_url=pg).checkpoints == pg
    assert Settings(data_dir=tmp_path).checkpoints == f"sqlite:///{tmp_path / 'checkpoints.db'}"
    assert Settings(data_dir=tmp_path).database == f"sqlite:///{tmp_path / 'jobs.db'}"
