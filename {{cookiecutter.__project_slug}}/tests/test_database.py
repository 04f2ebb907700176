"""The engine: settings reach the connections, and the embedded default needs nothing installed."""

from pathlib import Path

import pytest
from sqlalchemy import text

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
