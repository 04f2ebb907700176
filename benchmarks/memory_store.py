"""The cheapest stores possible, for comparison: what the SDK and the service cost without one.

`MemorySessionRepository` keeps the SDK's objects themselves, with no serialisation and no I/O:
restoring from it costs what the SDK itself costs. `MemoryTurnStore` hands the service's turns
the same `UnitOfWork` the real turn store does, from dictionaries, so that a side-by-side run
isolates what the database adds to a turn.
"""

import secrets
from collections import Counter
from collections.abc import Iterable
from typing import Any

from my_agent.session_store import SessionBusyError, UnitOfWork
from strands.session import SessionRepository
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

# A session's key: its principal's, then its id.
Key = tuple[str, str]


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


class MemoryTurnStore:
    """The turn store's contract, in this process's memory: sessions keyed by (principal, session
    id), as in the database."""

    def __init__(self) -> None:
        self.sessions: dict[Key, Session] = {}
        self.agents: dict[Key, SessionAgent | None] = {}
        self.messages: dict[Key, dict[int, SessionMessage]] = {}
        self.leases: dict[Key, str] = {}
        self.sessions_kept: Counter[str] = Counter()

    async def begin(
        self, session_id: str, agent_id: str, principal: str, turn_key: object = None
    ) -> UnitOfWork:
        """As the template's; `turn_key`, a client's Idempotency-Key, is not kept: the benchmarks
        send none (and revisions before it pass none)."""
        key = principal, session_id
        if key in self.leases:
            raise SessionBusyError(session_id)
        lease_id = self.leases[key] = secrets.token_hex(16)
        new_session = key not in self.sessions
        if new_session:
            self.sessions[key] = Session(session_id, SessionType.AGENT)
            self.sessions_kept[principal] += 1
        work = UnitOfWork(self.sessions[key], agent_id, lease_id, principal, new_session)
        work.principal_sessions = self.sessions_kept[principal]
        if (agent := self.agents.get(key)) is not None:
            work.restore(agent, self.messages[key].values())
        return work

    async def save(self, work: UnitOfWork) -> None:
        key = work.principal, work.session_id
        self.agents[key] = work.agent
        self.messages[key] = work.messages
        del self.leases[key]

    async def give_up(self, work: UnitOfWork) -> None:
        self.leases.pop((work.principal, work.session_id), None)

    async def discard(self, work: UnitOfWork) -> None:
        key = work.principal, work.session_id
        del self.sessions[key], self.leases[key]
        self.sessions_kept[work.principal] -= 1

    async def renew(self, works: Iterable[UnitOfWork]) -> dict[str, None]:
        """Every lease is held: in one process nothing takes it. The turn stores of the template
        return the leases lost, by id, with why; those before 2026-11-27, the ids still held.
        The held ids, each lost for no reason, read right to both (`--against` runs either)."""
        return dict.fromkeys(work.lease_id for work in works)
