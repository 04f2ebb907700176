from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete

from {{ cookiecutter.__package_name }}.config import get_settings
from {{ cookiecutter.__package_name }}.database import create_engine, upgrade_schema
from {{ cookiecutter.__package_name }}.main import create_app
from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository
from {{ cookiecutter.__package_name }}.session_store.tables import sessions

from .databases import postgres_database, settings_for


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each test in an empty directory, so the developer's .env and local data never leak in."""
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Each backend's database for this run, migrated once; tests clean up after themselves."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(settings_for(database_url))
    upgrade_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def repository(engine: Engine) -> Iterator[SqlSessionRepository]:
    yield SqlSessionRepository(engine)
    with engine.begin() as connection:
        connection.execute(delete(sessions))  # cascades to agents, messages and multi-agent state


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app()) as test_client:
        yield test_client
