"""The Host header must name an allowed host; the API documentation is served only when asked."""

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.__package_name }}.api.app import create_app

from ..conftest import Api, MakeApi
from ..support.http import assert_error


def test_a_request_for_another_host_is_refused(api: Api) -> None:
    forged = {"Host": "attacker.example"}
    turn = api.client.post("/process", json={"prompt": "hi"}, headers=forged)

    assert_error(api.client.get("/sessions", headers=forged), 400, "invalid_host")
    assert_error(turn, 400, "invalid_host")
    assert api.model.calls == []


def test_the_probes_and_metrics_answer_whatever_the_host(api: Api) -> None:
    # Kubernetes, Docker and load balancers probe by IP address, as Prometheus scrapes each
    # replica; a probe's answer tells nothing, and /metrics asks for a credential.
    for path in ("/health", "/ready", "/metrics"):
        assert api.client.get(path, headers={"Host": "10.0.3.7:8080"}).status_code == 200


def test_without_a_credential_to_ask_metrics_answer_only_allowed_hosts(make_api: MakeApi) -> None:
    """AUTH_MODE=none answers this machine alone: a page that rebinds its name to 127.0.0.1
    reaches it, with a Host header of its own."""
    api = make_api(auth_mode="none")
    del api.client.headers["Authorization"]

    rebound = api.client.get("/metrics", headers={"Host": "rebound.attacker.example"})

    assert_error(rebound, 400, "invalid_host")
    assert api.client.get("/metrics").status_code == 200


def test_allowed_hosts_match_without_the_port_and_by_wildcard(make_api: MakeApi) -> None:
    api = make_api(allowed_hosts=["api.example.com", "*.agents.example.com", "[::1]"])

    for host in ("api.example.com:8443", "eu.agents.example.com", "API.EXAMPLE.COM", "[::1]:8000"):
        assert api.client.get("/sessions", headers={"Host": host}).status_code == 200, host
    for host in ("testserver", "example.com", "api.example.com.attacker.example"):
        assert_error(api.client.get("/sessions", headers={"Host": host}), 400, "invalid_host")


def test_by_default_only_loopback_names_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALLOWED_HOSTS")

    with TestClient(create_app(), base_url="http://localhost:8000") as client:
        # 401: the host passed, and the request needs a credential.
        assert client.get("/sessions").status_code == 401
        assert client.get("/sessions", headers={"Host": "127.0.0.1:8000"}).status_code == 401
        assert_error(client.get("/sessions", headers={"Host": "0.0.0.0"}), 400, "invalid_host")


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_api_docs_are_off_by_default(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_api_docs_setting_serves_them(make_api: MakeApi, path: str) -> None:
    api = make_api(api_docs=True)

    assert api.client.get(path).status_code == 200
