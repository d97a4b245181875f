"""The `adgraph` command as a user runs it: real files, real processes, a real kill."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from PIL import Image

from graph.state import AD_NODES
from tests.support import ADGRAPH, PHOTOS, until

pytestmark = pytest.mark.integration

BANANA = PHOTOS / "banana.png"
AD_ARGS = ["--headline", "달콤한 바나나", "--subline", "오늘 아침 도착", "--prompt", "yellow pastel"]


def adgraph(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ADGRAPH, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_ad_writes_the_files_and_result_and_lists_its_checkpoints(tmp_path: Path, cli_env) -> None:
    out = tmp_path / "out"
    run = adgraph("ad", "--product", str(BANANA), *AD_ARGS, "--cta", "주문", "--out", str(out), env=cli_env)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result == json.loads((out / "result.json").read_text())
    assert result["status"] == "succeeded"
    assert [n["name"] for n in result["nodes"]] == list(AD_NODES)
    assert all(n["seconds"] >= 0 for n in result["nodes"])
    with Image.open(BANANA) as photo, Image.open(out / "cutout.png") as cut:
        assert cut.mode == "RGBA" and cut.size == photo.size
    for name in ("scene.png", "ad.png"):
        with Image.open(out / name) as im:
            assert im.size == (1080, 1080)
    assert set(result["artifacts"]) == {"cutout", "scene", "ad"}
    listed = adgraph("jobs", "checkpoints", result["job_id"], env=cli_env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [c["id"] for c in result["checkpoints"]]
    assert [r["node"] for r in rows][-1] == "render" and all(r["created_at"] for r in rows)

    branch = adgraph(
        "jobs",
        "branch",
        result["job_id"],
        "--from-node",
        "composite",
        "--headline",
        "반값 세일",
        "--out",
        str(tmp_path / "b"),
        env=cli_env,
    )
    assert branch.returncode == 0, branch.stderr
    child = json.loads(branch.stdout)
    assert [n["name"] for n in child["nodes"]] == ["analyze", "plan", "design", "code", "render"]
    assert child["parent"]["job_id"] == result["job_id"]
    assert (tmp_path / "b" / "scene.png").read_bytes() == (out / "scene.png").read_bytes()
    assert (tmp_path / "b" / "ad.png").read_bytes() != (out / "ad.png").read_bytes()


def test_a_killed_job_resumes_from_its_last_checkpoint(tmp_path: Path, cli_env) -> None:
    out = tmp_path / "out"
    job_id, killed_after = None, None
    with subprocess.Popen(
        [ADGRAPH, "ad", "--product", str(BANANA), *AD_ARGS, "--out", str(out)],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("adgraph: job "):
                job_id = line.split()[2]
            if "checkpoint" in line and line.rstrip().endswith("after composite"):
                proc.send_signal(signal.SIGKILL)  # between nodes, the way a crash or OOM kill would
                killed_after = "composite"
                break
        proc.wait(timeout=30)
    assert job_id and killed_after and proc.returncode == -signal.SIGKILL
    assert not (out / "ad.png").exists() and not (out / "result.json").exists()

    resumed = adgraph("jobs", "resume", job_id, "--out", str(out), env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    ran = [n["name"] for n in result["nodes"]]
    assert result["status"] == "succeeded" and result["job_id"] == job_id
    assert not {"segment", "background", "composite"} & set(ran), ran
    assert ran[-1] == "render" and ran == ["analyze", "plan", "design", "code", "render"][-len(ran) :]
    assert (out / "ad.png").exists()
    again = adgraph("jobs", "resume", job_id, "--out", str(out), env=cli_env)
    assert again.returncode == 2 and json.loads(again.stdout)["error"]["code"] == "JOB_NOT_RESUMABLE"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` but carries almost no data: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("case", "extra", "code"),
    [
        ("empty-file", [], "INVALID_IMAGE"),
        ("truncated", [], "INVALID_IMAGE"),
        ("not-an-image", [], "INVALID_IMAGE"),
        ("bomb", [], "IMAGE_TOO_LARGE"),
        ("over-limit", [], "IMAGE_TOO_LARGE"),
        ("ok", ["--headline", "   "], "INVALID_INPUT"),
        ("ok", ["--size", "800x800"], "INVALID_INPUT"),
        ("ok", ["--text-position", "left"], "INVALID_INPUT"),
        ("ok", ["--font", "Comic Sans"], "INVALID_INPUT"),
        ("ok", ["--headline", "가" * 121], "INVALID_INPUT"),
        ("missing", [], "INVALID_INPUT"),
    ],
)
def test_bad_input_is_refused_with_a_stable_code_and_nothing_written(
    tmp_path: Path, cli_env, case: str, extra: list[str], code: str
) -> None:
    photo = tmp_path / "photo.png"
    data = BANANA.read_bytes()
    payload = {
        "empty-file": b"",
        "truncated": data[: len(data) // 2],
        "not-an-image": b"%PDF-1.4 hello",
        "bomb": _png_header_only(60_000, 60_000),
        "over-limit": data,
        "ok": data,
    }.get(case)
    if payload is not None:
        photo.write_bytes(payload)
    env = {**cli_env, "ADGRAPH_MAX_IMAGE_PIXELS": "100000"} if case == "over-limit" else cli_env
    out = tmp_path / "out"
    run = adgraph("ad", "--product", str(photo), *AD_ARGS, *extra, "--out", str(out), env=env, timeout=60)
    assert run.returncode == 2, (run.stdout, run.stderr)
    error = json.loads(run.stdout)["error"]
    assert error["code"] == code, error
    assert code in run.stderr and error["message"]
    assert not out.exists()  # nothing half-written
    assert _job_rows(Path(cli_env["ADGRAPH_DATA_DIR"])) == 0  # no job was created


def _job_rows(data_dir: Path) -> int:
    """Jobs in the data dir's jobs table (0 if there is no database yet), read with sqlite3 directly."""
    db = data_dir / "jobs.db"
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return conn.execute("SELECT count(*) FROM jobs").fetchone()[0] if "jobs" in tables else 0


