"""A Strands `SessionRepository` over SQLAlchemy: conversations durable in PostgreSQL or SQLite."""

import json
import logging
import re
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from psycopg import Cursor, capabilities
from psycopg import Error as DriverError
from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Row,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    func,
    literal_column,
    null,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Compiled, Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import Executable
from sqlalchemy.sql.functions import FunctionElement
from strands.session import SessionRepository
from strands.types.exceptions import SessionException
from strands.types.session import (
    Session,
    SessionAgent,
    SessionMessage,
    SessionType,
    decode_bytes_values,
)

from ..database import dumps_json
from .tables import ID_LENGTH, agents, iso_timestamp, messages, multi_agents, sessions

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase


class NotFoundError(SessionException):
    """The session, agent, message or multi-agent state does not exist."""


class AlreadyExistsError(SessionException):
    """A record with that id exists already."""


class InvalidIdError(SessionException, ValueError):
    """An id the store refuses: it would be ambiguous in logs, URLs or file names."""


class InvalidCursorError(ValueError):
    """A pagination cursor that this store did not hand out."""


ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
ID_RULE = f"1 to {ID_LENGTH} letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
BYTES_MARKER = '"__bytes_encoded__"'


def validate_id(kind: str, value: str) -> str:
    """Return `value` if it is a valid session, agent or multi-agent id; else InvalidIdError."""
    if not isinstance(value, str) or len(value) > ID_LENGTH or not ID_PATTERN.fullmatch(value):
        raise InvalidIdError(f"invalid {kind} {value!r}: use {ID_RULE}")
    return value


@dataclass(frozen=True)
class SessionPage:
    """One page of sessions, newest first; pass `next_cursor` back for the next page."""

    sessions: list[Session]
    next_cursor: str | None


@dataclass(frozen=True)
class MessageActivity:
    """An agent's messages: how many there are, and when the newest was last written."""

    count: int
    last_written: datetime


def _timestamp(iso: str) -> datetime:
    moment = datetime.fromisoformat(iso)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _loads(text: str | None) -> Any:
    """Decode JSON read as text; walk it for bytes markers only when there are any."""
    if text is None:
        return None
    value = json.loads(text)
    return decode_bytes_values(value) if BYTES_MARKER in text else value


def _as_text(column: Any) -> Any:
    # Reading JSON as text and decoding it here is several times faster than letting psycopg
    # decode JSONB into Python objects itself.
    return cast(column, Text).label(column.name)


_MESSAGE_COLUMNS = (
    messages.c.message_id,
    _as_text(messages.c.message),
    _as_text(messages.c.redact_message),
    iso_timestamp(messages.c.created_at).label("created_at"),
    # Messages are seldom updated after they are created (a redaction): for the others the
    # database formats one timestamp, not two (each costs ~6 ms per 10,000 rows on PostgreSQL).
    case(
        (messages.c.updated_at != messages.c.created_at, iso_timestamp(messages.c.updated_at))
    ).label("updated_at"),
)
_AGENT_COLUMNS = (
    agents.c.agent_id,
    _as_text(agents.c.state),
    _as_text(agents.c.conversation_manager_state),
    _as_text(agents.c.internal_state),
    iso_timestamp(agents.c.created_at).label("created_at"),
    iso_timestamp(agents.c.updated_at).label("updated_at"),
)


# The statements every turn runs, built once: a statement built per call costs about a third of
# a single-row statement's time on loopback PostgreSQL.
_READ_SESSION = select(sessions).where(sessions.c.session_id == bindparam("key_session"))
_AGENT_KEY = (
    agents.c.session_id == bindparam("key_session"),
    agents.c.agent_id == bindparam("key_agent"),
)
_READ_AGENT = select(*_AGENT_COLUMNS).where(*_AGENT_KEY)
_UPDATE_AGENT = update(agents).where(*_AGENT_KEY)
_LIST_MESSAGES = (
    select(*_MESSAGE_COLUMNS)
    .where(
        messages.c.session_id == bindparam("key_session"),
        messages.c.agent_id == bindparam("key_agent"),
        messages.c.message_id >= bindparam("offset"),
    )
    .order_by(messages.c.message_id)
)
_LIST_SOME_MESSAGES = _LIST_MESSAGES.limit(bindparam("limit"))
# A long read's rows arrive from psycopg this many at a time (_driver_rows).
_STREAM_CHUNK = 250


class _restored_offset(FunctionElement[int]):
    """The offset the SDK restores an agent's messages from: the `removed_message_count` that its
    conversation manager stored, or NULL unless that is a whole number a message id can hold."""

    type = Integer()
    inherit_cache = True


