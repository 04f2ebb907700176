"""POST /chat: turns for front ends written with the Vercel AI SDK (`useChat`).

The route speaks the AI SDK's UI message stream protocol (v1): server-sent events whose data are
JSON parts (`start`, `text-delta`, `tool-input-available`, `finish`, `error`, ...), ended by
`[DONE]`, so that `useChat` with a `DefaultChatTransport` pointed here works unchanged. The
chat's `id` is the session id. The service keeps the conversation itself: only the last message,
the user's new one, is read; the earlier messages a client sends are neither trusted nor shown
to the model.
"""

from collections.abc import AsyncIterable
from typing import Annotated, Any, Literal
from uuid import uuid4

from fastapi import APIRouter, Depends, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import AfterValidator, BaseModel, Field, ValidationError, field_validator

from ..turns import (
    ModelRetry,
    TextDelta,
    ToolResult,
    ToolUse,
    Turn,
    TurnCancelledError,
    TurnEvent,
    TurnResult,
)
from .dependencies import AppSettings, Runner
from .errors import ANY_ROUTE_ERRORS, BODY_ERRORS, TURN_START_ERRORS, documented, turn_error
from .schemas import SessionId, TurnRequest, storable_text
from .security import Principal, authenticate
from .turns import checked_request, started_turn

router = APIRouter(
    tags=["chat"],
    dependencies=[Depends(authenticate)],
    responses=documented(ANY_ROUTE_ERRORS, BODY_ERRORS, TURN_START_ERRORS, streamed=True),
)

# Strands' stop reasons, as the AI SDK names them; any other is "other".
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool-calls",
    "guardrail_intervened": "content-filter",
    "content_filtered": "content-filter",
}


class UIMessage(BaseModel):
    """A message as the AI SDK sends it; of the last one, only its text parts are read."""

    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]] = Field(max_length=100)  # a text part, and rarely a few more


def ui_text(message: UIMessage) -> str:
    """The message's text parts, a line apart: parts that a front end sent apart (a document,
    then the question about it) must not run together into one word."""
    return "\n".join(
        part["text"]
        for part in message.parts
        if part.get("type") == "text" and isinstance(part.get("text"), str)
    )


def new_message(messages: list[Any]) -> UIMessage:
    """The last message, validated; a problem of it is located at its place in the list."""
    index = len(messages) - 1
    try:
        return UIMessage.model_validate(messages[index])
    except ValidationError as error:
        problems = error.errors(include_url=False)
        located = [{**problem, "loc": (index, *problem["loc"])} for problem in problems]
        raise ValidationError.from_exception_data(error.title, located) from None


def ends_with_user_text(messages: list[Any]) -> list[Any]:
    """The messages, the last validated as the user's new one. The earlier ones are not read, nor
    validated: a long chat costs nothing, and a body of a million bad parts no seconds of the
    event loop."""
    new = new_message(messages)
    if new.role != "user":
        raise ValueError("the last message must be the user's new message")
    if any(part.get("type") == "file" for part in new.parts):
        raise ValueError("file parts (images, documents) are not supported: send text")
    storable_text(ui_text(new))
    return [*messages[:-1], new]


def no_edit(message_id: str | None) -> None:
    if message_id is not None:
        raise ValueError(
            "editing a message already sent is not supported (a stored turn is never "
            "rewritten): send a new message"
        )


class ChatRequest(BaseModel):
    """What the AI SDK's `DefaultChatTransport` sends; its other fields are ignored."""

    id: SessionId = Field(description="The chat id: the session, created if new.")
    messages: Annotated[list[Any], AfterValidator(ends_with_user_text)] = Field(
        min_length=1,
        description="The chat's messages; the last, the user's, is the prompt. The service "
        "keeps the history: earlier messages are ignored.",
    )
    trigger: Literal["submit-message"] = Field(
        default="submit-message",
        description="Only new messages: regenerating a stored reply is not supported.",
    )
    message_id: Annotated[str | None, AfterValidator(no_edit)] = Field(
        default=None,
        alias="messageId",
        description="Sent when the client edits an earlier message: not supported.",
    )

    @field_validator("trigger", mode="before")
    @classmethod
    def no_regenerate(cls, trigger: object) -> object:
        """What useChat's regenerate() sends: refused in words its user can act on."""
        if trigger == "regenerate-message":
            raise ValueError(
                "regenerating a reply is not supported (a stored turn is never rewritten): "
                "send a new message"
            )
        return trigger

    @property
    def prompt(self) -> str:
        return ui_text(self.messages[-1])


