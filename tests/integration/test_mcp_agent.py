"""A real agent as the MCP door's client: a LangGraph agent whose tools are the server's, loaded by
langchain-mcp-adapters over Streamable HTTP, with a scripted chat model that issues the tool calls a model
would (upload-and-generate, wait, look), ending with a finished ad."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_mcp_adapters.client import MultiServerMCPClient
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from service.settings import Settings
from tests.integration.api_support import Faults, LiveServer
from tests.support import PHOTOS

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

PHOTO = "data:image/png;base64," + base64.b64encode((PHOTOS / "banana.png").read_bytes()).decode()
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ScriptedModel(BaseChatModel):
    """Answers like a tool-calling model would, reading the job id from the tool results it was given."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kw: Any) -> ScriptedModel:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        job_id = _UUID.search(str(results[0].content)).group(0) if results else None
        script = [
            (
                "generate_ad_image",
                {"product_image": PHOTO, "text_content": "달콤한 바나나", "cta": "주문하기"},
            ),
            ("wait_for_job", {"job_id": job_id, "timeout_s": 240}),
            ("get_job_result", {"job_id": job_id}),
        ]
        if len(results) < len(script):
            name, args = script[len(results)]
            call = {"name": name, "args": args, "id": f"call_{len(results)}", "type": "tool_call"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            message = AIMessage(content=f"Your ad is ready: job {job_id}.")
        return ChatResult(generations=[ChatGeneration(message=message)])


@pytest.fixture
def server(tmp_path) -> Iterator[LiveServer]:
    live = LiveServer(Settings(data_dir=tmp_path, database_url=None, checkpoint_url=None), Faults())
    live.start()
    try:
        yield live
    finally:
        live.stop()


async def test_a_langgraph_agent_makes_an_ad_through_the_mcp_tools(server) -> None:
    client = MultiServerMCPClient(
        {"adgraph": {"transport": "streamable_http", "url": server.base_url + "/mcp"}}
    )
    tools = await client.get_tools()
    assert {"generate_ad_image", "wait_for_job", "get_job_result"} <= {t.name for t in tools}
    model = ScriptedModel().bind_tools(tools)

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "agent")
    out = await graph.compile().ainvoke({"messages": [("user", "Make an ad for my banana chips")]})

    calls = [m.name for m in out["messages"] if isinstance(m, ToolMessage)]
    assert calls == ["generate_ad_image", "wait_for_job", "get_job_result"]
    assert all(m.status != "error" for m in out["messages"] if isinstance(m, ToolMessage))
    waited = out["messages"][-4]  # wait_for_job's answer: the finished job
    text = waited.content if isinstance(waited.content, str) else json.dumps(waited.content)
    assert '"succeeded"' in text or "succeeded" in text
    last = out["messages"][-2]  # get_job_result: a preview image came back as an image block
    assert any(isinstance(b, dict) and b.get("type") == "image" for b in last.content), last.content
    assert out["messages"][-1].content.startswith("Your ad is ready")