@compiles(_restored_offset, "postgresql")
def _restored_offset_postgresql(element: _restored_offset, compiler: Any, **kw: Any) -> str:
    count = f"({compiler.process(element.clauses, **kw)} -> 'removed_message_count')"
    whole = "$ ? (@ == @.floor() && @ >= 0 && @ <= 2147483647)"
    return (
        f"CASE WHEN jsonb_typeof({count}) = 'number' "
        f"THEN jsonb_path_query_first({count}, '{whole}')::integer END"
    )


@compiles(_restored_offset, "sqlite")
def _restored_offset_sqlite(element: _restored_offset, compiler: Any, **kw: Any) -> str:
    count = f"{compiler.process(element.clauses, **kw)}, '$.removed_message_count'"
    return (
        f"CASE WHEN json_type({count}) = 'integer' AND json_extract({count}) >= 0 "
        f"THEN json_extract({count}) END"
    )


# The offset the agent's messages are restored from, read on its own (PostgreSQL's InitPlan):
# a bound to range-scan the primary key with.
_OFFSET = (
    select(_restored_offset(agents.c.conversation_manager_state))
    .where(*_AGENT_KEY)
    .correlate(None)
    .scalar_subquery()
)
_TURN_HEAD_COLUMNS = (
    sessions.c.session_type,
    iso_timestamp(sessions.c.created_at),
    iso_timestamp(sessions.c.updated_at),
    *_AGENT_COLUMNS,
    # The agent's newest message tells whether the previous turn finished.
    select(_as_text(messages.c.message))
    .where(
        messages.c.session_id == bindparam("key_session"),
        messages.c.agent_id == bindparam("key_agent"),
    )
    .order_by(messages.c.message_id.desc())
    .limit(1)
    .scalar_subquery(),
    _OFFSET,
)
# What a turn reads to restore its agent, in one statement and one round trip: a head row with the
# session, the agent and its newest message, and the messages the SDK will restore, read ahead
# (_Turn.take_window). Each row leaves the other kind's columns empty. In no promised order: with
# an ORDER BY, PostgreSQL sorts every row before it sends the first; without, it sends them as it
# reads them, in the primary key's order, which Python's sort then checks in linear time.
_READ_TURN = union_all(
    select(
        literal_column("1").label("is_head"),
        *_TURN_HEAD_COLUMNS,
        *(null().label(column.name) for column in _MESSAGE_COLUMNS),
    )
    .select_from(
        sessions.outerjoin(
            agents,
            and_(
                agents.c.session_id == sessions.c.session_id,
                agents.c.agent_id == bindparam("key_agent"),
            ),
        )
    )
    .where(sessions.c.session_id == bindparam("key_session")),
    select(literal_column("0"), *(null() for _ in _TURN_HEAD_COLUMNS), *_MESSAGE_COLUMNS).where(
        messages.c.session_id == bindparam("key_session"),
        messages.c.agent_id == bindparam("key_agent"),
        messages.c.message_id >= _OFFSET,
    ),
)
# Where a row of _READ_TURN has its session and agent, and where its message.
_TURN_HEAD = slice(1, 1 + len(_TURN_HEAD_COLUMNS))
_RESTORED_AT = _TURN_HEAD.stop


# The writes a turn held back (SqlSessionRepository.turn), in one statement on PostgreSQL: the
# messages travel as one JSON array, unpacked into rows by jsonb_to_recordset, and the agent
# update runs in the same statement when there is one.
_HELD_MESSAGES = (
    func.jsonb_to_recordset(bindparam("held_messages", type_=JSONB))
    .table_valued(*(column(c.name, c.type) for c in messages.c))
    .render_derived(name="held", with_types=True)
)
_INSERT_HELD_MESSAGES = (
    postgresql.insert(messages)
    .from_select(list(messages.c.keys()), select(_HELD_MESSAGES))
    .on_conflict_do_nothing()
    .execution_options(preserve_rowcount=True)
)
_NEW_MESSAGES = _INSERT_HELD_MESSAGES.returning(messages.c.message_id).cte("new_messages")
_INSERT_HELD_MESSAGES_AND_UPDATE_AGENT = _UPDATE_AGENT.add_cte(_NEW_MESSAGES).returning(
    select(func.count()).select_from(_NEW_MESSAGES).scalar_subquery()
)


def _session(row: Row) -> Session:
    return Session(
        session_id=row.session_id,
        session_type=SessionType(row.session_type),
        created_at=row.created_at.isoformat(),
        updated_at=row.updated_at.isoformat(),
    )


