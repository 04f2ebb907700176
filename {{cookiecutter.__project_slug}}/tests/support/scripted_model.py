"""A model for tests: replays scripted replies instead of calling a provider."""

import asyncio
import copy
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from strands.models import Model
from strands.types.content import Messages
from strands.types.exceptions import ModelThrottledException


@dataclass(frozen=True)
class ToolCall:
    """A reply that asks for one tool call."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str = "tool-1"


@dataclass(frozen=True)
class RedactPrompt:
    """A reply that also tells the agent to redact the user's prompt, as a guardrail would."""

    text: str
    replacement: str = "[prompt redacted]"


class OutOfCredit(Exception):
    """OpenAI's refusal for an account out of credit: HTTP 429, code insufficient_quota."""

    status_code = 429
    code = "insufficient_quota"


def out_of_credit() -> ModelThrottledException:
    """OpenAI's refusal for an account out of credit, as the SDK raises it (as it raises a
    refusal for OpenAI's load)."""
    error = ModelThrottledException("You exceeded your current quota.")
    error.__cause__ = OutOfCredit("Error code: 429 - insufficient_quota")
    return error


@dataclass(frozen=True)
class CutShort:
    """A reply that the model stops at its token limit (stop reason `max_tokens`)."""

    reply: str | ToolCall


@dataclass(frozen=True)
class FailsMidAnswer:
    """A reply that streams `text`, then fails with `error`, as a provider throttled mid-answer."""

    text: str
    error: Exception


class ProviderOverloaded(Exception):
    """A provider's refusal for its load that the SDK passes on as it is, not as
    ModelThrottledException, with the HTTP status and error type the provider gave: Anthropic's
    OverloadedError (529, "overloaded_error"), or its APIStatusError for an overload in the middle
    of an answer (200, "overloaded_error"); LiteLLM's RateLimitError (429)."""

    def __init__(
        self, message: str, status_code: int = 529, error_type: str | None = "overloaded_error"
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.type = error_type


Reply = str | ToolCall | RedactPrompt | CutShort | FailsMidAnswer | Exception


class ScriptedModel(Model):
    """Answers each model call with the next scripted reply; records what it was shown.

    A str streams as text (word by word), a ToolCall as a toolUse block, a CutShort as its reply
    stopped at max_tokens, a FailsMidAnswer as its text and then its error; an Exception is
    raised.
    """

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self.replies = list(replies)
        self.calls: list[Messages] = []

    def update_config(self, **model_config: Any) -> None:
        pass

    def get_config(self) -> dict[str, Any]:
        return {}

    async def structured_output(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the scripted model has no structured output")
        yield  # pragma: no cover

    async def stream(
        self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None, **_: Any
    ) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(copy.deepcopy(messages))
        if not self.replies:
            raise AssertionError("the scripted model ran out of replies")
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        cut_short = isinstance(reply, CutShort)
        if isinstance(reply, CutShort):
            reply = reply.reply
        yield {"messageStart": {"role": "assistant"}}
        if isinstance(reply, ToolCall):
            start = {"toolUse": {"toolUseId": reply.id, "name": reply.name}}
            yield {"contentBlockStart": {"start": start}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps(reply.input)}}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "max_tokens" if cut_short else "tool_use"}}
        else:
            text = reply if isinstance(reply, str) else reply.text
            if isinstance(reply, RedactPrompt):
                yield {"redactContent": {"redactUserContentMessage": reply.replacement}}
            yield {"contentBlockStart": {"start": {}}}
            for index, word in enumerate(text.split(" ")):
                chunk = word if index == 0 else f" {word}"
                yield {"contentBlockDelta": {"delta": {"text": chunk}}}
            if isinstance(reply, FailsMidAnswer):
                raise reply.error
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "max_tokens" if cut_short else "end_turn"}}
        usage = {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}
        yield {"metadata": {"usage": usage, "metrics": {"latencyMs": 1}}}


class GatedModel(ScriptedModel):
    """Answers "done" once `gate` returns; `entered` is set when a turn reaches the model, and
    `arrivals` counts the turns that did.

    The gate is waited for on a worker thread, as a model provider's network wait would be: the
    service's event loop stays free meanwhile.
    """

    def __init__(self, gate: Callable[[], object]) -> None:
        super().__init__()
        self.gate = gate
        self.entered = threading.Event()
        self.arrivals = 0
        self.cancel_signal: threading.Event | None = None

    async def stream(self, messages: Messages, *args: Any, **kwargs: Any) -> AsyncIterator[dict]:
        self.arrivals += 1
        self.cancel_signal = kwargs["cancel_signal"]  # what tells a provider to stop streaming
        self.entered.set()
        await asyncio.to_thread(self.gate)
        self.replies.append("done")
        async for event in super().stream(messages, *args, **kwargs):
            yield event
