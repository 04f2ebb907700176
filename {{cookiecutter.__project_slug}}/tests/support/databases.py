"""Test databases: a fresh SQLite file, or a fresh database on the TEST_DATABASE_URL server."""

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from {{ cookiecutter.__package_name }}.api_keys import create_api_key
from {{ cookiecutter.__package_name }}.config import Settings
from {{ cookiecutter.__package_name }}.database import create_engine as create_project_engine
from {{ cookiecutter.__package_name }}.database import upgrade_schema

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


# Whom the tests' requests come from, unless a test says otherwise.
TEST_PRINCIPAL = "tester"
# The Host header of Starlette's TestClient, and the address the real servers of the tests use.
ALLOWED_HOSTS = ["testserver", "127.0.0.1"]


def settings_for(database_url: str, **overrides: object) -> Settings:
    """Settings for a test: this database, API keys, the test clients' hosts, nothing read from
    a developer's .env."""
    values = {
        "database_url": database_url,
        "auth_mode": "api_keys",
        "allowed_hosts": ALLOWED_HOSTS,
        **overrides,
    }
    return Settings(_env_file=None, **values)


def drop_other_connections(engine: Engine) -> None:
    """End every other connection to `engine`'s PostgreSQL database, as a restart of the server
    would: the pools that held them now hold connections the server has closed."""
    with engine.connect() as admin:
        admin.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )


async def until_a_statement_waits_for_a_lock(engine: Engine) -> None:
    """Return once a statement on `engine`'s PostgreSQL database waits for a lock, as that of a
    task just started does once it has been sent: a race test that went on before then would
    test nothing, and pass. SQLite shows no waits: half a second, then."""
    if engine.dialect.name != "postgresql":
        await asyncio.sleep(0.5)
        return
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with engine.connect() as connection:
        async with asyncio.timeout(30):  # TimeoutError: no statement waited for a lock
            # One transaction a look: pg_stat_activity holds still within a transaction.
            while not connection.execute(waiting).scalar_one():
                connection.rollback()
                await asyncio.sleep(0.02)


def new_api_key(database_url: str, principal: str = TEST_PRINCIPAL) -> str:
    """A new API key for `principal` in this database (migrated first, if it is not yet)."""
    engine = create_project_engine(settings_for(database_url))
    try:
        upgrade_schema(engine)
        return create_api_key(engine, principal)
    finally:
        engine.dispose()


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when REQUIRE_POSTGRES=1 asks for PostgreSQL tests to run."""
    if REQUIRE_POSTGRES:
        pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@contextmanager
def temporary_database(server_url: str, prefix: str = "test") -> Iterator[str]:
    """Create a uniquely named database on this PostgreSQL server; drop it afterwards.

    Raises OperationalError when the server is unreachable.
    """
    server = make_url(settings_for(server_url).database_url)
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A database of its own on the TEST_DATABASE_URL server, for one test or one run."""
    if not TEST_DATABASE_URL:
        unavailable("TEST_DATABASE_URL is not set")
    with ExitStack() as stack:
        try:
            url = stack.enter_context(temporary_database(TEST_DATABASE_URL))
        except OperationalError as error:
            unavailable(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {error}")
        yield url
