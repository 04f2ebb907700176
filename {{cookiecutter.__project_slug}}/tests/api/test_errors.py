"""Bad requests, authentication and documentation: clear errors, and nothing reaches the model."""

import json
from collections.abc import Callable, Iterator

import pytest

from ..conftest import Api
from ..support.http import assert_error

MakeApi = Callable[..., Api]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"prompt": ""}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ({"prompt": "hi", "session_id": "../etc/passwd"}, 422, "invalid_request"),
        ({"prompt": "hi", "session_id": "x" * 129}, 422, "invalid_request"),
        ({"prompt": "x" * 101}, 413, "prompt_too_long"),
    ],
)
def test_bad_turn_requests(make_api: MakeApi, body: dict, status: int, code: str) -> None:
    api = make_api(max_prompt_chars=100)

    assert_error(api.client.post("/process", json=body), status, code)
    assert_error(api.client.post("/process-streaming", json=body), status, code)
    assert api.model.calls == []


def test_malformed_json_and_unknown_routes(api: Api) -> None:
    malformed = api.client.post(
        "/process", content=b'{"prompt": ', headers={"Content-Type": "application/json"}
    )

    assert_error(malformed, 422, "invalid_request")
    assert_error(api.client.get("/no/such/route"), 404, "not_found")
    assert_error(api.client.delete("/health"), 405, "method_not_allowed")
    assert_error(api.client.get("/sessions/bad%0Aid"), 422, "invalid_request")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/process"),
        ("POST", "/process-streaming"),
        ("GET", "/sessions"),
        ("POST", "/sessions"),
        ("GET", "/sessions/s"),
        ("GET", "/sessions/s/history"),
        ("DELETE", "/sessions/s"),
        ("GET", "/ready"),
    ],
)
def test_every_route_but_health_needs_the_api_key(api: Api, method: str, path: str) -> None:
    body = {"prompt": "hi"} if path.startswith("/process") else None
    missing = api.client.request(method, path, json=body, headers={"Authorization": ""})
    wrong = api.client.request(method, path, json=body, headers={"Authorization": "Bearer nope"})

    assert_error(missing, 401, "unauthorized")
    assert_error(wrong, 401, "unauthorized")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert api.client.get("/health", headers={"Authorization": ""}).status_code == 200
    assert api.model.calls == []


def test_the_right_key_is_accepted(api: Api) -> None:
    response = api.client.get("/ready")  # the client sends a key made for the test

    assert response.json() == {"status": "ok"}


def test_routes_and_schemas_are_documented(make_api: MakeApi) -> None:
    api = make_api(api_docs=True)

    document = api.client.get("/openapi.json").json()

    assert {"/process", "/process-streaming", "/sessions", "/sessions/{session_id}"} <= set(
        document["paths"]
    )
    assert "/sessions/{session_id}/history" in document["paths"]
    assert {"TurnRequest", "TurnResult", "ErrorResponse", "History"} <= set(
        document["components"]["schemas"]
    )


def test_a_body_over_the_size_limit_gets_413(make_api: MakeApi) -> None:
    api = make_api(max_body_bytes=2048)
    body = json.dumps({"prompt": "x" * 4096}).encode()

    response = api.client.post(
        "/process", content=body, headers={"Content-Type": "application/json"}
    )

    assert_error(response, 413, "request_too_large")
    assert api.model.calls == []


def test_a_streamed_body_over_the_size_limit_gets_413(make_api: MakeApi) -> None:
    api = make_api(max_body_bytes=2048)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is known only as it arrives
        yield b'{"prompt": "'
        for _ in range(8):
            yield b"x" * 512
        yield b'"}'

    response = api.client.post(
        "/process", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert_error(response, 413, "request_too_large")
    assert api.model.calls == []
