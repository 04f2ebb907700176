"""Where the service's turns begin and end, on the asyncio engine: a thousand turns waiting for
the database hold no thread.

`begin` takes the session's lease (leases.py) and reads what the SDK will ask for: the session,
the agent, and its messages from the offset its conversation manager stored. `save` writes the
turn's new messages and agent state in one transaction that releases the lease, and nothing if
the turn no longer holds it. On PostgreSQL each is one statement: a statement costs the service
more CPU than the database, so round trips are what the store saves on.
"""

import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Integer,
    and_,
    bindparam,
    case,
    column,
    delete,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionMessage, SessionType

from ..database import DATABASE_OUTAGES
from .leases import RELEASED_AT, Leases
from .records import (
    MESSAGE_FIELDS,
    SessionBusyError,
    agent_record,
    agent_row,
    message_record,
    message_values,
    session_record,
    timestamp,
    validate_id,
)
from .tables import UtcDateTime, agents, messages, sessions, turn_keys
from .unit_of_work import TurnKey, UnitOfWork, restored_offset

T = TypeVar("T")

# Leases renewed by one statement, at three parameters each: within every database's limit on a
# statement's parameters (PostgreSQL's 65,535; SQLite's 32,766, or 999 before SQLite 3.32).
RENEWED_AT_ONCE = 300


