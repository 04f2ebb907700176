"""A unit of work per turn: the session as one turn sees it, held in memory.

The agent runs with the `UnitOfWork` as its session repository: the SDK's reads are answered and
its writes recorded in memory, between the turn store's read when the turn begins and its save
when it ends (turn_store.py). Nothing waits on the database while the model thinks.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from strands.session import SessionRepository
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage

from ..database import dumps_json
from .records import (
    AlreadyExistsError,
    NotFoundError,
    agent_values,
    as_stored,
    missing_agent,
    validate_id,
)


class TurnKey(NamedTuple):
    """A client's key for its turn (its Idempotency-Key), with the SHA-256 of the turn's prompt."""

    key: str
    prompt_sha256: str

    @classmethod
    def of(cls, key: str, prompt: str) -> "TurnKey":
        return cls(key, hashlib.sha256(prompt.encode()).hexdigest())


@dataclass(eq=False)
class UnitOfWork(SessionRepository):
    """One turn of one agent in one session, as the SDK sees its session repository.

    Reads of the session, the agent and its messages from `offset` on are answered from what the
    turn store read; writes are kept, as copies, until it saves them. Anything else
    (another session or agent, messages the agent's conversation manager had removed) is outside
    the turn: SessionException.
    """

    session: Session
    agent_id: str
    lease_id: str
    principal: str
    # time.monotonic() until which the lease cannot have expired: the turn store's last take or
    # renewal of it was sent at that time minus the lease's length, and ran after.
    lease_live_until: float = 0.0
    # Whether the turn's lease created the session (its first turn), and then how many sessions
    # its principal keeps, this one included (for MAX_SESSIONS_PER_PRINCIPAL).
    new_session: bool = False
    principal_sessions: int = 0
    agent: SessionAgent | None = None
    # The agent's messages from `offset` on, by id, in order; the turn's new ones are appended.
    messages: dict[int, SessionMessage] = field(default_factory=dict)
    offset: int = 0
    # The agent's JSON columns as last stored (their text), to tell a change from a repeated write.
    stored_state: str | None = field(default=None, repr=False)
    agent_created: bool = False
    agent_changed: bool = False
    new_message_ids: list[int] = field(default_factory=list)
    updated_message_ids: set[int] = field(default_factory=set)
    # Its client's key for the turn (an Idempotency-Key), stored with it.
    turn_key: TurnKey | None = None

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def restore(self, agent: SessionAgent, window: Iterable[SessionMessage]) -> None:
        """Set the agent as stored, and its messages from the offset its state gives."""
        self.agent, self.stored_state = agent, dumps_json(agent_values(agent))
        self.offset = restored_offset(agent)
        self.messages = {message.message_id: message for message in window}

    # The Strands SessionRepository interface

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        self._check(session.session_id)
        raise AlreadyExistsError(f"session {session.session_id!r} already exists")

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        self._check(session_id)
        return self.session

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        self._check(session_id, session_agent.agent_id)
        if self.agent is not None:
            message = f"agent {self.agent_id!r} already exists in session {session_id!r}"
            raise AlreadyExistsError(message)
        self.agent, self.agent_created = session_agent, True
        self.stored_state = dumps_json(agent_values(session_agent))

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        self._check(session_id, agent_id)
        return self.agent

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        self._check(session_id, session_agent.agent_id)
        if self.agent is None:
            raise NotFoundError(missing_agent(session_id, self.agent_id))
        # The agent's columns as they would be written: 1, 1.0 and true differ, as do key orders.
        state = dumps_json(agent_values(session_agent))
        # The SDK writes the agent after every message; most writes change nothing.
        if state != self.stored_state:
            # Created when it was first written, as FileSessionManager keeps it: each write of
            # the SDK's says now.
            self.agent = replace(session_agent, created_at=self.agent.created_at)
            self.stored_state, self.agent_changed = state, True

    def create_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        self._check(session_id, agent_id)
        message_id = session_message.message_id
        if self.agent is None:
            raise NotFoundError(missing_agent(session_id, agent_id))
        if message_id in self.messages or message_id < self.offset:
            raise AlreadyExistsError(f"message {message_id} already exists for agent {agent_id!r}")
        self.messages[message_id] = _copy(session_message)
        self.new_message_ids.append(message_id)

    def read_message(
        self, session_id: str, agent_id: str, message_id: int, **kwargs: Any
    ) -> SessionMessage | None:
        self._check(session_id, agent_id, message_id)
        return self.messages.get(message_id)

    def update_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        message_id = session_message.message_id
        self._check(session_id, agent_id, message_id)
        if message_id not in self.messages:
            raise NotFoundError(f"message {message_id} does not exist for agent {agent_id!r}")
        self.messages[message_id] = _copy(session_message)
        if message_id not in self.new_message_ids:
            self.updated_message_ids.add(message_id)

    def list_messages(
        self,
        session_id: str,
        agent_id: str,
        limit: int | None = None,
        offset: int = 0,
        **kwargs: Any,
    ) -> list[SessionMessage]:
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("offset and limit must not be negative")
        self._check(session_id, agent_id, offset)
        listed = [message for message in self.messages.values() if message.message_id >= offset]
        return listed if limit is None else listed[:limit]

    def _check(
        self, session_id: str, agent_id: str | None = None, message_id: int | None = None
    ) -> None:
        """Refuse what lies outside the turn."""
        validate_id("session id", session_id)
        if session_id != self.session_id or agent_id not in (None, self.agent_id):
            raise SessionException(
                f"this turn reads and writes agent {self.agent_id!r} of session "
                f"{self.session_id!r} only, not agent {agent_id!r} of session {session_id!r}"
            )
        if message_id is not None and message_id < self.offset:
            raise SessionException(
                f"this turn holds the messages of agent {self.agent_id!r} from {self.offset} on, "
                f"which its conversation manager keeps; message {message_id} was removed before"
            )


def _copy(session_message: SessionMessage) -> SessionMessage:
    """The message as stored now, whatever the SDK later changes in place."""
    return SessionMessage(
        message=as_stored(session_message.message),
        message_id=session_message.message_id,
        redact_message=as_stored(session_message.redact_message),
        created_at=session_message.created_at,
        updated_at=session_message.updated_at,
    )


def restored_offset(agent: SessionAgent) -> int:
    """Where the SDK lists the agent's messages from: what its conversation manager removed."""
    removed = agent.conversation_manager_state.get("removed_message_count", 0)
    return removed if isinstance(removed, int) and removed >= 0 else 0
