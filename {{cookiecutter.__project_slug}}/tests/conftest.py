import json
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete
from sqlalchemy.ext.asyncio import AsyncEngine

from {{ cookiecutter.__package_name }}.api.app import create_app
from {{ cookiecutter.__package_name }}.api_keys import api_keys, create_api_key
from {{ cookiecutter.__package_name }}.config import Settings, get_settings
from {{ cookiecutter.__package_name }}.database import (
    create_async_engine,
    create_engine,
    upgrade_schema,
)
from {{ cookiecutter.__package_name }}.session_store import (
    SqlSessionRepository,
    TurnStore,
    turn_store_for,
)
from {{ cookiecutter.__package_name }}.session_store.tables import sessions
from {{ cookiecutter.__package_name }}.turns import TurnRunner

from .support.databases import ALLOWED_HOSTS, TEST_PRINCIPAL, postgres_database, settings_for
from .support.scripted_model import Reply, ScriptedModel


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each test in an empty directory with none of the service's variables set, so the
    developer's .env and environment never leak in (some libraries, litellm among them, load
    .env into the environment when imported).

    AUTH_MODE and ALLOWED_HOSTS are set as a deployment would set them: whatever the project's
    default, the suite runs with API keys; tests of the other modes say so. What the code under
    test writes into the environment is undone too: the app turns on the SDK's redaction there,
    which a server started by a later test would inherit, and so pass its test of redaction
    whether or not it redacts.
    """
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)  # tests that trace pass their own exporter
    monkeypatch.setenv("AUTH_MODE", "api_keys")
    monkeypatch.setenv("ALLOWED_HOSTS", json.dumps(ALLOWED_HOSTS))
{%- if cookiecutter.model_provider == "openai" %}
    # OpenAI's client, which an app builds at start-up, wants a key; no test calls OpenAI.
    monkeypatch.setenv("OPENAI_API_KEY", "not-a-real-key")
{%- endif %}
    get_settings.cache_clear()
    with mock.patch.dict(os.environ):
        yield
    get_settings.cache_clear()


@pytest.fixture
def uvicorn_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests of what `serve` refuses: a test that got as far as starting uvicorn fails."""
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("it served"))


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
    ],
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


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test on the test database leaves no session behind, passed or failed: the next test of
    the same process lists the sessions of the same principals. (API keys stay: a server that a
    module or the whole run shares keeps its key.)"""
    engine = request.getfixturevalue("engine") if "database_url" in request.fixturenames else None
    yield
    if engine is not None:
        with engine.begin() as connection:
            connection.execute(delete(sessions))  # with their agents, messages, multi-agent state


@pytest.fixture
def repository(engine: Engine) -> SqlSessionRepository:
    return SqlSessionRepository(engine)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def turn_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The engine turns run on, as the service makes it; one per test, as each has its loop."""
    engine = create_async_engine(settings_for(database_url))
    yield engine
    await engine.dispose()


@pytest.fixture
def store(turn_engine: AsyncEngine) -> TurnStore:
    """The service's turn store on the test database."""
    return turn_store_for(turn_engine, lease_seconds=3)


MakeRunner = Callable[..., TurnRunner]
# The leases of make_runner's runners, renewed every third of their length: long enough that no
# stall of a loaded machine loses one, but where a test asks for short ones, to lose them.
RUNNER_LEASE_SECONDS = 6
SHORT_LEASE_SECONDS = 1


@pytest.fixture
async def make_runner(database_url: str, turn_engine: AsyncEngine) -> AsyncIterator[MakeRunner]:
    """A turn runner keeping leases of `lease_seconds`, without the app around it."""
    runners: list[TurnRunner] = []

    def make(model: ScriptedModel, lease_seconds: float = RUNNER_LEASE_SECONDS) -> TurnRunner:
        settings = settings_for(database_url, session_lease_seconds=lease_seconds)
        store = turn_store_for(turn_engine, settings.session_lease_seconds)
        runner = TurnRunner(settings, store, model)
        runner.start_keeping_leases()
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        await runner.shutdown()


async def client_stays() -> bool:
    """`TurnRunner.start`'s `client_gone` for a client that never leaves."""
    return False


@dataclass
class Api:
    """A running app with a scripted model, and a client that sends the API key."""

    client: TestClient
    model: ScriptedModel
    repository: SqlSessionRepository


# make_api: start the app with these scripted replies (or this model), and settings overrides.
MakeApi = Callable[..., Api]


@pytest.fixture
def make_api(database_url: str, engine: Engine) -> Iterator[MakeApi]:
    """Start the app on the test database with these scripted replies (and settings overrides).

    The keys it makes are removed at the end, and no others: a module's or the run's server
    (the fuzzing's among them) keeps its key working for the tests after this one."""
    key_ids: list[str] = []
    with ExitStack() as stack:

        def start(
            replies: Iterable[Reply] = (), model: ScriptedModel | None = None, **settings: object
        ) -> Api:
            model = model or ScriptedModel(replies)
            config = settings_for(database_url, **settings)
            app = create_app(config, model=model)
            # Calls from this machine, as a developer's would (AUTH_MODE=none answers no other).
            client = stack.enter_context(TestClient(app, client=("127.0.0.1", 50000)))
            key = create_api_key(app.state.engine, TEST_PRINCIPAL)
            key_ids.append(key.partition(".")[0])
            client.headers["Authorization"] = f"Bearer {key}"
            return Api(client, model, app.state.repository.for_principal(TEST_PRINCIPAL))

        yield start
    with engine.begin() as connection:
        connection.execute(delete(api_keys).where(api_keys.c.key_id.in_(key_ids)))


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    """The app with a model that has no replies scripted: for tests that call no model."""
    return make_api()


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The app as `uvicorn` starts it: default settings, the SQLite default in the test's dir."""
    with TestClient(create_app()) as test_client:
        yield test_client