def test_copy_that_cannot_fit_fails_the_job_with_the_limit_and_leaves_no_ad(tmp_path: Path, cli_env) -> None:
    out = tmp_path / "out"
    run = adgraph(
        "ad",
        "--product",
        str(BANANA),
        "--headline",
        "오늘만 특별한 가격 " * 9,
        "--prompt",
        "",
        "--size",
        "1200x628",
        "--out",
        str(out),
        env=cli_env,
    )
    assert run.returncode == 1
    result = json.loads(run.stdout)
    assert result["status"] == "failed" and result["error"]["code"] == "INVALID_INPUT"
    assert "28 px" in result["error"]["message"]
    assert (
        not (out / "ad.png").exists() and json.loads((out / "result.json").read_text())["status"] == "failed"
    )


def test_studio_serves_both_graphs_and_the_jobs_the_cli_made(tmp_path: Path, cli_env) -> None:
    import asyncio
    import socket

    from langgraph_sdk import get_client

    run = adgraph("ad", "--product", str(BANANA), *AD_ARGS, "--out", str(tmp_path / "out"), env=cli_env)
    assert run.returncode == 0, run.stderr
    job_id = json.loads(run.stdout)["job_id"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "studio.log").open("w")

    def studio_log() -> str:
        return (tmp_path / "studio.log").read_text()

    with (
        log,
        subprocess.Popen(
            [ADGRAPH, "studio", "--port", str(port)], env=cli_env, stdout=log, stderr=subprocess.STDOUT
        ) as server,
    ):
        try:

            async def inspect() -> tuple[list[str], dict, int, list[str]]:
                async with get_client(url=f"http://127.0.0.1:{port}") as client:
                    return await _inspect(client)

            async def _inspect(client) -> tuple[list[str], dict, int, list[str]]:
                # `adgraph studio` says so once the server is up and every job is registered with it
                registered = lambda: server.poll() is not None or "jobs visible in Studio" in studio_log()  # noqa: E731
                await until(registered, within=120, what="adgraph studio to register the jobs")
                assert server.poll() is None, studio_log()[-3000:]
                state = await client.threads.get_state(job_id)
                assistants = await client.assistants.search(graph_id="ad")
                graph = await client.assistants.get_graph(assistants[0]["assistant_id"])
                history = await client.threads.get_history(job_id, limit=50)
                site = await client.assistants.search(graph_id="homepage")
                site_graph = await client.assistants.get_graph(site[0]["assistant_id"])
                return (
                    [n["id"] for n in graph["nodes"]],
                    state,
                    len(history),
                    [n["id"] for n in site_graph["nodes"]],
                )

            nodes, state, n_history, site_nodes = asyncio.run(inspect())
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert nodes[1:-1] == list(AD_NODES)
    assert site_nodes[1:-1] == ["plan", "design", "code", "render"]  # both graphs from langgraph.json
    assert state["next"] == [] and state["values"]["ad"]["width"] == 1080
    assert n_history == 10


