"""The one LLM client path: an OpenAI-compatible chat model, usage accounting, and structured answers with
one repair round. The embedded llama.cpp server (SmolLM2-135M, when no server is configured) is a process
the service owns: `service.llm_server`.

Every LLM agent asks for a small pydantic model (`ask`), validates it with the same checks the rules
obey, and on a second bad answer lets the rule-based policy decide that part; each such fallback is
reported through LangGraph's stream writer (so it lands in the job's events and `result.json`) and
counted in `Usage`. Nothing invalid is passed on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from kernel.errors import AdgraphError

if TYPE_CHECKING:
    import httpx
    from langchain_core.language_models import BaseChatModel

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


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
