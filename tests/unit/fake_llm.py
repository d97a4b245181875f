"""A scripted chat model that answers with tool calls the way `ChatOpenAI` parses a server's reply."""

from __future__ import annotations

import json
from itertools import count
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

_ids = count(1)


class FakeToolChat(GenericFakeChatModel):
    """`GenericFakeChatModel` that accepts `bind_tools` (so `with_structured_output` works) and keeps
    every prompt it was sent. Answers come from `messages`, in order; an Exception in it is raised."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)
    tools: list[Any] = Field(default_factory=list)

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> FakeToolChat:
        self.tools.append((tools, tool_choice))
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def script(*answers: AIMessage | Exception) -> FakeToolChat:
    def gen():
        for a in answers:
            if isinstance(a, Exception):
                raise a
            yield a

    return FakeToolChat(messages=gen())


def _usage(out: int = 20) -> dict[str, int]:
    return {"input_tokens": 100, "output_tokens": out, "total_tokens": 100 + out}


def call(name: str, args: dict[str, Any] | None = None, **kw: Any) -> AIMessage:
    """A well-formed function call (the arguments may still be wrong for the schema)."""
    return AIMessage(
        content="",
        tool_calls=[{"name": name, "args": {**(args or {}), **kw}, "id": f"call_{next(_ids)}"}],
        usage_metadata=_usage(),
    )


def bad_json(name: str, arguments: str = '{"align": "left", ') -> AIMessage:
    """A function call whose arguments are not JSON (what a small model truncates to)."""
    cid = f"call_{next(_ids)}"
    return AIMessage(
        content="",
        additional_kwargs={
            "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}
            ]
        },
        invalid_tool_calls=[
            {"name": name, "args": arguments, "id": cid, "error": "not JSON", "type": "invalid_tool_call"}
        ],
        usage_metadata=_usage(),
    )


def text(content: str) -> AIMessage:
    """Plain text, no function call."""
    return AIMessage(content=content, usage_metadata=_usage())


def args_of(message: AIMessage) -> str:
    return json.dumps(message.tool_calls[0]["args"]) if message.tool_calls else ""
