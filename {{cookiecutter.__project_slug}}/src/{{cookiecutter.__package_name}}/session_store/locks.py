"""One turn at a time per session: a PostgreSQL advisory lock across replicas, a lock in SQLite's
single process.

Two agents restored from the same session in two requests would number their messages alike and
interleave their turns; the Strands SDK does not coordinate them, so every turn holds its
session's lock from restore to last write.
"""

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..config import Settings
from ..database import create_lock_engine, is_sqlite


class SessionBusyError(Exception):
    """Another turn of the session held its lock for longer than the lock timeout."""

    def __init__(self, session_id: str, timeout: float) -> None:
        super().__init__(
            f"Session {session_id!r} is busy with another turn; "
            f"it was still busy after {timeout:g} s. Retry when that turn has finished."
        )


class SessionLocks(Protocol):
    """The lock of each session id, held with `hold(session_id)`, which gives the connection
    that holds it (None when no connection does)."""

    def hold(self, session_id: str) -> AbstractContextManager[Connection | None]: ...


@dataclass
class _SessionLock:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0  # turns holding or waiting for it: at 0 it is forgotten


class ProcessSessionLocks:
    """Locks within this process: right for SQLite, which one process serves."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._guard = threading.Lock()
        self._locks: dict[str, _SessionLock] = {}

    @contextmanager
    def hold(self, session_id: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(session_id, _SessionLock())
            entry.users += 1
        try:
            if not entry.lock.acquire(timeout=self.timeout):
                raise SessionBusyError(session_id, self.timeout)
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._locks[session_id]


# Advisory lock keys are 64-bit: session ids are hashed into them, seeded so that other users
# of advisory locks in the same database are unlikely to collide with ours.
_LOCK_KEY_SEED = 0x5E55_1075
_LOCK = text("SELECT pg_advisory_lock(hashtextextended(:session_id, :seed))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended(:session_id, :seed))")


def _lock_key(session_id: str) -> dict[str, str | int]:
    return {"session_id": session_id, "seed": _LOCK_KEY_SEED}


class AdvisorySessionLocks:
    """`pg_advisory_lock` on a connection of its own for the whole turn.

    The lock lives as long as that connection: a replica that crashes, or loses its network,
    releases it when PostgreSQL drops the connection, so no session stays locked. The engine
    must be a pool of its own (database.create_lock_engine): a turn holds one of its
    connections while the model thinks, and must not starve the requests' pool. Its
    connections wait at most `timeout` seconds for a lock (lock_timeout). The turn also runs
    its own reads and writes on that connection (SqlSessionRepository.turn).
    """

    def __init__(self, engine: Engine, timeout: float) -> None:
        self.timeout = timeout
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def hold(self, session_id: str) -> Iterator[Connection]:
        connection = self._locked_connection(session_id)
        try:
            yield connection
        finally:
            self._release(connection, session_id)
            connection.close()

    def _locked_connection(self, session_id: str) -> Connection:
        # Taking the lock doubles as the liveness check that pool_pre_ping would spend a round
        # trip on: a pooled connection that died (the database restarted) fails it, the pool
        # discards its connections, and the lock is taken again on a fresh one.
        try:
            return self._lock_on_a_connection(session_id)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            return self._lock_on_a_connection(session_id)

    def _lock_on_a_connection(self, session_id: str) -> Connection:
        connection = self._engine.connect()
        try:
            self._acquire(connection, session_id)
        except BaseException:
            connection.close()
            raise
        return connection

    def _acquire(self, connection: Connection, session_id: str) -> None:
        try:
            connection.execute(_LOCK, _lock_key(session_id))
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available
                raise SessionBusyError(session_id, self.timeout) from None
            raise

    @staticmethod
    def _release(connection: Connection, session_id: str) -> None:
        try:
            connection.execute(_UNLOCK, _lock_key(session_id))
        except SQLAlchemyError:
            # The connection failed (now, or earlier in the turn) and the lock went with it:
            # make sure the pool drops it too. The turn's own error is what gets reported.
            connection.invalidate()


def session_locks(settings: Settings, engine: Engine) -> tuple[SessionLocks, Engine | None]:
    """The session locks for `engine`'s database, and the lock pool's own engine (None on
    SQLite), which the caller disposes of when done."""
    if is_sqlite(engine):
        return ProcessSessionLocks(settings.session_lock_timeout), None
    lock_engine = create_lock_engine(settings)
    return AdvisorySessionLocks(lock_engine, settings.session_lock_timeout), lock_engine
