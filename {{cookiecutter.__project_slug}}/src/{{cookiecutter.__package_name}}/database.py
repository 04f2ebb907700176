"""The database engine (one per process) and the schema migrations that shape it."""

import binascii
import json
import logging
import math
import re
from base64 import b64decode, b64encode
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    URL,
    Connection,
    Engine,
    ExceptionContext,
    column,
    event,
    inspect,
    make_url,
    select,
    table,
)
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import EngineSettings

logger = logging.getLogger(__name__)

# The database is down, unreachable or out of connections: worth retrying, not a bug.
DATABASE_OUTAGES = (OperationalError, InterfaceError, PoolTimeoutError)

MIGRATIONS = "{{ cookiecutter.__package_name }}:migrations"
# libpq's checks that a PostgreSQL connection still reaches its server. One whose server went
# silent (its host gone, the network split, a failover to another address) fails within seconds,
# not after the kernel's quarter of an hour: sent data unacknowledged for 10 s, or 5 s without
# any traffic and then three keepalive probes unanswered. Else a statement waits on it that long:
# the lease keeper's, above all, which renews every lease of the replica, so that all their
# turns would be lost meanwhile. DATABASE_URL's query may set them otherwise.
DEAD_CONNECTION_CHECKS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
# The SQLSTATE of a write that a read-only server refuses: a standby, as the old primary becomes
# in a failover, reached through a name that still points at it.
READ_ONLY_SQL_TRANSACTION = "25006"
# How the Strands SDK marks bytes (images, documents) in JSON: {"__bytes_encoded__": true, ...}.
BYTES_MARKER = "__bytes_encoded__"


def _encode_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return {BYTES_MARKER: True, "data": b64encode(value).decode("ascii")}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# `default` is only consulted for values json cannot encode, so messages without bytes pay nothing.
# NaN and the infinities are not JSON (PostgreSQL refuses them): dumping them raises.
_dumps = partial(
    json.dumps,
    default=_encode_bytes,
    ensure_ascii=False,
    separators=(",", ":"),
    allow_nan=False,
)


# Half of a surrogate pair: UTF-8 cannot encode it, and so neither database can store it. Python
# decodes an undecodable file name into one, and a tool's result may carry it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def replace_unstorable(text: str) -> str:
    """`text` as a JSON column stores it: what none can hold, NUL (PostgreSQL's text cannot) and
    half a surrogate pair, is U+FFFD, the replacement character, on both databases."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", "\ufffd"))


def dumps_json(value: Any) -> str:
    """Encode a JSON column, with what it cannot hold replaced rather than failing the turn: NaN
    and the infinities by null, text as `replace_unstorable` says. Only a document that may hold
    some is walked: NUL is escaped in it (`\\u0000`), a surrogate is as it is, and never in a
    document of ASCII only."""
    try:
        document = _dumps(value)
    except ValueError:  # a float that is not a number, or infinite
        return _dumps(_storable(value))
    if "\\u0000" in document or (not document.isascii() and _SURROGATE.search(document)):
        return _dumps(_storable(value))
    return document


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return replace_unstorable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value


def loads_json(document: str | bytes) -> Any:
    """Decode a JSON column, turning the SDK's bytes markers back into bytes.

    Only documents that contain a marker are walked for it: restoring a long conversation decodes
    thousands of messages, nearly all of them text. (psycopg hands over bytes: decoded first,
    json.loads need not detect their encoding.)
    """
    text = document if isinstance(document, str) else document.decode()
    value = json.loads(text)
    return _decode_bytes(value) if BYTES_MARKER in text else value


def _decode_bytes(value: Any) -> Any:
    """The SDK's markers as bytes again, as its decode_bytes_values reads them, but for a marker
    that holds no base64: a model's tool input or a tool's result can hold anything, and one such
    marker made every read of its session fail. It reads back as it was written."""
    if isinstance(value, dict):
        data = value.get("data")
        if value.get(BYTES_MARKER) is True and isinstance(data, str):
            try:
                return b64decode(data, validate=True)
            except binascii.Error:
                pass
        return {key: _decode_bytes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_bytes(item) for item in value]
    return value


def create_engine(settings: EngineSettings) -> Engine:
    """The process's engine for everything but turns: the /sessions routes, migrations and the
    store's plain SessionRepository. Its pool keeps DB_SESSIONS_POOL_SIZE connections."""
    engine = sqlalchemy.create_engine(
        _url(settings), pool_size=settings.db_sessions_pool_size, **_engine_options(settings)
    )
    _configure(engine, settings)
    return engine


def create_async_engine(settings: EngineSettings) -> AsyncEngine:
    """The process's engine for turns, on asyncio: a turn waiting for the database holds no
    thread. Its pool keeps DB_POOL_SIZE connections, not pinged before use (a ping costs a
    round trip as much as a turn's statement does): a turn that finds its connection dropped
    when it begins or is saved tries again on a fresh one (TurnStore). On PostgreSQL its connections
    commit every statement by themselves, so `begin()` on it starts no transaction: several
    statements in one need another isolation level (as the turn store's save of several asks)."""
    url = _url(settings)
    options = _engine_options(settings) | {"pool_pre_ping": False}
    if url.get_backend_name() == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
    else:
        # Every statement commits by itself: each of a turn's two statements is a transaction
        # of its own (turn_store.py) and an API key's read needs none, so none of them pays a
        # round trip for a BEGIN before it and another for a ROLLBACK after it.
        options["isolation_level"] = "AUTOCOMMIT"
    engine = sqlalchemy_asyncio.create_async_engine(url, pool_size=settings.db_pool_size, **options)
    _configure(engine.sync_engine, settings)
    return engine


