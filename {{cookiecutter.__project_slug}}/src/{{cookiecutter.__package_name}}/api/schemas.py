"""Request and response bodies, as the OpenAPI document shows them."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from ..session_store.repository import ID_LENGTH, ID_PATTERN, ID_RULE

SessionId = Annotated[
    str,
    StringConstraints(pattern=f"^{ID_PATTERN.pattern}$", min_length=1, max_length=ID_LENGTH),
    Field(description=f"Session id: {ID_RULE}.", examples=["support-chat-42"]),
]


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class TurnRequest(BaseModel):
    prompt: str = Field(min_length=1, examples=["What can you do?"])
    session_id: SessionId | None = Field(
        default=None, description="Continue this session (created if new); omit for a new one."
    )


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class TurnResponse(BaseModel):
    session_id: str
    response: str = Field(description="The text of the agent's final message.")
    stop_reason: str = Field(examples=["end_turn"])
    usage: Usage


class SessionCreate(BaseModel):
    session_id: SessionId | None = Field(default=None, description="Omit for a random UUID.")


class SessionSummary(BaseModel):
    session_id: str
    created_at: datetime
    updated_at: datetime = Field(
        description="In a session's detail: its last message or agent change. In the list of "
        "sessions: the last change of the session record itself, which turns do not touch."
    )


class SessionList(BaseModel):
    sessions: list[SessionSummary]
    next_cursor: str | None = Field(description="The `cursor` of the next page; null at the end.")


class AgentSummary(BaseModel):
    agent_id: str
    message_count: int
    created_at: datetime
    updated_at: datetime = Field(description="Its last message or state change.")


class SessionDetail(SessionSummary):
    message_count: int
    agents: list[AgentSummary]


class HistoryMessage(BaseModel):
    message_id: int
    role: Literal["user", "assistant"]
    content: list[dict[str, Any]] = Field(
        description="Strands content blocks; bytes as {'__bytes_encoded__': true, 'data': base64}."
    )
    text: str = Field(description="The message's text blocks, joined.")
    created_at: datetime


class History(BaseModel):
    session_id: str
    agent_id: str
    messages: list[HistoryMessage]
    next_offset: int | None = Field(description="The `offset` of the next page; null at the end.")
