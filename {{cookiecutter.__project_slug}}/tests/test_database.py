"""The engine: settings reach the connections, and the embedded default needs nothing installed."""

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text

from {{ cookiecutter.__package_name }} import database
from {{ cookiecutter.__package_name }}.config import DEFAULT_DATABASE_URL, Settings
from {{ cookiecutter.__package_name }}.database import create_engine

from .databases import postgres_database, settings_for


def test_without_database_url_the_service_uses_a_sqlite_file_under_dot_data() -> None:
    assert Settings(_env_file=None).database_url == DEFAULT_DATABASE_URL
    assert DEFAULT_DATABASE_URL.startswith("sqlite:///.data/")


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_hosting_provider_urls_get_the_psycopg_driver(scheme: str) -> None:
    settings = settings_for(f"{scheme}://user:secret@db.example:5432/app")

    assert settings.database_url == "postgresql+psycopg://user:secret@db.example:5432/app"


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(
        settings_for(f"sqlite:///{tmp_path / 'nested' / 'app.db'}", sqlite_busy_timeout_ms=1234)
    )
    with engine.connect() as connection:
        pragmas = {
            name: connection.execute(text(f"PRAGMA {name}")).scalar_one()
            for name in ("journal_mode", "foreign_keys", "busy_timeout")
        }
    engine.dispose()

    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 1234}


@pytest.mark.postgresql
def test_postgresql_connections_get_the_timeouts_and_the_pool_size() -> None:
    with postgres_database() as url:
        engine = create_engine(settings_for(url, db_statement_timeout_ms=2500, db_pool_size=3))
        with engine.connect() as connection:
            timeout = connection.execute(text("SHOW statement_timeout")).scalar_one()
            application = connection.execute(text("SHOW application_name")).scalar_one()
        pool_size = engine.pool.size()
        engine.dispose()

    assert timeout == "2500ms"
    assert application == "{{ cookiecutter.__project_slug }}"
    assert pool_size == 3


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    with postgres_database() as url:
        engine = create_engine(settings_for(url))
        yield engine
        engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def count_pings(engine: Engine, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> list:
    """Record each ping the pool makes; with `fail`, every ping finds the connection dead."""
    pings = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        if fail:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


@pytest.mark.postgresql
def test_a_connection_returned_a_moment_ago_is_lent_again_without_a_ping(
    postgres_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = backend_pid(postgres_engine)
    pings = count_pings(postgres_engine, monkeypatch)

    assert backend_pid(postgres_engine) == first
    assert pings == []


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


@pytest.mark.postgresql
def test_a_connection_idle_for_long_is_pinged_and_replaced_if_it_does_not_answer(
    postgres_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = backend_pid(postgres_engine)
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0)
    pings = count_pings(postgres_engine, monkeypatch, fail=True)

    assert backend_pid(postgres_engine) != silent
    assert len(pings) == 1, "the replacement is new: it is not pinged"
