"""The migrations build a fresh database that matches the tables in code, and tear it down again."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from {{ cookiecutter.__package_name }}.api.app import create_app
from {{ cookiecutter.__package_name }}.database import (
    MIGRATION_LOCK,
    alembic_config,
    create_engine,
    upgrade_schema,
)
from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository, metadata

from ..support.databases import postgres_database, settings_for
from ..support.server import PROJECT_DIR

TABLES = {"sessions", "agents", "messages", "multi_agents", "turn_keys"}
# The command line's migrations, as `make migrate` runs them: each argument after these is one
# command, as in `[*ALEMBIC, "upgrade head", "check"]`.
ALEMBIC = [sys.executable, "-m", "tests.support.alembic_cli"]


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
    ]
)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def empty_engine(empty_database_url: str) -> Iterator[Engine]:
    engine = create_engine(settings_for(empty_database_url))
    yield engine
    engine.dispose()


def schema_differences(engine: Engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def test_upgrade_head_builds_exactly_the_tables_in_code(empty_engine: Engine) -> None:
    upgrade_schema(empty_engine)

    assert set(inspect(empty_engine).get_table_names()) >= TABLES
    assert schema_differences(empty_engine) == []
    command.check(alembic_config(empty_engine))  # raises if autogenerate would write a migration


def test_downgrade_base_removes_every_table_and_upgrade_rebuilds_them(empty_engine: Engine) -> None:
    upgrade_schema(empty_engine)

    command.downgrade(alembic_config(empty_engine), "base")
    assert set(inspect(empty_engine).get_table_names()) & TABLES == set()

    upgrade_schema(empty_engine)
    assert schema_differences(empty_engine) == []


def row_counts(engine: Engine) -> dict[str, int]:
    """The rows of each table there is, at whichever revision."""
    present = set(inspect(engine).get_table_names()) & TABLES
    with engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in sorted(present)
        }


def test_a_downgrade_below_0006_waits_for_no_longer_id_and_keeps_every_row(
    empty_engine: Engine,
) -> None:
    """Refused, naming them, while ids longer than 128 characters are stored; then, with
    SQLite's tables rebuilt, every row kept."""
    upgrade_schema(empty_engine)
    repository = SqlSessionRepository(empty_engine)
    for session_id, agent_id in (("chat", "default"), ("s" * 129, "default"), ("t", "a" * 129)):
        repository.create_session(Session(session_id, SessionType.AGENT))
        repository.create_agent(session_id, SessionAgent(agent_id, {}, {}))
        message = {"role": "user", "content": [{"text": "kept"}]}
        repository.create_message(session_id, agent_id, SessionMessage(message, message_id=0))
    with empty_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO multi_agents (principal, session_id, multi_agent_id, state, "
                "created_at, updated_at) VALUES ('local', 'chat', 'report', '{}', :at, :at)"
            ),
            {"at": "2026-11-27 10:00:00.000000"},
        )
    config = alembic_config(empty_engine)

    with pytest.raises(RuntimeError, match="longer than 128") as refused:
        command.downgrade(config, "0005")
    for session_id in ("s" * 129, "t"):
        repository.delete_session(session_id)
    command.downgrade(config, "0005")

    assert "session_id 'ssss" in str(refused.value) and "agent_id 'aaaa" in str(refused.value)
    assert set(row_counts(empty_engine).values()) == {1}, "chat's session, agent, message, state"
    upgrade_schema(empty_engine)
    assert schema_differences(empty_engine) == []
    assert repository.read_message("chat", "default", 0).message["content"] == [{"text": "kept"}]


