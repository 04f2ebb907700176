import asyncio
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from {{ cookiecutter.__package_name }}.api.health import DatabasePing

from ..conftest import Api


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


def test_ready_while_session_requests_hold_their_pool(make_api: Callable[..., Api]) -> None:
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
    probes come together, they share one SELECT 1."""
    ping = DatabasePing(turn_engine)
    statements: list[str] = []

    @event.listens_for(turn_engine.sync_engine, "before_cursor_execute")
    def record(connection: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    await asyncio.gather(*(ping() for _ in range(20)))
    await ping()  # one after them asks anew

    assert statements.count("SELECT 1") == 2