async def again_if_dropped(attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()`, and once more if it failed on a pooled connection that the database had
    dropped (it restarted): SQLAlchemy has then discarded every connection opened before, so the
    next one is fresh. For the asynchronous engine, whose pool does not ping connections."""
    try:
        return await attempt()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        return await attempt()


class LeaseLostError(SessionException):
    """The turn's lease expired or went to another turn before the turn was saved."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"The turn lost its claim on session {session_id!r} (it was cancelled, or its replica "
            "stalled or could not reach the database for longer than the lease lasts) and was "
            "not stored."
        )


class TurnKeyReusedError(SessionException):
    """The session stores a turn with the same key and another prompt."""

    def __init__(self, session_id: str, turn_key: str) -> None:
        super().__init__(
            f"The key {turn_key!r} is the key of another turn of session {session_id!r}: a "
            "new turn needs a new key."
        )


class TurnAlreadyStoredError(SessionException):
    """A turn with the same key (its client's Idempotency-Key) is stored in the session."""

    def __init__(self, session_id: str, turn_key: str, message_id: int) -> None:
        super().__init__(
            f"A turn with the key {turn_key!r} is stored in session {session_id!r}, from message "
            f"{message_id} on: read it in the session's history."
        )


class LeaseRevokedError(LeaseLostError):
    """The turn's lease was taken from it while it was live: the turn was cancelled
    (POST /sessions/{id}/cancel), from whichever replica."""


class SaveOutcomeUnknownError(SessionException):
    """The connection dropped as the turn was saved, and the database could not be reached again
    to learn whether that save committed."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"The database went away while the turn of session {session_id!r} was saved: it may "
            "or may not be stored. Send it again with the same Idempotency-Key, or read the "
            "session's history first."
        )


# The statements of a turn, built once: building one costs more than running it.
_THIS_AGENT = (
    agents.c.principal == bindparam("key_principal"),
    agents.c.session_id == bindparam("key_session"),
    agents.c.agent_id == bindparam("key_agent"),
)
_READ_AGENT = select(agents).where(*_THIS_AGENT)
_READ_WINDOW = (
    select(*(messages.c[name] for name in MESSAGE_FIELDS))
    .where(
        messages.c.principal == bindparam("key_principal"),
        messages.c.session_id == bindparam("key_session"),
        messages.c.agent_id == bindparam("key_agent"),
        messages.c.message_id >= bindparam("offset"),
    )
    .order_by(messages.c.message_id)
)
# What a turn changes of an agent it did not create.
_AGENT_CHANGES = ("state", "conversation_manager_state", "internal_state", "updated_at")
_INSERT_AGENT = insert(agents)
_UPDATE_AGENT = update(agents).where(*_THIS_AGENT)
_INSERT_MESSAGES = insert(messages)
_INSERT_TURN_KEY = insert(turn_keys)
_STORED_TURN = select(turn_keys.c.message_id, turn_keys.c.prompt_sha256).where(
    turn_keys.c.principal == bindparam("key_principal"),
    turn_keys.c.session_id == bindparam("key_session"),
    turn_keys.c.turn_key == bindparam("key"),
)
_THIS_MESSAGE = (
    messages.c.principal == bindparam("key_principal"),
    messages.c.session_id == bindparam("key_session"),
    messages.c.agent_id == bindparam("key_agent"),
    messages.c.message_id == bindparam("key_message"),
)
_UPDATE_MESSAGE = update(messages).where(*_THIS_MESSAGE)
_MESSAGE_CREATED_AT = select(messages.c.created_at).where(*_THIS_MESSAGE)
# How many sessions a principal keeps (MAX_SESSIONS_PER_PRINCIPAL), read when a take creates one.
_COUNT_SESSIONS = select(func.count()).where(sessions.c.principal == bindparam("key_principal"))


class TurnStore:
    """Turns on any database: a take and two reads to begin; one transaction to save."""

    def __init__(self, engine: AsyncEngine, lease_seconds: float) -> None:
        self.leases = Leases(engine.dialect, lease_seconds)
        self._lease_seconds = lease_seconds
        # Connections for a statement that is a transaction of its own, and for a save of several.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._transactional = engine

    async def begin(
        self, session_id: str, agent_id: str, principal: str, turn_key: TurnKey | None = None
    ) -> UnitOfWork:
        """Take the session's lease for `principal` (creating the session if it is new) and read
        the agent and the messages its conversation manager keeps. SessionBusyError if the
        session is busy; TurnAlreadyStoredError if a turn with `turn_key` is stored in it
        (TurnKeyReusedError if that turn's prompt was another). A turn that creates its session
        counts its principal's sessions too."""
        # Had the take run before the connection dropped, the session would only look busy until
        # that lease expires.
        sent = time.monotonic()
        work = await again_if_dropped(lambda: self._begin(session_id, agent_id, principal))
        work.lease_live_until = sent + self._lease_seconds
        work.turn_key = turn_key
        if turn_key is not None and not work.new_session:
            await self._refuse_if_stored(work, turn_key)
        return work

    async def _refuse_if_stored(self, work: UnitOfWork, turn_key: TurnKey) -> None:
        """TurnAlreadyStoredError (or TurnKeyReusedError), and the lease given back, if a turn
        with the key is stored. Read under the lease: no turn of the session stores it meanwhile."""
        values = {
            "key_principal": work.principal,
            "key_session": work.session_id,
            "key": turn_key.key,
        }
        try:
            async with self._autocommit.connect() as connection:
                stored = (await connection.execute(_STORED_TURN, values)).mappings().first()
            if stored is not None:
                if stored["prompt_sha256"] != turn_key.prompt_sha256:
                    raise TurnKeyReusedError(work.session_id, turn_key.key)
                raise TurnAlreadyStoredError(work.session_id, turn_key.key, stored["message_id"])
        except BaseException:
            await self.give_up(work)
            raise

    @staticmethod
    def _lost(work: UnitOfWork) -> LeaseLostError:
        """Why a statement whose answer just came found the turn's lease gone: revoked if the
        lease could not have expired yet when the database ran it, as nothing else takes a live
        lease; else lost."""
        revoked = time.monotonic() < work.lease_live_until
        return (LeaseRevokedError if revoked else LeaseLostError)(work.session_id)

    async def _begin(self, session_id: str, agent_id: str, principal: str) -> UnitOfWork:
        validate_id("agent id", agent_id)
        values = self.leases.take_values(principal, validate_id("session id", session_id))
        async with self._autocommit.connect() as connection:
            session = (await connection.execute(self.leases.take, values)).mappings().first()
            if session is None:
                raise SessionBusyError(session_id)
            work = UnitOfWork(session_record(session), agent_id, values["new_lease"], principal)
            work.new_session = session["created_at"] == values["now"]
            if work.new_session:
                count = await connection.execute(_COUNT_SESSIONS, values)
                work.principal_sessions = count.scalar_one()
            await self._read(connection, work)
        return work

    async def _read(self, connection: AsyncConnection, work: UnitOfWork) -> None:
        """Read the turn's agent and window; give the lease back if that fails."""
        key = _agent_key(work)
        try:
            row = (await connection.execute(_READ_AGENT, key)).mappings().first()
            if row is None:
                return
            agent = agent_record(row)
            offset = restored_offset(agent)
            window = await connection.execute(_READ_WINDOW, {**key, "offset": offset})
            work.restore(agent, map(message_record, window.mappings()))
        except BaseException:
            await self.give_up(work)
            raise

    async def save(self, work: UnitOfWork) -> None:
        """Write the turn and release its lease, in one transaction; LeaseLostError (or
        LeaseRevokedError), and nothing written, if the turn no longer holds the lease."""
        try:
            await self._save(work)
        except DBAPIError as error:
            # The database restarted while the model ran, or the connection dropped before the
            # save's answer came back.
            if not error.connection_invalidated:
                raise
            # An error the database sent (its shutdown's, above all) means that nothing of the
            # save was committed; a connection that just ended may have carried the commit.
            answered = getattr(error.orig, "sqlstate", None) is not None
            await self._save_again(work, may_have_committed=not answered)

    async def _save_again(self, work: UnitOfWork, may_have_committed: bool) -> None:
        """Save after a save whose connection dropped. Safe: a save that did commit released the
        lease, and this one then writes nothing, but finds the turn's messages stored. If the
        database cannot be reached: SaveOutcomeUnknownError if the first save may have
        committed."""
        try:
            try:
                await self._save(work)
            except LeaseLostError:
                if not await self._stored(work):
                    raise
        except DATABASE_OUTAGES as error:
            if not may_have_committed:
                raise
            raise SaveOutcomeUnknownError(work.session_id) from error

    async def _stored(self, work: UnitOfWork) -> bool:
        """Whether the turn's save committed: its first new message is stored as it wrote it.
        (Not whether its lease was released: a turn waiting for the session may have taken the
        lease since, and one that took it after the lease expired unsaved may have stored a
        message of its own at that id, with another time.) Every turn stores its prompt at
        least: a unit of work without a new message is none of the service's turns."""
        if not work.new_message_ids:
            return False
        first = work.messages[work.new_message_ids[0]]
        values = {**_agent_key(work), "key_message": first.message_id}
        async with self._autocommit.connect() as connection:
            created_at = (await connection.execute(_MESSAGE_CREATED_AT, values)).scalar()
        return created_at == timestamp(first.created_at)

    async def _save(self, work: UnitOfWork) -> None:
        key = _agent_key(work)
        release = self.leases.release_values(work.principal, work.session_id, work.lease_id)
        async with self._transactional.begin() as connection:
            if (await connection.execute(self.leases.release, release)).first() is None:
                raise self._lost(work)
            if work.agent_created:
                await connection.execute(_INSERT_AGENT, _agent_row(work))
            elif work.agent_changed:
                row = _agent_row(work)
                changes = {name: row[name] for name in _AGENT_CHANGES}
                await connection.execute(_UPDATE_AGENT, {**key, **changes})
            if work.new_message_ids:
                await connection.execute(
                    _INSERT_MESSAGES, _message_rows(work, work.new_message_ids)
                )
            for row in _message_rows(work, sorted(work.updated_message_ids)):
                changes = {name: row[name] for name in ("message", "redact_message", "updated_at")}
                await connection.execute(
                    _UPDATE_MESSAGE, {**key, "key_message": row["message_id"], **changes}
                )
            if work.turn_key is not None and work.new_message_ids:
                turn_key = {
                    "principal": work.principal,
                    "session_id": work.session_id,
                    "turn_key": work.turn_key.key,
                    "message_id": work.new_message_ids[0],
                    "prompt_sha256": work.turn_key.prompt_sha256,
                    "created_at": release["now"],
                }
                await connection.execute(_INSERT_TURN_KEY, turn_key)

    async def give_up(self, work: UnitOfWork) -> None:
        """Write nothing: the turn failed. Its lease is given back, or, when the lease created the
        session, the session is deleted, as it never was. If the database cannot be reached, the
        lease expires by itself (and a session it created stays, empty)."""
        with suppress(SQLAlchemyError):
            if work.new_session:
                await self.discard(work)
                return
            async with self._autocommit.connect() as connection:
                values = self.leases.release_values(work.principal, work.session_id, work.lease_id)
                await connection.execute(self.leases.give_up, values)

    async def discard(self, work: UnitOfWork) -> None:
        """Delete the session that the turn's lease created, as it never was."""
        lease = (
            sessions.c.principal == work.principal,
            sessions.c.session_id == work.session_id,
            sessions.c.lease_id == work.lease_id,
            sessions.c.lease_expires_at != RELEASED_AT,  # unless a save released it
        )
        async with self._autocommit.connect() as connection:
            await connection.execute(delete(sessions).where(*lease))

    async def revoke(self, principal: str, session_id: str) -> bool:
        """Take the lease from the session's running turn, on whichever replica it runs: that
        turn can no longer save, and the session is free at once. Whether a turn held it."""
        values = {"key_principal": principal, "key_session": session_id}
        async with self._autocommit.connect() as connection:
            return (await connection.execute(self.leases.revoke, values)).first() is not None

    async def renew(self, works: list[UnitOfWork]) -> dict[str, LeaseLostError]:
        """Extend the leases of running turns; those no longer held, by lease id, with why."""
        leases = [(work.principal, work.session_id, work.lease_id) for work in works]
        sent = time.monotonic()
        held: set[str] = set()
        async with self._autocommit.connect() as connection:
            for start in range(0, len(leases), RENEWED_AT_ONCE):
                values = {"leases": leases[start : start + RENEWED_AT_ONCE]}
                held.update((await connection.execute(self.leases.renew, values)).scalars())
        lost = {}
        for work in works:
            if work.lease_id in held:  # for the lease's length from when it was renewed, or later
                work.lease_live_until = sent + self._lease_seconds
            else:
                lost[work.lease_id] = self._lost(work)
        return lost


class PostgresTurnStore(TurnStore):
    """The same on PostgreSQL, where the beginning and the end of a turn are one statement each.

    To begin, the take (an upsert that returns the session when the lease was free) is the first
    part of a statement that also reads the agent beside it and, as one JSON array that the
    database aggregates, the messages its conversation manager keeps. To save, the release (an
    update that returns the session when the lease was still held) comes first, and the writes
    of the agent and of the messages read from it: when the lease was lost, they write nothing.
    The turn's messages travel as one JSON array, expanded into rows by json_to_recordset.
    """

    def __init__(self, engine: AsyncEngine, lease_seconds: float) -> None:
        super().__init__(engine, lease_seconds)
        # The engine's connections commit every statement already (database.create_async_engine):
        # none need an isolation level set when lent out and reset when returned.
        self._autocommit = engine
        self._transactional = engine.execution_options(isolation_level="READ COMMITTED")
        taken = self.leases.take.cte("taken")
        # The window as one JSON array, in no promised order: with an ORDER BY, PostgreSQL would
        # sort every message before aggregating; without, it takes them in the order it reads
        # them, the primary key's, and sorting them again in Python costs next to nothing.
        fields = {name: messages.c[name] for name in MESSAGE_FIELDS} | {
            name: _isoformat(messages.c[name]) for name in ("created_at", "updated_at")
        }
        window = (
            select(func.json_agg(func.json_build_object(*itertools.chain(*fields.items()))))
            .where(
                messages.c.principal == taken.c.principal,
                messages.c.session_id == taken.c.session_id,
                messages.c.agent_id == agents.c.agent_id,
                messages.c.message_id
                >= func.coalesce(
                    agents.c.conversation_manager_state["removed_message_count"].as_integer(), 0
                ),
            )
            .scalar_subquery()
        )
        # A new session's principal's sessions, counted as of before the take created it: only
        # when it did (a CASE evaluates only the branch it takes).
        created = taken.c.created_at == bindparam("now")
        sessions_before = case((created, _COUNT_SESSIONS.scalar_subquery()))
        # Under READ COMMITTED a take that waited for another turn's save takes the row as that
        # save left it, while the rest of the statement reads as of before it: the version of
        # the row as read tells such a stale read, and it is read again.
        as_read = sessions.alias("as_read")
        version_read = select(as_read.c.version).where(
            as_read.c.principal == taken.c.principal, as_read.c.session_id == taken.c.session_id
        )
        self._take_and_read = select(
            taken.c.session_id,
            taken.c.version,
            version_read.scalar_subquery().label("version_read"),
            taken.c.session_type,
            taken.c.created_at.label("session_created_at"),
            taken.c.updated_at.label("session_updated_at"),
            created.label("new_session"),
            sessions_before.label("sessions_before"),
            agents.c.agent_id,
            agents.c.state,
            agents.c.conversation_manager_state,
            agents.c.internal_state,
            agents.c.created_at,
            agents.c.updated_at,
            window.label("window"),
        ).select_from(
            taken.outerjoin(
                agents,
                and_(
                    agents.c.principal == taken.c.principal,
                    agents.c.session_id == taken.c.session_id,
                    agents.c.agent_id == bindparam("key_agent"),
                ),
            )
        )

        released = self.leases.release.cte("released")
        new_agent = postgresql.insert(agents).from_select(
            ["principal", "session_id", "agent_id", *_AGENT_CHANGES, "created_at"],
            select(
                released.c.principal,
                released.c.session_id,
                bindparam("key_agent"),
                *(bindparam(f"agent_{name}", type_=agents.c[name].type) for name in _AGENT_CHANGES),
                bindparam("agent_created_at", type_=UtcDateTime()),
            ),
        )
        save_agent = new_agent.on_conflict_do_update(
            index_elements=[agents.c.principal, agents.c.session_id, agents.c.agent_id],
            set_={name: new_agent.excluded[name] for name in _AGENT_CHANGES},
        ).cte("saved_agent")
        new_messages = (
            func.json_to_recordset(bindparam("new_messages", type_=JSON))
            .table_valued(
                column("message_id", Integer),
                column("message", JSON),
                column("redact_message", JSON),
                column("created_at", UtcDateTime()),
                column("updated_at", UtcDateTime()),
            )
            .render_derived(name="new_messages", with_types=True)
        )
        save_messages = (
            insert(messages)
            .from_select(
                ["principal", "session_id", "agent_id", *MESSAGE_FIELDS],
                select(
                    released.c.principal,
                    released.c.session_id,
                    bindparam("key_agent"),
                    *(new_messages.c[name] for name in MESSAGE_FIELDS),
                ).select_from(released.join(new_messages, true())),
            )
            .cte("saved_messages")
        )
        # Both return how many leases they released: 1, or 0. A turn that changed nothing of its
        # agent saves its messages only (if any: an empty array inserts no row).
        released_count = select(func.count()).select_from(released)
        self._save_agent_and_messages = released_count.add_cte(save_agent, save_messages)
        self._save_messages = released_count.add_cte(save_messages)

    async def _begin(self, session_id: str, agent_id: str, principal: str) -> UnitOfWork:
        values = {
            **self.leases.take_values(principal, validate_id("session id", session_id)),
            "key_agent": validate_id("agent id", agent_id),
        }
        async with self._autocommit.connect() as connection:
            row = (await connection.execute(self._take_and_read, values)).mappings().first()
            if row is None:
                raise SessionBusyError(session_id)
            session = Session(
                session_id=row["session_id"],
                session_type=SessionType(row["session_type"]),
                created_at=row["session_created_at"].isoformat(),
                updated_at=row["session_updated_at"].isoformat(),
            )
            work = UnitOfWork(session, agent_id, values["new_lease"], principal)
            work.new_session = row["new_session"]
            if work.new_session:  # no agent yet: one the statement read was a deleted session's
                work.principal_sessions = row["sessions_before"] + 1
            elif row["version_read"] != row["version"]:
                await self._read(connection, work)
            elif row["agent_id"] is not None:
                window = sorted(row["window"] or [], key=itemgetter("message_id"))
                work.restore(agent_record(row), (SessionMessage(**fields) for fields in window))
        return work

    async def _save(self, work: UnitOfWork) -> None:
        # A redaction of an earlier message (rare), or a key to keep: the base class's
        # transaction, a statement a write.
        if work.updated_message_ids or work.turn_key is not None:
            await super()._save(work)
            return
        values = {
            **self.leases.release_values(work.principal, work.session_id, work.lease_id),
            "key_agent": work.agent_id,
            "new_messages": _json_records(work),
        }
        statement = self._save_messages
        if work.agent_created or work.agent_changed:
            row = _agent_row(work)
            values |= {f"agent_{name}": row[name] for name in (*_AGENT_CHANGES, "created_at")}
            statement = self._save_agent_and_messages
        async with self._autocommit.connect() as connection:
            if not (await connection.execute(statement, values)).scalar_one():
                raise self._lost(work)


def turn_store_for(engine: AsyncEngine, lease_seconds: float) -> TurnStore:
    """The turn store for `engine`'s database: an engine of database.create_async_engine (on
    PostgreSQL the store's statements commit only because that engine commits each)."""
    store = PostgresTurnStore if engine.dialect.name == "postgresql" else TurnStore
    return store(engine, lease_seconds)


def _agent_row(work: UnitOfWork) -> dict[str, Any]:
    assert work.agent is not None  # created or changed
    return agent_row(work.principal, work.session_id, work.agent)


def _agent_key(work: UnitOfWork) -> dict[str, str]:
    """The values that pick the turn's agent in the statements above."""
    return {
        "key_principal": work.principal,
        "key_session": work.session_id,
        "key_agent": work.agent_id,
    }


def _message_rows(work: UnitOfWork, message_ids: Iterable[int]) -> list[dict[str, Any]]:
    return [
        message_values(work.principal, work.session_id, work.agent_id, work.messages[message_id])
        for message_id in message_ids
    ]


def _json_records(work: UnitOfWork) -> list[dict[str, Any]]:
    """The turn's new messages as JSON records for json_to_recordset, where a missing key reads
    as NULL and the SDK's timestamps (ISO 8601 text) read as they are written."""
    records = []
    for message_id in work.new_message_ids:
        fields = vars(work.messages[message_id])
        records.append({name: fields[name] for name in MESSAGE_FIELDS if fields[name] is not None})
    return records


def _isoformat(timestamp: Any) -> Any:
    """A timestamptz as text, as `datetime.isoformat()` writes it in UTC (and the repository gives
    it), formatted by the database: a long conversation then reads no timestamp in Python.
    isoformat() leaves out a fraction of exactly zero."""
    text = func.to_char(func.timezone("UTC", timestamp), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    return func.replace(text, ".000000+", "+")
