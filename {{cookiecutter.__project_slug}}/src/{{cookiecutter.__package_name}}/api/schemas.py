"""Request and response bodies, as the OpenAPI document shows them."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..session_store import validate_id
from ..session_store.records import ID_RULE
from ..session_store.tables import ID_LENGTH, TURN_KEY_LENGTH

# Message ids are INTEGER columns: the largest offset both PostgreSQL and SQLite can compare.
MAX_OFFSET = 2**31 - 1


def storable_text(text: str) -> str:
    """Refuse a prompt that would fail only later, in the model or in the database."""
    if not text.strip():
        raise ValueError("must contain more than whitespace")
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (PostgreSQL cannot store it)")
    try:
        text.encode()
    except UnicodeEncodeError:  # JSON can carry half a surrogate pair ("\ud800"); UTF-8 cannot
        raise ValueError("must be valid Unicode: it holds half of a surrogate pair") from None
    return text


SessionId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_LENGTH),
    AfterValidator(lambda value: validate_id("id", value)),
    Field(description=f"Session id: {ID_RULE}.", examples=["support-chat-42"]),
]


# A client's key for a turn: printable ASCII without spaces, as HTTP headers carry it.
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=TURN_KEY_LENGTH, pattern=r"^[\x21-\x7e]+$")
]


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


Prompt = Annotated[
    str,
    StringConstraints(min_length=1),
    AfterValidator(storable_text),
    Field(examples=["What can you do?"]),
]


class StrictBody(BaseModel):
    """A body that refuses fields it does not know: a misspelt `sessionId` must not quietly
    start a new session on every turn."""

    model_config = ConfigDict(extra="forbid")


class TurnRequest(StrictBody):
    prompt: Prompt
    session_id: SessionId | None = Field(
        default=None, description="Continue this session (created if new); omit for a new one."
    )


class SessionCreate(StrictBody):
    session_id: SessionId | None = Field(default=None, description="Omit for a random UUID.")


class SessionSummary(BaseModel):
    session_id: str
    created_at: datetime
    updated_at: datetime = Field(description="When its last turn was stored, or it was created.")


class SessionList(BaseModel):
    sessions: list[SessionSummary]
    next_cursor: str | None = Field(description="The `cursor` of the next page; null at the end.")


class AgentSummary(BaseModel):
    agent_id: str
    message_count: int
    created_at: datetime
    updated_at: datetime = Field(description="Its last change of state.")


class SessionDetail(SessionSummary):
    message_count: int
    agents: list[AgentSummary]


class Cancellation(BaseModel):
    session_id: str
    cancelled: bool = Field(description="Whether a turn of the session was running, and stopped.")


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
