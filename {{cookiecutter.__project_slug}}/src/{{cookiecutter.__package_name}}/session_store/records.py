"""How the Strands SDK's records map to rows, and the errors and ids of the store."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from ..database import dumps_json, loads_json
from .tables import ID_LENGTH, PRINCIPAL_LENGTH


class NotFoundError(SessionException):
    """The session, agent, message or multi-agent state does not exist."""


class AlreadyExistsError(SessionException):
    """A record with that id exists already."""


class InvalidIdError(SessionException, ValueError):
    """An id the store refuses: it would be unsafe in URLs, file names or logs."""


class SessionBusyError(SessionException):
    """Another turn holds the session's lease."""

    def __init__(self, session_id: str, waited: float = 0) -> None:
        after = f" after waiting {waited:g} s" if waited else ""
        super().__init__(
            f"Session {session_id!r} is busy with another turn{after}. "
            "Retry when that turn has finished."
        )


def id_rule(max_length: int) -> str:
    return (
        f"1 to {max_length} characters, none of them '/', '\\' or one that does not print (a "
        "control or format character, or a separator but the space), and not '.' or '..'"
    )


ID_RULE = id_rule(ID_LENGTH)


def validate_id(kind: str, value: str, max_length: int = ID_LENGTH) -> str:
    """Return `value` if it is a valid session, agent or multi-agent id; else InvalidIdError.

    The SDK's own stores accept any id without a path separator; this store also refuses what
    would be unsafe in a URL path or a log line: characters that do not print, among them the
    invisible ones that reorder or join the text around them (U+202E, U+200D).
    """
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= max_length
        or value in {".", ".."}
        or "/" in value
        or "\\" in value
        or not value.isprintable()
    ):
        raise InvalidIdError(f"invalid {kind} {value!r}: use {id_rule(max_length)}")
    return value


def validate_principal(value: str) -> str:
    """Return `value` if it is a valid principal (as an id, but shorter); else InvalidIdError."""
    return validate_id("principal", value, PRINCIPAL_LENGTH)


# A message id is its position in the agent's conversation, in the table's integer column.
MESSAGE_ID_LIMIT = 2**31


def validate_message_id(value: int) -> int:
    """Return `value` if it is a valid message id; else InvalidIdError. The SDK's own stores
    refuse anything but an integer; this store also refuses one that no position can be."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MESSAGE_ID_LIMIT:
        raise InvalidIdError(f"invalid message id {value!r}: use an integer from 0 to 2**31 - 1")
    return value


def missing_agent(session_id: str, agent_id: str) -> str:
    return f"agent {agent_id!r} does not exist in session {session_id!r}"


def timestamp(iso: str) -> datetime:
    """An SDK timestamp (ISO 8601 text) as a datetime; one without a zone is taken as UTC."""
    moment = datetime.fromisoformat(iso)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_stored(value: Any) -> Any:
    """`value` as a JSON column gives it back: a copy of its own, as it is now.

    The SDK keeps changing some of what it hands over (a conversation manager trims a tool result
    in place, a model provider updates its state): a record held until later is copied first.
    """
    return loads_json(dumps_json(value))


# The principal of sessions made with no caller to own them: by AUTH_MODE=none, and by
# SqlSessionRepository when none is given.
LOCAL_PRINCIPAL = "local"


def session_record(row: RowMapping) -> Session:
    return Session(
        session_id=row["session_id"],
        session_type=SessionType(row["session_type"]),
        created_at=row["created_at"].isoformat(),
        updated_at=row["updated_at"].isoformat(),
    )


def agent_values(session_agent: SessionAgent) -> dict[str, Any]:
    """The agent's JSON columns."""
    return {
        "state": session_agent.state,
        "conversation_manager_state": session_agent.conversation_manager_state,
        "internal_state": session_agent._internal_state,
    }


def agent_row(principal: str, session_id: str, session_agent: SessionAgent) -> dict[str, Any]:
    """The row of an agent."""
    return {
        "principal": principal,
        "session_id": session_id,
        "agent_id": session_agent.agent_id,
        **agent_values(session_agent),
        "created_at": timestamp(session_agent.created_at),
        "updated_at": timestamp(session_agent.updated_at),
    }


def agent_record(row: RowMapping) -> SessionAgent:
    return SessionAgent(
        agent_id=row["agent_id"],
        state=row["state"],
        conversation_manager_state=row["conversation_manager_state"],
        _internal_state=row["internal_state"],
        created_at=row["created_at"].isoformat(),
        updated_at=row["updated_at"].isoformat(),
    )


# A message's own columns, beside its session's and agent's ids: what a SessionMessage holds.
MESSAGE_FIELDS = ("message_id", "message", "redact_message", "created_at", "updated_at")


def message_values(
    principal: str, session_id: str, agent_id: str, session_message: SessionMessage
) -> dict[str, Any]:
    """The row of a message."""
    return {
        "principal": principal,
        "session_id": session_id,
        "agent_id": agent_id,
        "message_id": session_message.message_id,
        "message": session_message.message,
        "redact_message": session_message.redact_message,
        "created_at": timestamp(session_message.created_at),
        "updated_at": timestamp(session_message.updated_at),
    }


def message_record(row: RowMapping) -> SessionMessage:
    # Built directly: SessionMessage.from_dict inspects the class signature for every key, which
    # dominates the restore of a long conversation (the template's BENCHMARKS.md). The store
    # reads rows as mappings (`Result.mappings()`), whose keys cost less than a Row's
    # attributes. Most messages were never updated: their one timestamp is formatted once.
    created, updated = row["created_at"], row["updated_at"]
    created_at = created.isoformat()
    return SessionMessage(
        message=row["message"],
        message_id=row["message_id"],
        redact_message=row["redact_message"],
        created_at=created_at,
        updated_at=created_at if updated == created else updated.isoformat(),
    )
