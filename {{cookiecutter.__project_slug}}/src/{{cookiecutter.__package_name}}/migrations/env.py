"""Alembic environment: migrates the database of DATABASE_URL, or the engine the app hands over."""

from collections.abc import Iterator
from contextlib import contextmanager
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, Engine

from {{ cookiecutter.__package_name }}.api_keys import api_keys  # noqa: F401 (its table)
from {{ cookiecutter.__package_name }}.config import EngineSettings, settings_or_exit
from {{ cookiecutter.__package_name }}.database import MIGRATION_LOCK, create_engine
from {{ cookiecutter.__package_name }}.session_store import metadata

# How long a migration waits for a table's lock on PostgreSQL (a query that holds it), then fails.
LOCK_TIMEOUT = "10s"
# A PostgreSQL migration's settings, for its connection's session rather than one transaction
# (SET LOCAL, pg_advisory_xact_lock): a migration that commits on its way, to build an index
# CONCURRENTLY in `op.get_context().autocommit_block()`, keeps them past that commit.
HOLD_MIGRATION_SESSION = [
    # DB_STATEMENT_TIMEOUT_MS bounds a request's statements; a migration may rewrite a whole
    # table, or build an index over it.
    "SET statement_timeout = 0",
    # Two migrations at once (a Job run twice, `make migrate` beside it): the second waits here
    # for the first, then finds nothing left to do.
    f"SELECT pg_advisory_lock({MIGRATION_LOCK})",
    # A migration waiting for a table's lock holds up every query of that table behind it: it
    # gives up after LOCK_TIMEOUT instead, undone whole, and is run again (the Kubernetes Job
    # retries).
    f"SET lock_timeout = '{LOCK_TIMEOUT}'",
]
# The connection may be the app's, back to its pool after the migration (upgrade_schema).
RELEASE_MIGRATION_SESSION = [
    f"SELECT pg_advisory_unlock({MIGRATION_LOCK})",
    "RESET statement_timeout",
    "RESET lock_timeout",
]


def run_migrations() -> None:
    engine: Engine | None = context.config.attributes.get("engine")
    own_engine = engine is None
    if engine is None:  # the command line's: logging as alembic.ini says
        if context.config.config_file_name is not None:
            fileConfig(context.config.config_file_name, disable_existing_loggers=False)
        # The database's settings only: migrating needs no model, and no identity provider.
        engine = create_engine(settings_or_exit(EngineSettings))
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            with sqlite_migration(connection) if sqlite else migration_session(connection):
                context.configure(
                    connection=connection,
                    target_metadata=metadata,
                    # SQLite cannot ALTER most things in place: Alembic rebuilds the table
                    # instead. Always, so that a revision generated against PostgreSQL (where it
                    # ALTERs in place all the same) also migrates the SQLite of development.
                    render_as_batch=True,
                    compare_server_default=True,
                )
                with context.begin_transaction():
                    context.run_migrations()
                connection.commit()
    finally:
        if own_engine:
            engine.dispose()


@contextmanager
def migration_session(connection: Connection) -> Iterator[None]:
    """Migrate PostgreSQL with the settings of HOLD_MIGRATION_SESSION, given back whatever
    happens."""
    for statement in HOLD_MIGRATION_SESSION:
        connection.exec_driver_sql(statement)
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()  # of a migration that failed; after a commit, a no-op
        for statement in RELEASE_MIGRATION_SESSION:
            connection.exec_driver_sql(statement)
        connection.commit()


@contextmanager
def sqlite_migration(connection: Connection) -> Iterator[None]:
    """Migrate SQLite in one transaction of our own, and give the connection back to the app's
    pool as the pool made it, whatever happens.

    Python's sqlite3 begins no transaction before DDL, so each ALTER TABLE would commit by itself,
    and a migration stopped half-way (an error, the process killed) would leave a schema that no
    migration expects: here it is undone whole, as on PostgreSQL. IMMEDIATE takes the write lock
    first: a second process migrating at once waits for it (up to SQLITE_BUSY_TIMEOUT_MS), then
    finds nothing left to do.
    """
    driver = connection.connection.driver_connection
    isolation_level = driver.isolation_level
    # Rebuilding a table drops the old one, which with foreign keys enforced would first delete
    # (ON DELETE CASCADE) every row that refers to it. The pragma is a no-op inside a
    # transaction, and the pool lends a connection with none open: checked all the same.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    if connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() != 0:
        raise RuntimeError("SQLite kept its foreign keys on: migrating would delete rows")
    try:
        driver.isolation_level = None  # no transactions of the driver's: only ours
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield
    finally:
        try:
            connection.rollback()  # of a migration that failed; after a commit, a no-op
        finally:
            driver.isolation_level = isolation_level
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported: run against a database.")
run_migrations()
