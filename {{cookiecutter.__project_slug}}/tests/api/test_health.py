from collections.abc import Callable

from fastapi.testclient import TestClient

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