async def started_chat_turn(
    body: ChatRequest, settings: AppSettings, runner: Runner, principal: Principal, request: Request
) -> Turn:
    """Start the turn as /process-streaming does, so that failing to start gets a real status."""
    turn = TurnRequest(prompt=body.prompt, session_id=body.id)
    return await started_turn(await checked_request(turn, settings), runner, principal, request)


async def ui_message_stream_header(response: Response) -> None:
    # The header the AI SDK's stream protocol requires of a UI message stream.
    response.headers["x-vercel-ai-ui-message-stream"] = "v1"


def tool_output(result: ToolResult) -> Any:
    """What the tool returned, as a front end reads it: its text, or its JSON value."""
    values = [
        block["json"] if "json" in block else block["text"]
        for block in result.content
        if "json" in block or "text" in block  # images and documents are bytes: not sent
    ]
    return values[0] if len(values) == 1 else values


class UIMessageParts:
    """A turn's events as UI message stream parts: each contiguous run of text is a text part,
    each call of the model a step (a tool's result ends one; the model then answers anew)."""

    def __init__(self) -> None:
        self.text_parts = 0
        self.open_text: str | None = None  # the id of the text part being streamed
        self.step_done = False

    def of(self, event: TurnEvent) -> list[dict[str, Any]]:
        if isinstance(event, ToolResult):
            self.step_done = True
            if event.status == "error":
                text = "".join(block["text"] for block in event.content if "text" in block)
                return [{"type": "tool-output-error", "toolCallId": event.id, "errorText": text}]
            output = tool_output(event)
            return [{"type": "tool-output-available", "toolCallId": event.id, "output": output}]
        parts = self.next_step() if self.step_done else []
        if isinstance(event, TextDelta):
            if self.open_text is None:
                self.text_parts += 1
                self.open_text = f"text-{self.text_parts}"
                parts.append({"type": "text-start", "id": self.open_text})
            parts.append({"type": "text-delta", "id": self.open_text, "delta": event.text})
        elif isinstance(event, ModelRetry):
            # The protocol cannot withdraw the failed call's text before the AI SDK's v7 (whose
            # `reset-step` v5 and v6 refuse): the new call's text is a part of its own.
            parts += self.end_text()
        elif isinstance(event, ToolUse):
            parts += self.end_text()
            tool_input = {"toolCallId": event.id, "toolName": event.name, "input": event.input}
            parts.append({"type": "tool-input-available", **tool_input})
        elif isinstance(event, TurnResult):
            reason = FINISH_REASONS.get(event.stop_reason, "other")
            parts += [*self.end_text(), {"type": "finish-step"}]
            parts.append({"type": "finish", "finishReason": reason})
        return parts

    def end_text(self) -> list[dict[str, Any]]:
        if self.open_text is None:
            return []
        text_id, self.open_text = self.open_text, None
        return [{"type": "text-end", "id": text_id}]

    def next_step(self) -> list[dict[str, Any]]:
        self.step_done = False
        return [{"type": "finish-step"}, {"type": "start-step"}]


@router.post(
    "/chat",
    response_class=EventSourceResponse,
    dependencies=[Depends(ui_message_stream_header)],
    responses={
        200: {
            "description": "The AI SDK's UI message stream (header "
            "`x-vercel-ai-ui-message-stream: v1`): `start`, `start-step`, `text-start`, "
            "`text-delta`, `text-end`, `tool-input-available`, `tool-output-available` or "
            "`tool-output-error`, `finish-step`, then `finish`, `error` or (a cancelled turn) "
            "`abort`; `[DONE]` last."
        }
    },
)
async def chat(turn: Annotated[Turn, Depends(started_chat_turn)]) -> AsyncIterable[ServerSentEvent]:
    """Run one turn of the chat's session, streamed as the Vercel AI SDK's `useChat` reads it."""
    parts = UIMessageParts()
    yield ServerSentEvent(data={"type": "start", "messageId": str(uuid4())})
    yield ServerSentEvent(data={"type": "start-step"})
    try:
        async for event in turn.events():
            for part in parts.of(event):
                yield ServerSentEvent(data=part)
    except TurnCancelledError:
        # Stopped on purpose (POST /sessions/{id}/cancel): an `abort`, as the AI SDK's own
        # servers end a stopped reply, so that `useChat` is ready for the next message and
        # reports no error.
        yield ServerSentEvent(data={"type": "abort"})
    except Exception as error:
        yield ServerSentEvent(data={"type": "error", "errorText": turn_error(error).message})
    yield ServerSentEvent(raw_data="[DONE]")