def _configure(engine: Engine, settings: EngineSettings) -> None:
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, settings)
    else:
        _configure_postgresql(engine)


def _url(settings: EngineSettings) -> URL:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":  # a file (Settings refuses an in-memory database)
        # Its owner's alone: the file holds every conversation, and SQLite creates it as the
        # umask allows, readable by every user of the machine (its -wal and -shm files take the
        # file's own mode). A file that exists keeps the mode its owner gave it.
        path = Path(url.database)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            path.touch(mode=0o600)
    return url


def _engine_options(settings: EngineSettings) -> dict[str, Any]:
    """What both engines share. `pool_pre_ping` checks a pooled connection before lending it
    out, so that the service recovers by itself when the database restarts. `hide_parameters`
    keeps a failed statement's parameters (the conversation) out of its error, and so out of
    the logs, unless LOG_PROMPTS asks for them."""
    options: dict[str, Any] = {
        "json_serializer": dumps_json,
        "json_deserializer": loads_json,
        "hide_parameters": not settings.log_prompts,
        "pool_pre_ping": True,
        "max_overflow": 0,
        "pool_timeout": settings.db_pool_timeout,
    }
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return options | {"connect_args": {"timeout": settings.sqlite_busy_timeout_ms / 1000}}
    server_settings = {
        "statement_timeout": settings.db_statement_timeout_ms,
        # Timestamps then arrive in UTC, as they are stored, with nothing to convert.
        "timezone": "UTC",
    }
    ours = " ".join(f"-c {name}={value}" for name, value in server_settings.items())
    # What DATABASE_URL's query asks (`?options=-csearch_path%3Dapp`, a schema of its own on a
    # shared server) is kept, which connect_args would replace: its options first, so that ours
    # win where both set one.
    query = url.query
    connect_args = {
        "connect_timeout": query.get("connect_timeout", settings.db_connect_timeout),
        "application_name": query.get("application_name", "{{ cookiecutter.__project_slug }}"),
        "options": " ".join([*url.normalized_query.get("options", ()), ours]),
        **{name: query.get(name, value) for name, value in DEAD_CONNECTION_CHECKS.items()},
    }
    return options | {"connect_args": connect_args}


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def read_only_is_an_outage(context: ExceptionContext) -> OperationalError | None:
        """A write refused by a read-only server is an outage, as a lost connection is: the
        connection is dropped, so that the next one goes where the database's name points now,
        and the request is answered 503 database_unavailable, not 500 as a bug of ours."""
        refused = context.original_exception
        if getattr(refused, "sqlstate", None) != READ_ONLY_SQL_TRANSACTION:
            return None
        context.is_disconnect = True
        return OperationalError(
            context.statement,
            context.parameters,
            refused,
            hide_parameters=engine.hide_parameters,
            connection_invalidated=True,
        )


def _configure_sqlite(engine: Engine, settings: EngineSettings) -> None:
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


# The advisory lock that a migration of a PostgreSQL database holds (migrations/env.py), so that
# two at once run one after the other: any number that nothing else takes in the database.
MIGRATION_LOCK = 7_130_001


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic configuration of the project's migrations; with `engine`, one that migrates
    through it (see migrations/env.py)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def known_revisions() -> frozenset[str]:
    """This release's migrations. A database at a revision this release does not know is a
    later release's, whose schema this one still works with: migrations are written so that the
    previous release runs on them (a rollback)."""
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(revision.revision for revision in script.walk_revisions())


def earlier_revisions() -> frozenset[str]:
    """This release's migrations but its last: a database at one of them is not migrated for
    this release yet."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return known_revisions() - set(heads)


# Where Alembic records the schema's revision.
ALEMBIC_VERSION = table("alembic_version", column("version_num"))


def schema_revisions(connection: Connection) -> set[str]:
    """The schema's revisions, as the migrations record them: none when it has no schema."""
    if not inspect(connection).has_table(ALEMBIC_VERSION.name):
        return set()
    return set(connection.execute(select(ALEMBIC_VERSION.c.version_num)).scalars())


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (the latest by default)."""
    command.upgrade(alembic_config(engine), revision)


def migrate_if_embedded(engine: Engine) -> None:
    """The embedded database (SQLite) migrates itself when first used; PostgreSQL is migrated
    once per deployment (make migrate, or the compose migrate service), not by every replica.
    An embedded database that a later release migrated is left as it is (see known_revisions):
    Alembic would refuse to start from a revision it cannot find."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        revisions = schema_revisions(connection)
    if revisions <= known_revisions():
        upgrade_schema(engine)
    else:
        later = ", ".join(sorted(revisions))
        logger.warning("The database is at revision %s, a later release's: not migrated", later)
