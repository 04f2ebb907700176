"""The database engine (one per process) and the schema migrations that shape it."""

import json
import select
import time
from base64 import b64encode
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, exc, make_url
from sqlalchemy import create_engine as sqlalchemy_create_engine
from sqlalchemy.pool import ConnectionPoolEntry

from .config import Settings

MIGRATIONS = "{{ cookiecutter.__package_name }}:migrations"
# A pooled connection idle for longer than this is pinged before it is lent out (see
# _check_connections_on_checkout); one returned more recently is only looked at.
PING_AFTER_IDLE_SECONDS = 10


def _encode_bytes(value: Any) -> Any:
    """Store bytes (images, documents) with the marker the Strands SDK uses in its own stores."""
    if isinstance(value, bytes):
        return {"__bytes_encoded__": True, "data": b64encode(value).decode("ascii")}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# `default` is only consulted for values json cannot encode, so messages without bytes pay nothing.
dumps_json = partial(json.dumps, default=_encode_bytes, ensure_ascii=False, separators=(",", ":"))


def create_engine(settings: Settings) -> Engine:
    """Create the process's engine; every request borrows connections from its pool."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(settings)
    engine = sqlalchemy_create_engine(
        url,
        json_serializer=dumps_json,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        connect_args=_postgres_connect_args(
            settings, statement_timeout=settings.db_statement_timeout_ms
        ),
    )
    _check_connections_on_checkout(engine)
    return engine


def _check_connections_on_checkout(engine: Engine) -> None:
    """Lend out live connections only, as pool_pre_ping does, without a round trip each time.

    A connection that the server ended (it restarted, or an administrator terminated it) has
    been closed by the server: its socket reads as ready while no query runs. Looking costs
    microseconds; pre-ping's SELECT 1 costs a round trip before every request's first
    statement (0.1-0.3 ms on loopback). A connection idle for longer than
    PING_AFTER_IDLE_SECONDS is pinged all the same, since a network that dropped it leaves
    the socket quiet. As with pre-ping, a dead connection invalidates the whole pool: the
    others most likely died with it.
    """

    @event.listens_for(engine, "checkin")
    def note_idle_since(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        if dbapi_connection is not None:  # None: invalidated, and replaced when next lent out
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def check_alive(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None:  # opened for this checkout
            return
        if _closed_by_server(dbapi_connection) or (
            time.monotonic() - idle_since > PING_AFTER_IDLE_SECONDS
            and not _answers_ping(engine, dbapi_connection)
        ):
            raise exc.InvalidatePoolError("the database closed the connection")


def _closed_by_server(dbapi_connection: Any) -> bool:
    if dbapi_connection.closed:
        return True
    # Between queries the server sends nothing, unless it is closing the connection.
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    return bool(readable)


def _answers_ping(engine: Engine, dbapi_connection: Any) -> bool:
    try:
        return engine.dialect.do_ping(dbapi_connection)
    except engine.dialect.loaded_dbapi.Error:
        return False


def create_lock_engine(settings: Settings) -> Engine:
    """PostgreSQL connections for running turns, one each: the connection holds the session's
    lock (see locks.py) and carries the turn's own reads and writes.

    A pool of its own, as large as the number of turns a process runs at once, so that turns
    waiting for the model never take connections from the requests' pool.
    """
    lock_timeout = int(settings.session_lock_timeout * 1000)
    return sqlalchemy_create_engine(
        settings.database_url,
        json_serializer=dumps_json,
        # No pre-ping: taking the lock is the check (AdvisorySessionLocks.hold).
        pool_size=settings.max_concurrent_turns,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        connect_args=_postgres_connect_args(
            settings,
            lock_timeout=lock_timeout,
            # Waiting for a session's lock must end by lock_timeout, not by statement_timeout.
            statement_timeout=max(settings.db_statement_timeout_ms, lock_timeout + 1000),
        ),
    )


def _postgres_connect_args(settings: Settings, **server_settings: int | str) -> dict[str, Any]:
    # Server-side keepalives make PostgreSQL notice a vanished replica within about a minute,
    # and so release the session locks its connections held.
    server_settings |= {
        # Timestamps then arrive in UTC, as they are stored, with nothing to convert.
        "timezone": "UTC",
        "tcp_keepalives_idle": 30,
        "tcp_keepalives_interval": 10,
        "tcp_keepalives_count": 3,
    }
    return {
        "connect_timeout": settings.db_connect_timeout,
        "options": " ".join(f"-c {name}={value}" for name, value in server_settings.items()),
        "application_name": "{{ cookiecutter.__project_slug }}",
    }


def _create_sqlite_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy_create_engine(
        url,
        json_serializer=dumps_json,
        pool_pre_ping=True,
        pool_timeout=settings.db_pool_timeout,
        connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000},
    )

    @event.listens_for(engine, "connect")
    def configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers proceed while one writer commits; SQLite enforces foreign keys (and so
        # ON DELETE CASCADE) only when asked, per connection.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.close()

    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def alembic_config(engine: Engine) -> Config:
    """Alembic configuration that migrates through this engine (see migrations/env.py)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["engine"] = engine
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (the latest by default)."""
    command.upgrade(alembic_config(engine), revision)
