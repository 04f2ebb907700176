"""The engines: settings reach the connections, and the embedded default needs nothing installed."""

import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from {{ cookiecutter.__package_name }}.config import DEFAULT_DATABASE_URL, Settings
from {{ cookiecutter.__package_name }}.database import create_async_engine, create_engine

from ..support.databases import postgres_database, settings_for


def test_without_database_url_the_service_uses_a_sqlite_file_under_dot_data() -> None:
    assert Settings(_env_file=None).database_url == DEFAULT_DATABASE_URL
    assert DEFAULT_DATABASE_URL.startswith("sqlite:///.data/")


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_hosting_provider_urls_get_the_psycopg_driver(scheme: str) -> None:
    settings = settings_for(f"{scheme}://user:secret@db.example:5432/app")

    assert settings.database_url == "postgresql+psycopg://user:secret@db.example:5432/app"


def test_a_new_sqlite_files_folder_is_its_owners_alone(tmp_path: Path) -> None:
    engine = create_engine(settings_for(f"sqlite:///{tmp_path / 'data' / 'app.db'}"))
    with engine.connect():
        pass
    engine.dispose()

    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


PRAGMAS = ("journal_mode", "foreign_keys", "busy_timeout")


@pytest.mark.anyio
async def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    settings = settings_for(
        f"sqlite:///{tmp_path / 'nested' / 'app.db'}", sqlite_busy_timeout_ms=1234
    )
    engine, turn_engine = create_engine(settings), create_async_engine(settings)
    with engine.connect() as connection:
        pragmas = [connection.execute(text(f"PRAGMA {name}")).scalar_one() for name in PRAGMAS]
    async with turn_engine.connect() as connection:
        async_pragmas = [
            (await connection.execute(text(f"PRAGMA {name}"))).scalar_one() for name in PRAGMAS
        ]
    engine.dispose()
    await turn_engine.dispose()

    assert pragmas == async_pragmas == ["wal", 1, 1234]


def test_a_new_sqlite_file_is_its_owners_alone(tmp_path: Path) -> None:
    """It holds every conversation: SQLite would create it as the umask allows, readable by
    every user of the machine, in a folder that already exists as in one made for it."""
    path = tmp_path / "agent.db"
    old_umask = os.umask(0o022)
    try:
        engine = create_engine(settings_for(f"sqlite:///{path}"))
        with engine.connect() as connection:
            connection.execute(text("CREATE TABLE t (x)"))
        engine.dispose()
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.postgresql
@pytest.mark.anyio
async def test_postgresql_connections_get_the_timeouts_and_the_pool_sizes() -> None:
    show = text("SELECT current_setting('statement_timeout'), current_setting('application_name')")
    with postgres_database() as url:
        settings = settings_for(url, db_statement_timeout_ms=2500, db_pool_size=7)
        engine, turn_engine = create_engine(settings), create_async_engine(settings)
        with engine.connect() as connection:
            shown = tuple(connection.execute(show).one())
        async with turn_engine.connect() as connection:
            async_shown = tuple((await connection.execute(show)).one())
        sizes = engine.pool.size(), turn_engine.pool.size()
        engine.dispose()
        await turn_engine.dispose()

    assert shown == async_shown == ("2500ms", "{{ cookiecutter.__project_slug }}")
    assert sizes == (settings.db_sessions_pool_size, 7)


def tcp_checks(psycopg_connection: psycopg.Connection | psycopg.AsyncConnection) -> dict:
    """How the connection's socket finds its server gone silent (DEAD_CONNECTION_CHECKS)."""
    options = {
        "keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "idle": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "interval": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "count": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "user_timeout": (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    }
    with socket.socket(fileno=os.dup(psycopg_connection.pgconn.socket)) as sock:
        return {name: sock.getsockopt(*option) for name, option in options.items()}


@pytest.mark.postgresql
@pytest.mark.anyio
@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="read as Linux names them")
async def test_postgresql_connections_find_a_silent_server_within_seconds() -> None:
    """A statement on a connection whose server went silent fails within seconds instead of
    waiting for the kernel's quarter of an hour; DATABASE_URL's query may ask otherwise."""
    expected = {"keepalive": 1, "idle": 5, "interval": 2, "count": 3, "user_timeout": 10_000}
    with postgres_database() as url:
        settings = settings_for(url)
        engine, turn_engine = create_engine(settings), create_async_engine(settings)
        asked = create_engine(settings_for(f"{url}?tcp_user_timeout=30000"))
        with engine.connect() as connection:
            checks = tcp_checks(connection.connection.driver_connection)
        async with turn_engine.connect() as connection:
            raw = await connection.get_raw_connection()
            async_checks = tcp_checks(raw.driver_connection)
        with asked.connect() as connection:
            asked_checks = tcp_checks(connection.connection.driver_connection)
        for each in (engine, asked):
            each.dispose()
        await turn_engine.dispose()

    assert checks == async_checks == expected
    assert asked_checks == expected | {"user_timeout": 30_000}


@pytest.mark.postgresql
@pytest.mark.anyio
async def test_what_database_url_asks_of_postgresql_is_kept() -> None:
    """Its options (a schema of its own on a shared server) and its application name: the
    engines' own settings for the connection are added to them, not put in their place."""
    show = text(
        "SELECT current_setting('search_path'), current_setting('application_name'), "
        "current_setting('TimeZone'), current_setting('statement_timeout'), "
        "current_setting('work_mem')"
    )
    with postgres_database() as url:
        asked = "options=-csearch_path%3Dapp&options=-cwork_mem%3D8MB&application_name=mine"
        settings = settings_for(f"{url}?{asked}")
        engine, turn_engine = create_engine(settings), create_async_engine(settings)
        with engine.connect() as connection:
            shown = tuple(connection.execute(show).one())
        async with turn_engine.connect() as connection:
            async_shown = tuple((await connection.execute(show)).one())
        engine.dispose()
        await turn_engine.dispose()

    assert shown == async_shown == ("app", "mine", "UTC", "10s", "8MB")


@pytest.mark.postgresql
@pytest.mark.anyio
async def test_each_statement_for_turns_commits_by_itself_on_postgresql() -> None:
    """No BEGIN before a turn's statement or an API key's read, and so no ROLLBACK after: two
    round trips that a read on a transactional connection pays."""
    with postgres_database() as url:
        turn_engine = create_async_engine(settings_for(url))
        async with turn_engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            raw = await connection.get_raw_connection()
            status = raw.driver_connection.info.transaction_status
        await turn_engine.dispose()

    assert status == psycopg.pq.TransactionStatus.IDLE


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    with postgres_database() as url:
        engine = create_engine(settings_for(url))
        yield engine
        engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


@pytest.mark.postgresql
def test_a_connection_the_server_ended_is_replaced_before_it_is_lent_out(
    postgres_engine: Engine,
) -> None:
    ended = backend_pid(postgres_engine)
    url = postgres_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [ended])
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [ended]).fetchone():
            time.sleep(0.01)

    assert backend_pid(postgres_engine) != ended


@pytest.mark.parametrize("log_prompts", [False, True])
def test_a_failed_statement_shows_its_parameters_only_with_log_prompts(
    database_url: str, log_prompts: bool
) -> None:
    """A statement's parameters are the conversation; its error's text is what gets logged."""
    engine = create_engine(settings_for(database_url, log_prompts=log_prompts))
    try:
        with pytest.raises(DBAPIError) as failure, engine.connect() as connection:
            connection.execute(text("SELECT :prompt FROM no_such_table"), {"prompt": "my secret"})
    finally:
        engine.dispose()

    assert ("my secret" in str(failure.value)) is log_prompts
