"""Prometheus metrics: scraped after turns, they count what the turns did and every response;
/metrics needs a credential on the API's port, and METRICS_PORT serves them on a port of their
own instead."""

import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.__package_name }}.api.errors import TURN_ERROR_CODES

from ..conftest import Api, MakeApi
from ..support.scripted_model import ToolCall
from ..support.server import free_port, running_server


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by its name and labels: ("agent_turns_failed_total", (("code", "x"),))."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_turns_are_counted_by_outcome(make_api: MakeApi) -> None:
    # The second turn calls a tool (which does not exist), then its model fails.
    api = make_api(
        ["Hello there.", ToolCall("no_such_tool"), RuntimeError("provider exploded"), "Again."]
    )
    api.client.post("/process", json={"prompt": "one", "session_id": "s"})
    failed = api.client.post("/process", json={"prompt": "two", "session_id": "s"})
    api.client.post("/process-streaming", json={"prompt": "three", "session_id": "s"})

    response = api.client.get("/metrics")

    assert failed.status_code == 502
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = scrape(response.text)
    assert value(samples, "agent_turns_started_total") == 3
    assert value(samples, "agent_turns_finished_total") == 2
    assert value(samples, "agent_turns_failed_total", code="model_error") == 1
    assert value(samples, "agent_turns_in_flight") == 0
    assert value(samples, "agent_turn_duration_seconds_count") == 2
    assert value(samples, "agent_turn_first_text_seconds_count") == 2, "the failed turn had none"
    assert value(samples, "agent_session_wait_seconds_count") == 3
    # The scripted model reports 10 tokens in and 5 out a call: the failed turn's first counts.
    assert value(samples, "agent_input_tokens_total") == 30
    assert value(samples, "agent_output_tokens_total") == 15
    for pool in ("turns", "sessions"):
        assert ("agent_db_connections_in_use", (("pool", pool),)) in samples


def test_every_error_code_is_counted_from_zero(api: Api) -> None:
    """Before any turn: else rate() and increase() missed a code's first failure after a start."""
    samples = scrape(api.client.get("/metrics").text)

    for counter in ("agent_turns_failed_total", "agent_turns_refused_total"):
        assert {code: samples.get((counter, (("code", code),))) for code in TURN_ERROR_CODES} == {
            code: 0 for code in TURN_ERROR_CODES
        }


def test_refused_turns_are_counted_by_code(make_api: MakeApi) -> None:
    api = make_api(["Hi."], turns_per_minute=1)
    api.client.post("/process", json={"prompt": "one"})

    refused = api.client.post("/process", json={"prompt": "two"})

    assert refused.json()["error"]["code"] == "too_many_turns"
    samples = scrape(api.client.get("/metrics").text)
    assert value(samples, "agent_turns_refused_total", code="too_many_turns") == 1
    assert value(samples, "agent_turns_started_total") == 1


def test_responses_are_counted_by_route_and_status_refusals_included(make_api: MakeApi) -> None:
    api = make_api(["Hi."])
    api.client.post("/process", json={"prompt": "hi", "session_id": "s"})
    api.client.get("/sessions/nobody/history")
    api.client.get("/no/such/route")
    # Refused by middleware before their routes run: no turn counter sees them.
    api.client.post("/process", json={"prompt": "hi"}, headers={"Authorization": "Bearer no"})
    api.client.get("/sessions", headers={"Host": "attacker.example"})

    samples = scrape(api.client.get("/metrics").text)

    responses = {
        labels: count
        for (name, labels), count in samples.items()
        if name == "agent_http_responses_total"
    }
    assert responses == {
        (("route", "/process"), ("status", "200")): 1,
        (("route", "/sessions/{session_id}/history"), ("status", "404")): 1,
        (("route", "none"), ("status", "404")): 1,
        (("route", "none"), ("status", "401")): 1,
        (("route", "none"), ("status", "400")): 1,
    }


def test_metrics_need_a_credential_on_the_api_port(api: Api) -> None:
    del api.client.headers["Authorization"]

    response = api.client.get("/metrics")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_metrics_port_serves_them_alone_and_without_a_credential(tmp_path: Path) -> None:
    port = free_port()
    database_url = f"sqlite:///{tmp_path / 'metrics.db'}"
    with running_server(database_url, METRICS_PORT=str(port)) as client:
        assert client.post("/process", json={"prompt": "hello"}).status_code == 200
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
        on_api_port = client.get("/metrics")

    assert scraped.status_code == 200
    assert value(scrape(scraped.text), "agent_turns_finished_total") == 1
    assert on_api_port.status_code == 404


def test_the_metrics_port_answers_over_ipv6_too(tmp_path: Path) -> None:
    """A cluster whose pods have IPv6 addresses only scrapes them there."""
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    port = free_port()
    database_url = f"sqlite:///{tmp_path / 'metrics.db'}"
    with running_server(database_url, METRICS_PORT=str(port)):
        scraped = httpx.get(f"http://[::1]:{port}/metrics")

    assert scraped.status_code == 200