def _session_agent(row: Sequence[Any]) -> SessionAgent:
    """An agent from its columns, in _AGENT_COLUMNS order."""
    agent_id, state, conversation_manager_state, internal_state, created_at, updated_at = row
    return SessionAgent(
        agent_id,
        _loads(state),
        _loads(conversation_manager_state),
        _loads(internal_state),
        created_at,
        updated_at,
    )


def _session_message(row: Row) -> SessionMessage:
    # Built directly: SessionMessage.from_dict inspects the class signature for every key, which
    # costs ~50x more per message and dominates the restore of a long conversation. The row is
    # unpacked as a tuple (in _MESSAGE_COLUMNS order), cheaper than attribute lookups by name.
    message_id, message, redact_message, created_at, updated_at = row
    return SessionMessage(
        _loads(message), message_id, _loads(redact_message), created_at, updated_at or created_at
    )


@dataclass
class _Turn:
    """A turn in progress (SqlSessionRepository.turn): its connection, and its session and agent
    as stored, which only this turn can change while it holds the session's lock."""

    repository: "SqlSessionRepository"
    connection: Connection | None
    session_id: str
    agent_id: str
    loaded: bool = False
    session: Session | None = None
    agent: SessionAgent | None = None
    # The agent's state as stored, decoded apart from the SDK's objects (which it changes).
    stored_state: dict[str, Any] | None = field(default=None, repr=False)
    # Writes held back until the turn runs another statement or ends: the values of each
    # message's insert, and of the agent's latest update.
    held_messages: list[dict[str, Any]] = field(default_factory=list, repr=False)
    held_agent_update: dict[str, Any] | None = field(default=None, repr=False)
    # The messages read ahead with the agent, and the offset they start from, until the SDK
    # lists them or the turn runs another statement.
    window: list[SessionMessage] | None = field(default=None, repr=False)
    window_offset: int | None = None

    @property
    def key(self) -> dict[str, str]:
        """The bound values of the statements keyed on the turn's session and agent."""
        return {"key_session": self.session_id, "key_agent": self.agent_id}

    @property
    def holds_writes(self) -> bool:
        return bool(self.held_messages) or self.held_agent_update is not None

    def remember(self, session_agent: SessionAgent, state: dict[str, Any] | None = None) -> None:
        """Record `session_agent` as stored; `state` is its _stored_state, if already made."""
        self.agent = session_agent
        self.stored_state = _stored_state(session_agent) if state is None else state

    def forget(self) -> None:
        self.loaded, self.session, self.agent, self.stored_state = False, None, None, None
        self.window = None

    def take_window(self, offset: int, limit: int | None) -> list[SessionMessage] | None:
        """The messages read ahead, if they are what listing from `offset` now returns; once."""
        window, self.window = self.window, None
        if window is None or limit is not None or self.holds_writes or offset != self.window_offset:
            return None
        return window


_current_turn: ContextVar[_Turn | None] = ContextVar("current_turn", default=None)


def _as_stored(value: Any) -> Any:
    """`value` as it reads back from a JSON column: a copy of its own, as it is now."""
    return json.loads(dumps_json(value))


def _agent_state(session_agent: SessionAgent) -> dict[str, Any]:
    """The values of the agent's JSON columns."""
    return {
        "state": session_agent.state,
        "conversation_manager_state": session_agent.conversation_manager_state,
        "internal_state": session_agent._internal_state,
    }


def _stored_state(session_agent: SessionAgent) -> dict[str, Any]:
    """The agent's JSON columns as stored: a copy of its own, as it is now."""
    return _as_stored(_agent_state(session_agent))


def _missing_agent(session_id: str, agent_id: str) -> str:
    return f"agent {agent_id!r} does not exist in session {session_id!r}"