def test_cli_jobs_are_service_jobs_and_api_jobs_are_cli_jobs(tmp_path: Path, cli_env) -> None:
    """One jobs table for every door: a server started later over the CLI's data dir lists the CLI's jobs
    with their lineage, results and events; the CLI lists and shows a job made over the API."""
    import httpx

    from service.settings import Settings
    from tests.integration.api_support import Faults, LiveServer, sse_events, wait_for

    made = adgraph("ad", "--product", str(BANANA), *AD_ARGS, "--out", str(tmp_path / "a"), env=cli_env)
    assert made.returncode == 0, made.stderr
    source = json.loads(made.stdout)["job_id"]
    branched = adgraph(
        "jobs", "branch", source, "--from-node", "composite", "--headline", "반값 세일",
        "--out", str(tmp_path / "b"), env=cli_env,
    )  # fmt: skip
    assert branched.returncode == 0, branched.stderr
    child = json.loads(branched.stdout)["job_id"]

    settings = Settings(data_dir=Path(cli_env["ADGRAPH_DATA_DIR"]), database_url=None, checkpoint_url=None)
    server = LiveServer(settings, Faults())
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            jobs = {j["id"]: j for j in http.get("/v1/jobs").json()["jobs"]}
            assert jobs[source]["status"] == jobs[child]["status"] == "succeeded"
            assert jobs[child]["parent"]["job_id"] == source and jobs[source]["parent"] is None
            ad = http.get(jobs[child]["result"]["ad"]["url"])
            assert ad.content == (tmp_path / "b" / "ad.png").read_bytes()
            with http.stream("GET", f"/v1/jobs/{child}/events") as r:
                kinds = [(e["event"], e["data"].get("node")) for e in sse_events(r)]
            assert [n for k, n in kinds if k == "node_started"] == [
                "analyze",
                "plan",
                "design",
                "code",
                "render",
            ]
            assert kinds[-1][0] == "job_finished"
            photo = http.post("/v1/artifacts", files={"file": ("banana.png", BANANA.read_bytes())}).json()
            body = {"workflow": "ad", "input": {"product_image": photo["id"], "headline": "API에서 온 광고"}}
            api_job = http.post("/v1/jobs", json=body).json()["id"]
            assert wait_for(http, api_job)["status"] == "succeeded"
    finally:
        server.stop()

    shown = adgraph("jobs", "show", api_job, "--out", str(tmp_path / "c"), env=cli_env)
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)
    assert (job["id"], job["workflow"], job["status"]) == (api_job, "ad", "succeeded")
    with Image.open(tmp_path / "c" / "ad.png") as im:
        assert im.size == (1080, 1080)
    listed = adgraph("jobs", "list", env=cli_env)
    assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == [api_job, child, source]  # newest first
