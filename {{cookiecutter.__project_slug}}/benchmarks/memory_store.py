"""The cheapest possible session store, for comparison: it keeps the SDK's objects themselves in
memory, with no serialisation and no I/O. Restoring from it costs what the SDK itself costs."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from strands.session import SessionRepository
from strands.types.session import Session, SessionAgent, SessionMessage


class MemorySessionRepository(SessionRepository):
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.agents: dict[tuple[str, str], SessionAgent] = {}
        self.messages: dict[tuple[str, str], list[SessionMessage]] = {}

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        self.sessions[session.session_id] = session
        return session

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        return self.sessions.get(session_id)

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        self.agents[session_id, session_agent.agent_id] = session_agent
        self.messages[session_id, session_agent.agent_id] = []

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        return self.agents.get((session_id, agent_id))

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        self.agents[session_id, session_agent.agent_id] = session_agent

    def create_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        self.messages[session_id, agent_id].append(session_message)

    def read_message(
        self, session_id: str, agent_id: str, message_id: int, **kwargs: Any
    ) -> SessionMessage | None:
        stored = self.messages.get((session_id, agent_id), [])
        return stored[message_id] if message_id < len(stored) else None

    def update_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        self.messages[session_id, agent_id][session_message.message_id] = session_message

    def list_messages(
        self,
        session_id: str,
        agent_id: str,
        limit: int | None = None,
        offset: int = 0,
        **kwargs: Any,
    ) -> list[SessionMessage]:
        stored = self.messages.get((session_id, agent_id), [])
        return stored[offset : None if limit is None else offset + limit]

    # What the service's turn runner calls beyond the Strands interface.

    def discard_unfinished_turn(self, session_id: str, agent_id: str) -> int:
        return 0  # turns on this store never fail halfway

    @contextmanager
    def turn(self, session_id: str, agent_id: str, connection: object = None) -> Iterator[None]:
        yield  # no connections here, and turns on this store never fail halfway