def test_sessions_stored_before_they_were_named_per_principal_keep_everything(
    empty_engine: Engine,
) -> None:
    upgrade_schema(empty_engine, "0003")
    values = {
        "at": "2026-11-25 10:00:00.000000",  # as SQLAlchemy writes it on SQLite; UTC on PostgreSQL
        "empty": "{}",
        "message": json.dumps({"role": "user", "content": [{"text": "kept"}]}),
    }
    with empty_engine.begin() as connection:
        for statement in (
            "INSERT INTO sessions (session_id, session_type, principal, created_at, updated_at) "
            "VALUES ('chat', 'AGENT', 'alice', :at, :at)",
            "INSERT INTO agents VALUES ('chat', 'default', :empty, :empty, :empty, :at, :at)",
            "INSERT INTO messages VALUES ('chat', 'default', 0, :message, NULL, :at, :at)",
            "INSERT INTO multi_agents VALUES ('chat', 'report', :empty, :at, :at)",
        ):
            connection.execute(text(statement), values)

    upgrade_schema(empty_engine)

    alice = SqlSessionRepository(empty_engine, "alice")
    assert [m.to_message()["content"] for m in alice.list_messages("chat", "default")] == [
        [{"text": "kept"}]
    ]
    assert alice.read_multi_agent("chat", "report") == {}
    bob = alice.for_principal("bob")
    bob.create_session(Session("chat", SessionType.AGENT))  # the id is alice's only
    alice.delete_session("chat")
    assert bob.read_session("chat") is not None
    with empty_engine.connect() as connection:
        left = connection.execute(text("SELECT count(*) FROM messages")).scalar_one()
    assert left == 0  # alice's session took what it held with it


@pytest.mark.postgresql
def test_migrations_are_not_bound_by_the_statement_timeout() -> None:
    """DB_STATEMENT_TIMEOUT_MS bounds what requests run; 0004 rewrites every stored message, which
    on a large database takes far longer than a request may."""
    with postgres_database() as url:
        setup = create_engine(settings_for(url))
        upgrade_schema(setup, "0003")
        with setup.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO sessions (session_id, session_type, created_at, updated_at) "
                    "VALUES ('long', 'AGENT', now(), now());"
                    "INSERT INTO agents VALUES ('long', 'default', '{}', '{}', '{}', now(), now());"
                    "INSERT INTO messages SELECT 'long', 'default', n, "
                    """'{"role": "user", "content": [{"text": "kept"}]}', NULL, now(), now() """
                    "FROM generate_series(0, 49999) AS n"
                )
            )
        engine = create_engine(settings_for(url, db_statement_timeout_ms=100))

        upgrade_schema(engine)

        engine.dispose()
        with setup.connect() as connection:
            local = "SELECT count(*) FROM messages WHERE principal = 'local'"
            assert connection.execute(text(local)).scalar_one() == 50_000
        setup.dispose()


def json_column_types(engine: Engine) -> set[str]:
    query = text(
        "SELECT DISTINCT data_type FROM information_schema.columns WHERE table_schema = "
        "current_schema() AND column_name IN ('state', 'conversation_manager_state', "
        "'internal_state', 'message', 'redact_message')"
    )
    with engine.connect() as connection:
        return set(connection.execute(query).scalars())


@pytest.mark.postgresql
def test_0005_keeps_json_as_written_and_keeps_what_jsonb_held() -> None:
    """Before 0005 PostgreSQL held JSON as jsonb, which sorted keys: what it held reads as it
    was stored then, and what is written from 0005 on, as it is written. Down, and up, again."""
    with postgres_database() as url:
        engine = create_engine(settings_for(url))
        upgrade_schema(engine, "0004")
        repository = SqlSessionRepository(engine, "alice")
        repository.create_session(Session("chat", SessionType.AGENT))
        repository.create_agent("chat", SessionAgent("before", {"b": 1, "a": 2}, {}))
        assert json_column_types(engine) == {"jsonb"}

        upgrade_schema(engine)
        repository.create_agent("chat", SessionAgent("after", {"b": 1, "a": 2}, {}))

        assert json_column_types(engine) == {"json"}
        assert list(repository.read_agent("chat", "before").state) == ["a", "b"]
        assert list(repository.read_agent("chat", "after").state) == ["b", "a"]
        command.downgrade(alembic_config(engine), "0004")
        assert json_column_types(engine) == {"jsonb"}
        upgrade_schema(engine)
        assert repository.read_agent("chat", "after").state == {"a": 2, "b": 1}
        assert schema_differences(engine) == []
        engine.dispose()


