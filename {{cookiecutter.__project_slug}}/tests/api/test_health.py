from fastapi.testclient import TestClient


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
