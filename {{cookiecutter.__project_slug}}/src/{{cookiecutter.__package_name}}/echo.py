"""An offline model for local development, demos and load tests: it streams the prompt back.

It needs no network and no credentials (MODEL_PROVIDER=echo), so the whole service, sessions and
streaming included, can run anywhere. It never calls tools. With a `word_delay` (ECHO_WORD_DELAY)
it waits before each word, as a remote model keeps a turn open for seconds.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from strands.models import Model
from strands.types.content import Messages


class EchoModel(Model):
    def __init__(self, word_delay: float = 0) -> None:
        self.word_delay = word_delay

    def update_config(self, **model_config: Any) -> None:
        pass

    def get_config(self) -> dict[str, Any]:
        return {"model_id": "echo"}

    async def structured_output(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the echo model has no structured output")
        yield  # pragma: no cover

    async def stream(
        self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None, **_: Any
    ) -> AsyncIterator[dict[str, Any]]:
        prompt = " ".join(
            block["text"] for block in messages[-1]["content"] if "text" in block
        ).strip()
        words = f"You said: {prompt}".split(" ")
        yield {"messageStart": {"role": "assistant"}}
        yield {"contentBlockStart": {"start": {}}}
        for index, word in enumerate(words):
            if self.word_delay:
                await asyncio.sleep(self.word_delay)
            yield {"contentBlockDelta": {"delta": {"text": word if index == 0 else f" {word}"}}}
        yield {"contentBlockStop": {}}
        yield {"messageStop": {"stopReason": "end_turn"}}
        # Words stand in for tokens, so that usage figures move the way a real model's do.
        seen = sum(len(block.get("text", "").split()) for m in messages for block in m["content"])
        usage = {"inputTokens": seen, "outputTokens": len(words), "totalTokens": seen + len(words)}
        yield {"metadata": {"usage": usage, "metrics": {"latencyMs": 0}}}