@pytest.mark.postgresql
def test_a_migration_that_waits_for_a_lock_gives_up_and_leaves_the_database_as_it_was() -> None:
    """Waiting, it would hold up every query of its table behind it."""
    with postgres_database() as url:
        engine = create_engine(settings_for(url))
        upgrade_schema(engine, "0004")
        reader = engine.connect()
        reader.execute(text("SELECT count(*) FROM messages"))  # a transaction that read the table

        with pytest.raises(OperationalError, match="lock timeout"):
            upgrade_schema(engine)

        reader.close()
        assert json_column_types(engine) == {"jsonb"}, "0005 is undone whole"
        upgrade_schema(engine)
        assert json_column_types(engine) == {"json"}
        engine.dispose()


def test_a_migration_that_fails_half_way_on_sqlite_is_undone_whole(tmp_path: Path) -> None:
    """As on PostgreSQL: Python's sqlite3 would commit each ALTER TABLE by itself, and 0004
    stopped half-way (an error here; the process killed, as likely) left a column that the next
    try failed to add again, and so a database that no start-up could migrate."""
    engine = create_engine(settings_for(f"sqlite:///{tmp_path / 'half-way.db'}"))
    upgrade_schema(engine, "0003")
    with engine.begin() as connection:  # in the way of 0004's rebuilding of the messages table
        connection.execute(text("CREATE TABLE _alembic_tmp_messages (x INTEGER)"))

    with pytest.raises(OperationalError, match="_alembic_tmp_messages already exists"):
        upgrade_schema(engine)

    assert "principal" not in {column["name"] for column in inspect(engine).get_columns("agents")}
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE _alembic_tmp_messages"))
    upgrade_schema(engine)
    assert schema_differences(engine) == []
    engine.dispose()


def test_a_sqlite_migration_that_finds_the_database_locked_leaves_the_connection_as_it_was(
    tmp_path: Path,
) -> None:
    """The app's pool lends the migration its connection: it gets it back with foreign keys
    enforced and the driver's own transactions, whatever stopped the migration."""
    path = tmp_path / "locked.db"
    engine = create_engine(
        settings_for(f"sqlite:///{path}", db_sessions_pool_size=1, sqlite_busy_timeout_ms=100)
    )
    upgrade_schema(engine, "0004")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing

    with pytest.raises(OperationalError, match="database is locked"):
        upgrade_schema(engine)

    other.close()
    with engine.connect() as connection:  # the pool's only one
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert connection.connection.driver_connection.isolation_level == ""
    upgrade_schema(engine)
    assert schema_differences(engine) == []
    engine.dispose()


def test_processes_migrating_one_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """As processes started together on the embedded database do, each migrating it as it
    starts: the first takes the write lock, the others wait for it, then find nothing left to do
    (they could collide on "table sessions already exists")."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    command = [*ALEMBIC, "upgrade head"]
    processes = [
        subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]

    errors = [process.communicate(timeout=120)[1] for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], errors


@pytest.mark.postgresql
def test_a_migration_of_postgresql_waits_for_one_running_beside_it() -> None:
    """A migration Job run twice, or `make migrate` beside it: the second waits for the first,
    then finds nothing left to do, where the two collided half-way ("column already exists")."""
    with postgres_database() as url:
        engine = create_engine(settings_for(url))
        env = {**os.environ, "DATABASE_URL": url}
        with engine.begin() as running:  # as a migration running holds it
            running.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            second = subprocess.Popen([*ALEMBIC, "upgrade head"], cwd=PROJECT_DIR, env=env)
            waiting = text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            deadline = time.monotonic() + 120
            while not running.execute(waiting).scalar_one() and second.poll() is None:
                assert time.monotonic() < deadline, "the second migration never asked for the lock"
                time.sleep(0.1)
            assert second.poll() is None, "it migrated while another migration ran"

        assert second.wait(timeout=120) == 0
        assert schema_differences(engine) == []
        engine.dispose()


def test_no_downgrade_below_0004_while_principals_share_a_session_id(
    empty_engine: Engine,
) -> None:
    upgrade_schema(empty_engine)
    for principal in ("alice", "bob"):
        alice_or_bob = SqlSessionRepository(empty_engine, principal)
        alice_or_bob.create_session(Session("chat", SessionType.AGENT))

    with pytest.raises(RuntimeError, match="share session ids"):
        command.downgrade(alembic_config(empty_engine), "0003")

    assert schema_differences(empty_engine) == []  # nothing of the downgrade was done


def test_no_downgrade_below_0003_while_sessions_belong_to_principals(
    empty_engine: Engine,
) -> None:
    """Below it, sessions have no owner: alice's would be open to anyone (AUTH_MODE=none)."""
    upgrade_schema(empty_engine)
    SqlSessionRepository(empty_engine, "alice").create_session(Session("chat", SessionType.AGENT))

    with pytest.raises(RuntimeError, match=r"belong to principals \(alice\)"):
        command.downgrade(alembic_config(empty_engine), "0002")

    assert schema_differences(empty_engine) == []  # nothing of the downgrade was done


