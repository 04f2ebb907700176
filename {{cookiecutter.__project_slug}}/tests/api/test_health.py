import asyncio

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from {{ cookiecutter.__package_name }}.api.app import create_app
from {{ cookiecutter.__package_name }}.api.health import DatabasePing
from {{ cookiecutter.__package_name }}.database import (
    create_engine,
    earlier_revisions,
    upgrade_schema,
)

from ..conftest import MakeApi
from ..support.databases import postgres_database, settings_for
from ..support.http import assert_error


def test_health_answers_ok(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_is_documented_in_openapi(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]

    assert "get" in paths["/health"]


def test_probes_need_no_credential(client: TestClient) -> None:
    """Kubernetes and load balancers probe without one; this client sends none."""
    for path in ("/health", "/ready"):
        response = client.get(path)

        assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_probes_answer_head_as_uptime_monitors_ask(client: TestClient, path: str) -> None:
    response = client.head(path)

    assert response.status_code == 200
    assert response.content == b""


def test_ready_while_session_requests_hold_their_pool(make_api: MakeApi) -> None:
    """/sessions requests hold every connection of their pool (as slow reads of long
    conversations would): the probe answers at once, or every replica would leave the load
    balancer together."""
    api = make_api(db_sessions_pool_size=2, db_pool_timeout=1)
    engine = api.client.app.state.engine
    with engine.connect(), engine.connect():
        response = api.client.get("/ready")

    assert response.status_code == 200, response.text


@pytest.mark.anyio
async def test_probes_at_once_ask_the_database_once(turn_engine: AsyncEngine) -> None:
    """/ready is open to anyone, and asks on the connection that lease renewals keep: however many
    probes come together, they share one statement."""
    ping = DatabasePing(turn_engine, earlier_revisions())
    statements: list[str] = []

    @event.listens_for(turn_engine.sync_engine, "before_cursor_execute")
    def record(connection: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    await asyncio.gather(*(ping() for _ in range(20)))
    await ping()  # one after them asks anew

    assert len([s for s in statements if "FROM alembic_version" in s]) == 2


@pytest.mark.postgresql
def test_ready_only_once_the_database_is_migrated_for_this_release() -> None:
    """A replica started before its release's migration ran (the Job failed, or was not run)
    must not take requests, nor in a rollout the place of a replica that serves. A schema
    newer than the release knows is a later release's, which it still works with."""
    with postgres_database() as url:
        engine = create_engine(settings_for(url))
        with TestClient(create_app(settings_for(url))) as client:
            answers = {"none": client.get("/ready")}
            upgrade_schema(engine, "0004")
            answers["0004"] = client.get("/ready")
            upgrade_schema(engine)
            answers["head"] = client.get("/ready")
            with engine.begin() as connection:
                connection.execute(text("UPDATE alembic_version SET version_num = 'later'"))
            answers["later"] = client.get("/ready")
        engine.dispose()

    assert_error(answers["none"], 503, "schema_not_migrated")
    assert_error(answers["0004"], 503, "schema_not_migrated")
    assert answers["head"].status_code == answers["later"].status_code == 200
