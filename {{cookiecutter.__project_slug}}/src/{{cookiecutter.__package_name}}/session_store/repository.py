"""A Strands `SessionRepository` over SQLAlchemy: conversations durable in PostgreSQL or SQLite."""

import json
from base64 import b64decode, urlsafe_b64encode
from copy import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    RowMapping,
    Table,
    delete,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable
from strands.session import SessionRepository
from strands.types.session import (
    Session,
    SessionAgent,
    SessionMessage,
    SessionType,
    encode_bytes_values,
)

from .leases import lease_is_free
from .records import (
    LOCAL_PRINCIPAL,
    MESSAGE_FIELDS,
    AlreadyExistsError,
    NotFoundError,
    SessionBusyError,
    agent_record,
    agent_row,
    agent_values,
    message_record,
    message_values,
    missing_agent,
    session_record,
    timestamp,
    validate_id,
    validate_message_id,
)
from .tables import agents, messages, multi_agents, sessions

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase


class InvalidCursorError(ValueError):
    """A pagination cursor that this store did not hand out."""


@dataclass(frozen=True)
class SessionPage:
    """One page of sessions, newest first; pass `next_cursor` back for the next page."""

    sessions: list[Session]
    next_cursor: str | None


class SqlSessionRepository(SessionRepository):
    """Sessions, agents, messages and multi-agent state in four tables (see tables.py).

    Every method is one SQL statement in autocommit mode, except `update_multi_agent`, which reads
    before it writes. Creating a record that exists raises AlreadyExistsError (INSERT ... ON
    CONFLICT DO NOTHING: concurrent creators never see an IntegrityError); updating or deleting
    one that does not exist raises NotFoundError; reads return None. Both errors are
    SessionExceptions, as the Strands SDK expects. (The service's turns use a TurnStore.)

    A repository acts for one principal: every statement reads and writes that principal's
    sessions and what they hold, keyed by the principal first (tables.py); another principal's
    sessions, whatever their ids, are as if they did not exist. `for_principal` gives the same
    store for another principal.
    """

    def __init__(self, engine: Engine, principal: str = LOCAL_PRINCIPAL) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._lease_is_free = lease_is_free(engine.dialect)
        self.principal = principal

    def for_principal(self, principal: str) -> "SqlSessionRepository":
        """The same store (engine and all), acting for `principal`."""
        scoped = copy(self)
        scoped.principal = principal
        return scoped

    # Sessions

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        session_id = validate_id("session id", session.session_id)
        values = {
            "principal": self.principal,
            "session_id": session_id,
            "session_type": SessionType(session.session_type).value,
            "created_at": timestamp(session.created_at),
            "updated_at": timestamp(session.updated_at),
        }
        self._insert_new(sessions, values, duplicate=f"session {session_id!r} already exists")
        return session

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        row = self._first(select(sessions).where(*self._key(sessions, session_id)))
        return session_record(row) if row else None

    def delete_session(self, session_id: str) -> None:
        """Delete a session with its agents, messages and multi-agent state.

        A session whose turn is running (its lease is live) is not deleted: SessionBusyError.
        """
        statement = delete(sessions).where(*self._key(sessions, session_id), self._lease_is_free)
        with self._engine.connect() as connection:
            if connection.execute(statement).rowcount:
                return
        if self.read_session(session_id) is None:
            raise NotFoundError(f"session {session_id!r} does not exist")
        raise SessionBusyError(session_id)

    def list_sessions(self, limit: int = 20, cursor: str | None = None) -> SessionPage:
        """The principal's sessions newest first, `limit` at a time; `cursor` continues where a
        page ended.

        The cursor holds the (created_at, session_id) of the last session of the previous page, so
        every page is an index range scan however deep it is (no OFFSET).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        order = (sessions.c.created_at.desc(), sessions.c.session_id.desc())
        query = (
            select(sessions)
            .where(sessions.c.principal == self.principal)
            .order_by(*order)
            .limit(limit + 1)
        )
        if cursor is not None:
            created_at, session_id = _decode_cursor(cursor)
            query = query.where(
                tuple_(sessions.c.created_at, sessions.c.session_id) < (created_at, session_id)
            )
        with self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        page = [session_record(row) for row in rows[:limit]]
        next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return SessionPage(page, next_cursor)

    def count_sessions(self) -> int:
        """How many sessions the principal keeps."""
        query = select(func.count()).where(sessions.c.principal == self.principal)
        with self._engine.connect() as connection:
            return connection.execute(query).scalar_one()

    # Agents

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        session_id = validate_id("session id", session_id)
        agent_id = validate_id("agent id", session_agent.agent_id)
        self._insert_new(
            agents,
            agent_row(self.principal, session_id, session_agent),
            duplicate=f"agent {agent_id!r} already exists in session {session_id!r}",
            missing=f"session {session_id!r} does not exist",
        )

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        row = self._first(select(agents).where(*self._key(agents, session_id, agent_id)))
        return agent_record(row) if row else None

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        agent_id = session_agent.agent_id
        statement = (
            update(agents)
            .where(*self._key(agents, session_id, agent_id))
            .values(**agent_values(session_agent), updated_at=timestamp(session_agent.updated_at))
        )
        self._change_one(statement, missing=missing_agent(session_id, agent_id))

    def list_agents(self, session_id: str) -> list[SessionAgent]:
        """The session's agents, in the order they were created."""
        query = (
            select(agents)
            .where(*self._key(agents, session_id))
            .order_by(agents.c.created_at, agents.c.agent_id)
        )
        with self._engine.connect() as connection:
            return [agent_record(row) for row in connection.execute(query).mappings()]

    # Messages

    def create_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        session_id = validate_id("session id", session_id)
        agent_id = validate_id("agent id", agent_id)
        message_id = validate_message_id(session_message.message_id)
        self._insert_new(
            messages,
            message_values(self.principal, session_id, agent_id, session_message),
            duplicate=f"message {message_id} already exists for agent {agent_id!r}",
            missing=missing_agent(session_id, agent_id),
        )

    def read_message(
        self, session_id: str, agent_id: str, message_id: int, **kwargs: Any
    ) -> SessionMessage | None:
        validate_message_id(message_id)
        query = select(messages).where(
            *self._key(messages, session_id, agent_id), messages.c.message_id == message_id
        )
        row = self._first(query)
        return message_record(row) if row else None

    def update_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        message_id = validate_message_id(session_message.message_id)
        statement = (
            update(messages)
            .where(*self._key(messages, session_id, agent_id), messages.c.message_id == message_id)
            .values(
                message=session_message.message,
                redact_message=session_message.redact_message,
                updated_at=timestamp(session_message.updated_at),
            )
        )
        self._change_one(
            statement, missing=f"message {message_id} does not exist for agent {agent_id!r}"
        )

    def list_messages(
        self,
        session_id: str,
        agent_id: str,
        limit: int | None = None,
        offset: int = 0,
        **kwargs: Any,
    ) -> list[SessionMessage]:
        """The agent's messages from the `offset`-th on, in order; all of them when `limit` is None.

        Message ids are the messages' positions in the agent's conversation: the SDK numbers them
        0, 1, 2, ... and counts the messages its conversation manager removed in the same
        positions (a message whose write failed keeps its number in the agent, so the stored ids
        may skip it, and counting stored rows instead would drop one message too many). The
        offset is then a primary-key range scan: restoring a conversation whose window trimmed
        99,960 of 100,000 messages reads 40 rows.
        """
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("offset and limit must not be negative")
        query = (
            select(*(messages.c[name] for name in MESSAGE_FIELDS))
            .where(*self._key(messages, session_id, agent_id), messages.c.message_id >= offset)
            .order_by(messages.c.message_id)
            .limit(limit)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()  # one fetch, not one per row
        return [message_record(row) for row in rows]

    def message_counts(self, session_id: str) -> dict[str, int]:
        """How many messages each agent of the session holds, by agent id."""
        query = (
            select(messages.c.agent_id, func.count().label("count"))
            .where(*self._key(messages, session_id))
            .group_by(messages.c.agent_id)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).mappings()
            return {row["agent_id"]: row["count"] for row in rows}

    # Multi-agent orchestrators (Graph, Swarm)

    def create_multi_agent(
        self, session_id: str, multi_agent: "MultiAgentBase", **kwargs: Any
    ) -> None:
        session_id = validate_id("session id", session_id)
        multi_agent_id = validate_id("multi-agent id", multi_agent.id)
        now = datetime.now(UTC)
        values = {
            "principal": self.principal,
            "session_id": session_id,
            "multi_agent_id": multi_agent_id,
            "state": multi_agent.serialize_state(),
            "created_at": now,
            "updated_at": now,
        }
        self._insert_new(
            multi_agents,
            values,
            duplicate=f"multi-agent {multi_agent_id!r} already exists in session {session_id!r}",
            missing=f"session {session_id!r} does not exist",
        )

    def read_multi_agent(
        self, session_id: str, multi_agent_id: str, **kwargs: Any
    ) -> dict[str, Any] | None:
        row = self._first(
            select(multi_agents.c.state).where(*self._multi_agent_key(session_id, multi_agent_id))
        )
        # As the orchestrator serialised it, bytes markers included: its deserialize_state decodes.
        return encode_bytes_values(row["state"]) if row else None

    def update_multi_agent(
        self, session_id: str, multi_agent: "MultiAgentBase", **kwargs: Any
    ) -> None:
        key = self._multi_agent_key(session_id, multi_agent.id)
        with self._engine.begin() as connection:
            # Looked up first, as the SDK's own stores do: updating a record that does not exist
            # is NotFoundError whatever the orchestrator's state holds.
            if connection.execute(select(multi_agents.c.session_id).where(*key)).first() is None:
                message = f"multi-agent {multi_agent.id!r} does not exist in session {session_id!r}"
                raise NotFoundError(message)
            state = multi_agent.serialize_state()
            connection.execute(
                update(multi_agents).where(*key).values(state=state, updated_at=datetime.now(UTC))
            )

    # Helpers

    def _first(self, query: Executable) -> RowMapping | None:
        with self._engine.connect() as connection:
            return connection.execute(query).mappings().first()

    def _key(
        self, table: Table, session_id: str, agent_id: str | None = None
    ) -> tuple[ColumnElement[bool], ...]:
        """The conditions that pick this principal's session, or one of its agents, in `table`."""
        session = validate_id("session id", session_id)
        key = table.c.principal == self.principal, table.c.session_id == session
        if agent_id is None:
            return key
        return *key, table.c.agent_id == validate_id("agent id", agent_id)

    def _multi_agent_key(self, session_id: str, multi_agent_id: str) -> tuple:
        multi_agent = validate_id("multi-agent id", multi_agent_id)
        return *self._key(multi_agents, session_id), multi_agents.c.multi_agent_id == multi_agent

    def _insert_new(
        self, table: Table, values: dict[str, Any], *, duplicate: str, missing: str = ""
    ) -> None:
        """Insert one row, keyed by this principal; a duplicate key inserts nothing."""
        statement = (
            self._insert(table)
            .values(values)
            .on_conflict_do_nothing()
            .returning(*table.primary_key.columns)
        )
        try:
            inserted = self._first(statement)
        except IntegrityError as error:
            # The only constraint left to fail is the foreign key: this principal has no such
            # parent record.
            raise NotFoundError(missing) from error
        if inserted is None:
            raise AlreadyExistsError(duplicate)

    def _change_one(self, statement: Executable, *, missing: str) -> None:
        with self._engine.connect() as connection:
            if not connection.execute(statement).rowcount:
                raise NotFoundError(missing)


def _encode_cursor(row: RowMapping) -> str:
    raw = json.dumps([row["created_at"].isoformat(), row["session_id"]]).encode()
    return urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        # Strictly: by default any character outside the alphabet would be skipped.
        raw = b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        created_at, session_id = json.loads(raw)
        # In UTC, as stored: a time that UTC cannot hold is no cursor of this store.
        return timestamp(created_at).astimezone(UTC), validate_id("session id", session_id)
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        message = f"invalid cursor {cursor!r}: pass back a next_cursor as it was given"
        raise InvalidCursorError(message) from error