def test_alembic_command_line_migrates_database_url(empty_database_url: str) -> None:
    """`make migrate` runs `alembic upgrade head` in the project directory. It reads the
    database's settings only: a service whose identity provider is not set up yet migrates. It
    logs the revisions it runs (the migration Job's log)."""
    env = {**os.environ, "DATABASE_URL": empty_database_url, "AUTH_MODE": "jwt"}
    env = {name: value for name, value in env.items() if not name.startswith("JWT_")}
    result = subprocess.run(
        [*ALEMBIC, "upgrade head", "check", "current"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert "Running upgrade 0006 -> 0007" in result.stderr
    assert "No new upgrade operations detected" in result.stdout  # check
    assert "0007 (head)" in result.stdout  # current


def test_the_app_migrates_the_embedded_sqlite_database_at_start_up() -> None:
    with TestClient(create_app()) as client:
        assert client.get("/health").status_code == 200

    engine = create_engine(settings_for("sqlite:///.data/{{ cookiecutter.__package_name }}.db"))
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert schema_differences(engine) == []
    engine.dispose()


def test_the_app_starts_on_an_embedded_database_that_a_later_release_migrated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rollback: a release runs on the schema of the next one, which it cannot migrate."""
    engine = create_engine(settings_for("sqlite:///.data/{{ cookiecutter.__package_name }}.db"))
    upgrade_schema(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'a-later-one'"))

    with TestClient(create_app()) as client:
        assert client.get("/ready").status_code == 200

    with engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version"))
        assert revision.scalar_one() == "a-later-one"
    engine.dispose()
    assert "revision a-later-one, a later release's: not migrated" in caplog.text


def run(*command: str, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


# Two turns through the service's turn store, and a message through the plain repository.
TURNS_AND_A_MESSAGE = textwrap.dedent(
    """
    import asyncio

    from sqlalchemy import select
    from strands import Agent
    from strands.session import RepositorySessionManager
    from strands.types.session import SessionMessage

    from {{ cookiecutter.__package_name }} import config, database, session_store
    from {{ cookiecutter.__package_name }}.session_store.tables import messages
    from tests.support.scripted_model import ScriptedModel


    async def turns():
        engine = database.create_async_engine(config.get_settings())
        store = session_store.turn_store_for(engine, lease_seconds=3)
        for prompt in ("one", "two"):
            work = await store.begin("s", "default", "local")
            manager = RepositorySessionManager(session_id="s", session_repository=work)
            model = ScriptedModel(["ok"])
            agent = Agent(model=model, session_manager=manager, callback_handler=None)
            await agent.invoke_async(prompt)
            await store.save(work)
        await engine.dispose()


    asyncio.run(turns())
    engine = database.create_engine(config.get_settings())
    message = SessionMessage({"role": "user", "content": [{"text": "three"}]}, message_id=4)
    session_store.SqlSessionRepository(engine).create_message("s", "default", message)
    with engine.connect() as connection:
        print(sorted(connection.execute(select(messages.c.channel)).scalars()))
    """
)


def edited_source(tmp_path: Path, edits: dict[str, str]) -> Path:
    """A copy of the project's source (and its ruff settings, which a new revision is formatted
    and linted with as it is written), with each of `edits`' keys in tables.py replaced by its
    value."""
    source = tmp_path / "src"
    shutil.copytree(PROJECT_DIR / "src", source)
    shutil.copy(PROJECT_DIR / "pyproject.toml", tmp_path)
    tables = source / "{{ cookiecutter.__package_name }}" / "session_store" / "tables.py"
    code = tables.read_text()
    for old, new in edits.items():
        assert old in code
        code = code.replace(old, new)
    tables.write_text(code)
    return source


def test_a_schema_change_is_an_edit_of_tables_py_and_a_migration(
    empty_database_url: str, tmp_path: Path
) -> None:
    """What an owner of the project does to add a column and change another, in a copy of the
    project's source. A revision generated against PostgreSQL, the production schema, migrates
    the SQLite of development too, which cannot ALTER a column in place (it rebuilds the table)."""
    anchor = '    Column("redact_message", NullableJson, nullable=True),\n'
    added = '    Column("channel", String(32), nullable=False, server_default="web"),\n'
    longer = '    Column("session_type", String(64), nullable=False),\n'
    edits = {anchor: anchor + added, longer.replace("64", "32"): longer}
    source = edited_source(tmp_path, edits)
    env = {**os.environ, "PYTHONPATH": str(source), "DATABASE_URL": empty_database_url}

    new_revision = "revision --autogenerate -m 'message channel'"
    run(*ALEMBIC, "upgrade head", new_revision, "upgrade head", "check", env=env)
    channels = run(sys.executable, "-c", TURNS_AND_A_MESSAGE, env=env)
    versions = source / "{{ cookiecutter.__package_name }}" / "migrations" / "versions"
    run(sys.executable, "-m", "ruff", "check", "--no-cache", str(versions), env=env)
    run(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", str(versions), env=env)
    if empty_database_url.startswith("postgresql"):
        development = {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'development.db'}"}
        run(*ALEMBIC, "upgrade head", "check", env=development)

    assert channels.strip() == str(["web"] * 5)


# A revision that builds an index CONCURRENTLY as the README shows, outside the migration's
# transaction; it first keeps what the settings were there in a table of its own.
CONCURRENT_INDEX = textwrap.dedent(
    """
    from alembic import op

    revision = "0008"
    down_revision = "0007"


    def upgrade() -> None:
        with op.get_context().autocommit_block():
            op.execute(
                "CREATE TABLE settings_seen AS SELECT "
                "current_setting('statement_timeout') AS statement_timeout, "
                "current_setting('lock_timeout') AS lock_timeout, "
                "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid()) AS advisory_locks"
            )
            op.execute("SET lock_timeout = 0")
            name, concurrently = "ix_messages_created_at", {"postgresql_concurrently": True}
            op.drop_index(name, "messages", if_exists=True, **concurrently)
            op.create_index(name, "messages", ["created_at"], **concurrently)
            op.execute("SET lock_timeout = '10s'")
    """
)


INDEX_VALID = "SELECT indisvalid FROM pg_index WHERE indexrelid = CAST(:name AS regclass)"


@pytest.mark.postgresql
def test_a_migration_that_commits_on_its_way_keeps_its_settings_and_gives_them_back(
    tmp_path: Path,
) -> None:
    """Past the commit, the index is built without the statement timeout of requests, with the
    lock timeout of migrations, and under the lock that keeps two migrations apart; after it,
    the connection goes back to the app's pool as the pool made it."""
    migrations = tmp_path / "migrations"
    package = PROJECT_DIR / "src" / "{{ cookiecutter.__package_name }}"
    shutil.copytree(package / "migrations", migrations)
    (migrations / "versions" / "0008_concurrent_index.py").write_text(CONCURRENT_INDEX)
    # The advisory locks of this database only: other tests migrate others on the same server.
    session_settings = text(
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), "
        "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()))"
    )
    with postgres_database() as url:
        engine = create_engine(settings_for(url, db_statement_timeout_ms=5000))
        config = alembic_config(engine)
        config.set_main_option("script_location", str(migrations))

        command.upgrade(config, "head")

        with engine.connect() as connection:
            seen = connection.execute(text("SELECT * FROM settings_seen")).one()
            after = connection.execute(session_settings).one()
            valid = connection.execute(text(INDEX_VALID), {"name": "ix_messages_created_at"})
            assert valid.scalar_one()
        engine.dispose()
    assert tuple(seen) == ("0", "10s", 1)
    assert tuple(after) == ("5s", "0", 0)
