"""An app factory for uvicorn in tests: the echo model, which calls a slow tool first when the
prompt mentions "tool". `uvicorn --factory tests.support.slow_app:create_slow_app`.

Words stream one per ECHO_WORD_DELAY seconds (the service's own setting); the tool takes
TEST_TOOL_DELAY seconds.
"""

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
from {{ cookiecutter.__package_name }}.config import get_settings
from {{ cookiecutter.__package_name }}.echo import EchoModel


@tool
def slow_tool(topic: str) -> str:
    """Look something up, slowly.

    Args:
        topic: What to look up.
    """
    time.sleep(float(os.environ.get("TEST_TOOL_DELAY", "0.5")))
    return f"notes on {topic}"


class ToolCallingEchoModel(EchoModel):
    """Calls slow_tool when the prompt mentions "tool"; shown its result, echoes that."""

    async def stream(
        self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None, **_: Any
    ) -> AsyncIterator[dict[str, Any]]:
        last = messages[-1]["content"]
        found = [
            part["text"]
            for block in last
            if "toolResult" in block
            for part in block["toolResult"]["content"]
            if "text" in part
        ]
        if found:
            messages = [*messages[:-1], {"role": "user", "content": [{"text": " ".join(found)}]}]
        elif any("tool" in block.get("text", "") for block in last):
            yield {"messageStart": {"role": "assistant"}}
            start = {"toolUse": {"toolUseId": "slow-1", "name": "slow_tool"}}
            yield {"contentBlockStart": {"start": start}}
            delta = {"toolUse": {"input": json.dumps({"topic": "turns"})}}
            yield {"contentBlockDelta": {"delta": delta}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "tool_use"}}
            return
        async for event in super().stream(messages, tool_specs, system_prompt):
            yield event


def create_slow_app() -> FastAPI:
    agent.TOOLS = [slow_tool]
    delay = get_settings().echo_word_delay
    return create_app(model=ToolCallingEchoModel(word_delay=delay))
