"""An app factory for uvicorn in tests: a slow, scripted model, so that turns overlap and clients
can drop mid-turn. `uvicorn --factory tests.slow_server:create_slow_app`.

The model echoes the prompt one word per TEST_WORD_DELAY seconds. A prompt that mentions "tool"
first gets a call to `slow_tool`, which takes TEST_TOOL_DELAY seconds.
"""

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from strands import tool
from strands.types.content import Messages

from {{ cookiecutter.__package_name }} import agent
from {{ cookiecutter.__package_name }}.api.app import create_app
from {{ cookiecutter.__package_name }}.echo import EchoModel


@tool
def slow_tool(topic: str) -> str:
    """Look something up, slowly.

    Args:
        topic: What to look up.
    """
    time.sleep(float(os.environ.get("TEST_TOOL_DELAY", "0.5")))
    return f"notes on {topic}"


class SlowModel(EchoModel):
    async def stream(
        self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None, **_: Any
    ) -> AsyncIterator[dict[str, Any]]:
        delay = float(os.environ.get("TEST_WORD_DELAY", "0.05"))
        last = messages[-1]["content"]
        wants_tool = any("tool" in block.get("text", "") for block in last)
        if wants_tool:
            yield {"messageStart": {"role": "assistant"}}
            start = {"toolUse": {"toolUseId": "slow-1", "name": "slow_tool"}}
            yield {"contentBlockStart": {"start": start}}
            delta = {"toolUse": {"input": json.dumps({"topic": "turns"})}}
            yield {"contentBlockDelta": {"delta": delta}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "tool_use"}}
            return
        async for event in super().stream(messages, tool_specs, system_prompt):
            if "contentBlockDelta" in event:
                await asyncio.sleep(delay)
            yield event


def create_slow_app() -> FastAPI:
    agent.TOOLS = [slow_tool]
    return create_app(model_factory=SlowModel)