class SqlSessionRepository(SessionRepository):
    """Sessions, agents, messages and multi-agent state in four tables (see tables.py).

    Every method of the Strands interface is at most one SQL statement run in autocommit mode:
    one round trip to the database, with no BEGIN and COMMIT around it (within a `turn`, some
    need none, and writes are held and written together). Creating a record that exists raises
    AlreadyExistsError (INSERT ... ON CONFLICT DO NOTHING, so concurrent creators never see an
    IntegrityError); updating or deleting one that does not exist raises NotFoundError; reads
    return None. Both errors are SessionExceptions, as the Strands SDK expects.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._postgresql = engine.dialect.name == "postgresql"
        # Streaming rows in chunks needs psycopg 3 on libpq 17 or newer (see _driver_rows).
        self._streams_rows = (
            engine.dialect.driver == "psycopg" and capabilities.has_stream_chunked()
        )
        insert = postgresql.insert if self._postgresql else sqlite.insert
        # Built once and given their values at execution: a statement built per call costs a
        # third of a message insert's time on loopback PostgreSQL.
        self._inserts = {
            table: insert(table)
            .on_conflict_do_nothing()
            # SQLAlchemy reports an INSERT's rowcount only when asked: 0 means it hit a conflict.
            .execution_options(preserve_rowcount=True)
            for table in (sessions, agents, messages, multi_agents)
        }

    @contextmanager
    def turn(
        self, session_id: str, agent_id: str, connection: Connection | None = None
    ) -> Iterator[None]:
        """Scope one turn of `agent_id` in `session_id`; the caller holds the session's lock.

        When the SDK first reads the session, the agent or its messages, one statement reads
        the session, the agent, its newest message and the messages the SDK will restore (from
        the offset its conversation manager stored); if the newest message does not end a turn,
        what the earlier turn left unfinished is discarded (discard_unfinished_turn). Within the
        scope every call runs on `connection` (an autocommit connection to the same database:
        the one holding the lock) rather than on a pooled one of its own, and the SDK's reads of
        this session and agent are answered from what the turn has read or written.

        The agent's new messages and state updates are held back until the turn runs any other
        statement or ends, and then written together: in one statement and one commit on
        PostgreSQL, where each statement is a round trip and each commit a flush of the
        write-ahead log. An update that changes nothing is skipped. A text turn so writes once
        instead of three times, and a service turn runs 4 statements instead of 7. Holding
        loses nothing that would have been kept: what a turn that never ends had written is an
        unfinished turn, which the next one discards anyway. The lock makes it safe: nothing
        else writes the session meanwhile.
        """
        turn = _Turn(self, connection, *self._ids(session_id, agent_id))
        token = _current_turn.set(turn)
        try:
            yield
        except BaseException:
            # Written as they would have been without holding them; if that fails too, the
            # turn's own error is the one to report, and the next turn discards what is left.
            with suppress(Exception):
                self._end(turn)
            raise
        else:
            self._end(turn)
        finally:
            _current_turn.reset(token)

    def _end(self, turn: _Turn) -> None:
        """Write what the turn still holds as it ends."""
        if turn.holds_writes:
            with self._turn_connection(turn) as connection:
                self._write_held(turn, connection)

    def _load_turn(self, turn: _Turn) -> None:
        head, window = None, []
        with self._connect() as connection:
            for row in self._driver_rows(connection, _READ_TURN, turn.key):
                if row[0]:  # is_head
                    head = row
                else:
                    window.append(_session_message(row[_RESTORED_AT:]))
        window.sort(key=attrgetter("message_id"))
        turn.loaded = True
        if head is None:
            return
        session_type, created_at, updated_at, *agent, newest_message, offset = head[_TURN_HEAD]
        turn.session = Session(turn.session_id, SessionType(session_type), created_at, updated_at)
        if agent[0] is None:  # no agent_id: the session has no such agent
            return
        turn.remember(_session_agent(agent))
        if newest_message is not None and not _finishes_turn(json.loads(newest_message)):
            self.discard_unfinished_turn(turn.session_id, turn.agent_id)
        elif offset is not None:
            turn.window, turn.window_offset = window, offset

    def _turn_of(self, session_id: str, agent_id: str | None = None) -> _Turn | None:
        """The turn in progress if it is on this session (and agent)."""
        turn = _current_turn.get()
        if turn is None or turn.repository is not self or turn.session_id != session_id:
            return None
        return turn if agent_id in (None, turn.agent_id) else None

    def _loaded_turn(self, session_id: str, agent_id: str | None = None) -> _Turn | None:
        """The turn in progress if it is on this session (and agent), its records read."""
        turn = self._turn_of(session_id, agent_id)
        if turn and not turn.loaded:
            self._load_turn(turn)
        return turn

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        turn = _current_turn.get()
        if turn is None or turn.repository is not self:
            with self._engine.connect() as borrowed:
                yield borrowed
            return
        # The messages read ahead are listed as they were when read, not after this statement.
        turn.window = None
        with self._turn_connection(turn) as connection:
            # What the turn held back goes first: reads see it, and writes stay in order.
            self._write_held(turn, connection)
            yield connection

    def _turn_connection(self, turn: _Turn) -> AbstractContextManager[Connection]:
        if turn.connection is None:
            return self._engine.connect()
        return nullcontext(turn.connection)

    def _write_held(self, turn: _Turn, connection: Connection) -> None:
        """Write the messages and the agent update that the turn held back (see `turn`)."""
        if not turn.holds_writes:
            return
        held_messages, held_agent = turn.held_messages, turn.held_agent_update
        # Taken off the turn first: a write that failed is not tried again.
        turn.held_messages, turn.held_agent_update = [], None
        missing = _missing_agent(turn.session_id, turn.agent_id)
        try:
            inserted, updated = self._insert_and_update(turn, connection, held_messages, held_agent)
        except IntegrityError as error:
            # The only constraint left to fail is the foreign key: the agent is missing.
            raise NotFoundError(missing) from error
        if inserted < len(held_messages):
            ids = [values["message_id"] for values in held_messages]
            raise AlreadyExistsError(f"one of messages {ids} exists for agent {turn.agent_id!r}")
        if held_agent is not None and not updated:
            raise NotFoundError(missing)

    def _insert_and_update(
        self,
        turn: _Turn,
        connection: Connection,
        held_messages: list[dict[str, Any]],
        held_agent: dict[str, Any] | None,
    ) -> tuple[int, int]:
        """Insert the messages, update the agent; return how many rows each changed."""
        if self._postgresql and held_messages:
            values = {"held_messages": [_as_record(message) for message in held_messages]}
            statement = _INSERT_HELD_MESSAGES
            if held_agent is not None:
                values |= {**turn.key, **held_agent}
                statement = _INSERT_HELD_MESSAGES_AND_UPDATE_AGENT
            with self._executed(connection, statement, values) as outcome:
                if held_agent is None:
                    return outcome.rowcount, 0
                row = outcome.fetchone()
            return (0, 0) if row is None else (row[0], 1)
        inserted = updated = 0
        if held_messages:
            inserted = connection.execute(self._inserts[messages], held_messages).rowcount
        if held_agent is not None:
            updated = connection.execute(_UPDATE_AGENT, {**turn.key, **held_agent}).rowcount
        return inserted, updated

    # Sessions

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        session_id = validate_id("session id", session.session_id)
        self._insert_new(
            sessions,
            {
                "session_id": session_id,
                "session_type": SessionType(session.session_type).value,
                "created_at": _timestamp(session.created_at),
                "updated_at": _timestamp(session.updated_at),
            },
            exists=f"session {session_id!r} already exists",
        )
        if turn := self._turn_of(session_id):
            turn.session = session
        return session

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        if turn := self._loaded_turn(session_id):
            return turn.session
        with self._connect() as connection:
            key = {"key_session": validate_id("session id", session_id)}
            row = connection.execute(_READ_SESSION, key).first()
        return _session(row) if row else None

    def delete_session(self, session_id: str) -> None:
        """Delete a session with its agents, messages and multi-agent state."""
        statement = delete(sessions).where(
            sessions.c.session_id == validate_id("session id", session_id)
        )
        self._change_one(statement, missing=f"session {session_id!r} does not exist")
        if turn := self._turn_of(session_id):
            turn.forget()

    def list_sessions(self, limit: int = 20, cursor: str | None = None) -> SessionPage:
        """Sessions newest first, `limit` at a time; `cursor` continues where a page ended.

        The cursor holds the (created_at, session_id) of the last session of the previous page, so
        every page is an index range scan however deep it is (no OFFSET).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        order = (sessions.c.created_at.desc(), sessions.c.session_id.desc())
        query = select(sessions).order_by(*order).limit(limit + 1)
        if cursor is not None:
            created_at, session_id = _decode_cursor(cursor)
            query = query.where(
                tuple_(sessions.c.created_at, sessions.c.session_id) < (created_at, session_id)
            )
        with self._connect() as connection:
            rows = connection.execute(query).all()
        page = [_session(row) for row in rows[:limit]]
        next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return SessionPage(page, next_cursor)

    # Agents

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        session_id = validate_id("session id", session_id)
        agent_id = validate_id("agent id", session_agent.agent_id)
        self._insert_new(
            agents,
            {
                "session_id": session_id,
                "agent_id": agent_id,
                **_agent_state(session_agent),
                "created_at": _timestamp(session_agent.created_at),
                "updated_at": _timestamp(session_agent.updated_at),
            },
            exists=f"agent {agent_id!r} already exists in session {session_id!r}",
            missing=f"session {session_id!r} does not exist",
        )
        if turn := self._turn_of(session_id, agent_id):
            turn.remember(session_agent)

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        if turn := self._loaded_turn(session_id, agent_id):
            return turn.agent
        with self._connect() as connection:
            row = connection.execute(_READ_AGENT, self._agent_params(session_id, agent_id)).first()
        return _session_agent(row) if row else None

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        agent_id = session_agent.agent_id
        updated_at = _timestamp(session_agent.updated_at)
        turn = self._turn_of(session_id, agent_id)
        if turn is None:
            self._change_one(
                _UPDATE_AGENT,
                {
                    **self._agent_params(session_id, agent_id),
                    **_agent_state(session_agent),
                    "updated_at": updated_at,
                },
                missing=_missing_agent(session_id, agent_id),
            )
            return
        state = _stored_state(session_agent)
        # The SDK writes the agent after every message: in a turn, writes that change nothing
        # are skipped. What is held is the copy: the SDK may change what it gave before the
        # turn ends.
        if state != turn.stored_state:
            turn.held_agent_update = {**state, "updated_at": updated_at}
            turn.remember(session_agent, state)

    def list_agents(self, session_id: str) -> list[SessionAgent]:
        """The session's agents, in the order they were created."""
        query = (
            select(*_AGENT_COLUMNS)
            .where(agents.c.session_id == validate_id("session id", session_id))
            .order_by(agents.c.created_at, agents.c.agent_id)
        )
        with self._connect() as connection:
            return [_session_agent(row) for row in connection.execute(query)]

    # Messages

    def create_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        session_id, agent_id = self._ids(session_id, agent_id)
        message_id = session_message.message_id
        values = {
            "session_id": session_id,
            "agent_id": agent_id,
            "message_id": message_id,
            "message": session_message.message,
            "redact_message": session_message.redact_message,
            "created_at": _timestamp(session_message.created_at),
            "updated_at": _timestamp(session_message.updated_at),
        }
        if turn := self._turn_of(session_id, agent_id):
            # A copy, as a write now would store it: the SDK changes some messages in place later
            # in a turn (a conversation manager trimming a tool result) without writing them again.
            content = {"message": values["message"], "redact_message": values["redact_message"]}
            turn.held_messages.append({**values, **_as_stored(content)})
            return
        self._insert_new(
            messages,
            values,
            exists=f"message {message_id} already exists for agent {agent_id!r}",
            missing=_missing_agent(session_id, agent_id),
        )

    def read_message(
        self, session_id: str, agent_id: str, message_id: int, **kwargs: Any
    ) -> SessionMessage | None:
        query = select(*_MESSAGE_COLUMNS).where(
            *self._agent_key(session_id, agent_id, messages), messages.c.message_id == message_id
        )
        row = self._first(query)
        return _session_message(row) if row else None

    def update_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        message_id = session_message.message_id
        statement = (
            update(messages)
            .where(
                *self._agent_key(session_id, agent_id, messages),
                messages.c.message_id == message_id,
            )
            .values(
                message=session_message.message,
                redact_message=session_message.redact_message,
                updated_at=_timestamp(session_message.updated_at),
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

        Message ids are the messages' positions (the SDK numbers them 0, 1, 2, ... and this store
        refuses a duplicate), so the offset is a primary-key range scan: restoring a conversation
        whose window trimmed 99,960 of 100,000 messages reads 40 rows.
        """
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("offset and limit must not be negative")
        # A turn's first look at its messages comes after what an unfinished turn left is gone.
        turn = self._loaded_turn(session_id, agent_id)
        if turn and (window := turn.take_window(offset, limit)) is not None:
            return window
        values = {**self._agent_params(session_id, agent_id), "offset": offset, "limit": limit}
        query = _LIST_MESSAGES if limit is None else _LIST_SOME_MESSAGES
        with self._connect() as connection:
            return [_session_message(row) for row in self._driver_rows(connection, query, values)]

    def discard_unfinished_turn(self, session_id: str, agent_id: str) -> int:
        """Delete the messages after the agent's last finished turn; return how many there were.

        A turn is finished when the assistant has answered without asking for a tool. A turn cut
        short (the model failed, the process died, the database went away) leaves a prompt or a
        tool call behind it, and the next turn would show the model two prompts in a row or a
        tool call without its result.
        """
        key = self._agent_key(session_id, agent_id, messages)
        newest = finished = None
        with self._connect() as connection:
            # Newest first, a few at a time: the newest message is nearly always the finish.
            query = (
                select(messages.c.message_id, _as_text(messages.c.message))
                .where(*key)
                .order_by(messages.c.message_id.desc())
            )
            while finished is None:
                rows = connection.execute(query.limit(8)).all()
                if not rows:
                    break
                newest = rows[0].message_id if newest is None else newest
                finished = next(
                    (row.message_id for row in rows if _finishes_turn(json.loads(row.message))),
                    None,
                )
                query = query.where(messages.c.message_id < rows[-1].message_id)
            if newest is None or finished == newest:
                return 0
            cutoff = -1 if finished is None else finished
            statement = delete(messages).where(*key, messages.c.message_id > cutoff)
            return connection.execute(statement).rowcount

    def count_messages(self, session_id: str, agent_id: str | None = None) -> int:
        """How many messages the session holds, for one agent or for all of them."""
        query = select(func.count()).where(
            messages.c.session_id == validate_id("session id", session_id)
        )
        if agent_id is not None:
            query = query.where(messages.c.agent_id == validate_id("agent id", agent_id))
        with self._connect() as connection:
            return connection.execute(query).scalar_one()

    def message_activity(self, session_id: str) -> dict[str, MessageActivity]:
        """How many messages each agent of the session holds and when it last wrote one, in one
        query."""
        query = (
            select(messages.c.agent_id, func.count(), func.max(messages.c.updated_at))
            .where(messages.c.session_id == validate_id("session id", session_id))
            .group_by(messages.c.agent_id)
        )
        with self._connect() as connection:
            rows = connection.execute(query).all()
        return {agent_id: MessageActivity(count, last) for agent_id, count, last in rows}

    # Multi-agent orchestrators (Graph, Swarm)

    def create_multi_agent(
        self, session_id: str, multi_agent: "MultiAgentBase", **kwargs: Any
    ) -> None:
        session_id = validate_id("session id", session_id)
        multi_agent_id = validate_id("multi-agent id", multi_agent.id)
        now = datetime.now(UTC)
        self._insert_new(
            multi_agents,
            {
                "session_id": session_id,
                "multi_agent_id": multi_agent_id,
                "state": multi_agent.serialize_state(),
                "created_at": now,
                "updated_at": now,
            },
            exists=f"multi-agent {multi_agent_id!r} already exists in session {session_id!r}",
            missing=f"session {session_id!r} does not exist",
        )

    def read_multi_agent(
        self, session_id: str, multi_agent_id: str, **kwargs: Any
    ) -> dict[str, Any] | None:
        query = select(_as_text(multi_agents.c.state)).where(
            *self._multi_agent_key(session_id, multi_agent_id)
        )
        row = self._first(query)
        # Returned as stored, bytes markers included: the orchestrator's deserialize_state decodes.
        return json.loads(row.state) if row else None

    def update_multi_agent(
        self, session_id: str, multi_agent: "MultiAgentBase", **kwargs: Any
    ) -> None:
        statement = (
            update(multi_agents)
            .where(*self._multi_agent_key(session_id, multi_agent.id))
            .values(state=multi_agent.serialize_state(), updated_at=datetime.now(UTC))
        )
        self._change_one(
            statement,
            missing=f"multi-agent {multi_agent.id!r} does not exist in session {session_id!r}",
        )

    # Helpers

    @staticmethod
    def _ids(session_id: str, agent_id: str) -> tuple[str, str]:
        return validate_id("session id", session_id), validate_id("agent id", agent_id)

    def _agent_params(self, session_id: str, agent_id: str) -> dict[str, str]:
        session_id, agent_id = self._ids(session_id, agent_id)
        return {"key_session": session_id, "key_agent": agent_id}

    def _agent_key(self, session_id: str, agent_id: str, table: Table = agents) -> tuple:
        session_id, agent_id = self._ids(session_id, agent_id)
        return table.c.session_id == session_id, table.c.agent_id == agent_id

    @staticmethod
    def _multi_agent_key(session_id: str, multi_agent_id: str) -> tuple:
        return (
            multi_agents.c.session_id == validate_id("session id", session_id),
            multi_agents.c.multi_agent_id == validate_id("multi-agent id", multi_agent_id),
        )

    def _driver_rows(
        self, connection: Connection, statement: Executable, values: Mapping[str, Any]
    ) -> Iterator[tuple]:
        """The rows of `statement` as the driver's own tuples, streamed where the driver can.

        For statements whose columns need no conversion: skipping SQLAlchemy's Row objects takes
        a fifth off restoring a long conversation. Streamed by psycopg a chunk at a time (unless
        something observes SQLAlchemy's execution: _unobserved), decoding one chunk overlaps the
        database producing and sending the next: listing 10,000 messages takes ~40 ms instead of
        ~65 (1,000: ~6 ms instead of ~8). SQLAlchemy streams only through a server-side cursor, a
        round trip per chunk.
        """
        if self._streams_rows and _unobserved(connection):
            with _driver_cursor(connection, statement, values) as (cursor, sql, params):
                yield from cursor.stream(sql, params, size=_STREAM_CHUNK)
            return
        result = connection.execute(statement, values)
        yield from result.cursor.fetchall()
        result.close()

    @contextmanager
    def _executed(
        self, connection: Connection, statement: Executable, values: Mapping[str, Any]
    ) -> Iterator[Any]:
        """Run `statement`; yield its outcome, to read its rowcount or rows from.

        On PostgreSQL it runs on psycopg's cursor itself, which is the outcome, unless something
        observes SQLAlchemy's execution (_unobserved): SQLAlchemy's execution machinery costs a
        turn's write about a seventh of what a text turn costs over no session manager
        (BENCHMARKS.md). Otherwise the outcome is SQLAlchemy's result.
        """
        if self._postgresql and _unobserved(connection):
            with _driver_cursor(connection, statement, values) as (cursor, sql, params):
                yield cursor.execute(sql, params)
            return
        with connection.execute(statement, values) as result:
            yield result

    def _first(self, query: Any) -> Row | None:
        with self._connect() as connection:
            return connection.execute(query).first()

    def _insert_new(
        self, table: Table, values: Mapping[str, Any], *, exists: str, missing: str = ""
    ) -> None:
        try:
            with self._connect() as connection:
                inserted = connection.execute(self._inserts[table], values).rowcount
        except IntegrityError as error:
            # The only constraint left to fail is the foreign key: the parent record is missing.
            raise NotFoundError(missing) from error
        if not inserted:
            raise AlreadyExistsError(exists)

    def _change_one(
        self, statement: Any, values: Mapping[str, Any] | None = None, *, missing: str
    ) -> None:
        with self._connect() as connection:
            if not connection.execute(statement, values).rowcount:
                raise NotFoundError(missing)


def _unobserved(connection: Connection) -> bool:
    """Whether nothing watches SQLAlchemy run statements on `connection`: no listener of its
    cursor events (tracing instruments are such listeners) and no statement log (echo). A
    statement run on the driver's cursor directly would escape them."""
    dispatch = connection.dispatch
    return not (
        dispatch.before_cursor_execute
        or dispatch.after_cursor_execute
        or connection.engine.logger.isEnabledFor(logging.INFO)
    )


@lru_cache(maxsize=32)
def _compiled(statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> Compiled:
    # The names of the values given decide what an UPDATE without .values() sets.
    return statement.compile(dialect=dialect, column_keys=list(keys))


@contextmanager
def _driver_cursor(
    connection: Connection, statement: Executable, values: Mapping[str, Any]
) -> Iterator[tuple[Cursor, str, dict[str, Any]]]:
    """A psycopg cursor on `connection`, with `statement` and `values` as psycopg takes them.

    For the statements of a turn: SQLAlchemy compiles each once, and psycopg runs it without
    SQLAlchemy's execution machinery and events (so only where nothing observes them:
    _unobserved). A failure is raised as SQLAlchemy raises it, and a connection that died is
    invalidated, as SQLAlchemy does.
    """
    compiled = _compiled(statement, connection.dialect, tuple(values))
    # The values given, and those the statement fixes itself (a LIMIT 1, say), converted by
    # the compiled statement's own converters, as SQLAlchemy converts them (a dict for JSONB).
    params = compiled.construct_params(values)
    for name, convert in compiled._bind_processors.items():
        params[name] = convert(params[name])
    sql = str(compiled)
    dbapi_connection = connection.connection.dbapi_connection
    cursor = dbapi_connection.cursor()
    try:
        yield cursor, sql, params
    except DriverError as error:
        disconnected = connection.dialect.is_disconnect(error, dbapi_connection, cursor)
        if disconnected:
            connection.invalidate(error)
        raise DBAPIError.instance(
            sql, params, error, DriverError, connection_invalidated=disconnected
        ) from error
    finally:
        cursor.close()


def _as_record(values: Mapping[str, Any]) -> dict[str, Any]:
    """A message's insert values as a JSON record for jsonb_to_recordset."""
    return {
        **values,
        "created_at": values["created_at"].isoformat(),
        "updated_at": values["updated_at"].isoformat(),
    }


def _finishes_turn(message: Mapping[str, Any]) -> bool:
    """Whether a stored message ends a turn: the assistant answered without asking for a tool."""
    return message["role"] == "assistant" and not any(
        "toolUse" in block for block in message["content"]
    )


def _encode_cursor(row: Row) -> str:
    raw = json.dumps([row.created_at.isoformat(), row.session_id]).encode()
    return urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, session_id = json.loads(raw)
        return _timestamp(created_at), validate_id("session id", session_id)
    except (ValueError, TypeError) as error:
        message = f"invalid cursor {cursor!r}: pass back a next_cursor as it was given"
        raise InvalidCursorError(message) from error
