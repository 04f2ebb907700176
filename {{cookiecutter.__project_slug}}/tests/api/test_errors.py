"""Bad requests, authentication and documentation: clear errors, and nothing reaches the model."""

import json
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError
from strands.types.exceptions import ModelThrottledException

from {{ cookiecutter.__package_name }}.api.errors import TURN_ERROR_CODES, turn_error
from {{ cookiecutter.__package_name }}.principal_limits import PrincipalLimitError
from {{ cookiecutter.__package_name }}.session_store import (
    LeaseLostError,
    SaveOutcomeUnknownError,
    SessionBusyError,
    TurnAlreadyStoredError,
    TurnKeyReusedError,
)
from {{ cookiecutter.__package_name }}.turns import (
    ClientGoneError,
    InterruptNotSupportedError,
    ModelError,
    OverloadedError,
    TurnCancelledError,
    TurnTimeoutError,
)

from ..conftest import Api, MakeApi
from ..support.http import assert_error


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"prompt": ""}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ({"prompt": "hi", "session_id": "../etc/passwd"}, 422, "invalid_request"),
        ({"prompt": "hi", "session_id": "x" * 257}, 422, "invalid_request"),
        ({"prompt": "x" * 101}, 413, "prompt_too_long"),
        # PostgreSQL cannot store NUL; a prompt of whitespace only says nothing to the model.
        ({"prompt": "before\u0000after"}, 422, "invalid_request"),
        ({"prompt": " \n\t "}, 422, "invalid_request"),
        # A misspelt field would otherwise start a new session on every turn.
        ({"prompt": "hi", "sessionId": "s"}, 422, "invalid_request"),
    ],
)
def test_bad_turn_requests(make_api: MakeApi, body: dict, status: int, code: str) -> None:
    api = make_api(max_prompt_chars=100)

    assert_error(api.client.post("/process", json=body), status, code)
    assert_error(api.client.post("/process-streaming", json=body), status, code)
    assert api.model.calls == []


# One error of each kind that stops a turn, with the status and code its client gets.
TURN_ERRORS = [
    (OverloadedError(), 429, "overloaded"),
    (PrincipalLimitError("too_many_turns", "busy", retry_after=1), 429, "too_many_turns"),
    (PrincipalLimitError("too_many_sessions", "full"), 429, "too_many_sessions"),
    (SessionBusyError("s"), 409, "session_busy"),
    (TurnAlreadyStoredError("s", "turn-1", 4), 409, "turn_already_stored"),
    (TurnKeyReusedError("s", "turn-1"), 422, "idempotency_key_reused"),
    (TurnCancelledError("s"), 409, "turn_cancelled"),
    (TurnTimeoutError("slow"), 504, "model_timeout"),
    (ModelError(ModelThrottledException("slow down")), 503, "model_throttled"),
    (ModelError(RuntimeError("down")), 502, "model_error"),
    (InterruptNotSupportedError(["approve"]), 501, "interrupt_not_supported"),
    (LeaseLostError("s"), 503, "turn_not_stored"),
    (SaveOutcomeUnknownError("s"), 503, "turn_outcome_unknown"),
    (OperationalError("SELECT 1", {}, ConnectionError("down")), 503, "database_unavailable"),
    (ClientGoneError(), 499, "client_gone"),
    (KeyError("a bug of ours"), 500, "internal_error"),
]


@pytest.mark.parametrize(("error", "status", "code"), TURN_ERRORS)
def test_what_stopped_a_turn_has_its_status_and_code(
    error: Exception, status: int, code: str
) -> None:
    failure = turn_error(error)

    assert (failure.status_code, failure.code) == (status, code)


def test_the_metrics_count_turns_by_every_code_from_zero() -> None:
    """TURN_ERROR_CODES, by which the metrics count from zero, lists each code above."""
    assert sorted(TURN_ERROR_CODES) == sorted(code for _, _, code in TURN_ERRORS)


@pytest.mark.parametrize("body", [b'{"prompt": ', b'{"prompt": "\xff"}'])
@pytest.mark.parametrize("path", ["/process", "/process-streaming", "/sessions"])
def test_a_body_that_is_not_json_gets_400(api: Api, path: str, body: bytes) -> None:
    response = api.client.post(path, content=body, headers={"Content-Type": "application/json"})

    assert_error(response, 400, "invalid_json")
    assert api.model.calls == []


@pytest.mark.parametrize(
    "content_type", [None, "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"]
)
@pytest.mark.parametrize("path", ["/process", "/process-streaming", "/sessions"])
def test_a_json_body_sent_as_another_type_says_which_header_to_send(
    api: Api, path: str, content_type: str | None
) -> None:
    """As fetch() sends JSON.stringify(body) by default (text/plain), or curl -d (a form)."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.client.post(path, content=b'{"prompt": "Hi"}', headers=headers)

    assert_error(response, 415, "unsupported_media_type")
    assert "Content-Type: application/json" in response.json()["error"]["message"]
    assert api.model.calls == []


def test_unknown_routes_and_methods(api: Api) -> None:
    assert_error(api.client.get("/no/such/route"), 404, "not_found")
    # Not redirected: Starlette's redirect is absolute, and would leave a proxy's prefix out.
    assert_error(api.client.get("/sessions/"), 404, "not_found")
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
    ],
)
def test_every_route_but_the_probes_needs_the_api_key(api: Api, method: str, path: str) -> None:
    body = {"prompt": "hi"} if path.startswith("/process") else None
    missing = api.client.request(method, path, json=body, headers={"Authorization": ""})
    wrong = api.client.request(method, path, json=body, headers={"Authorization": "Bearer nope"})

    assert_error(missing, 401, "unauthorized")
    assert_error(wrong, 401, "unauthorized")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert api.model.calls == []


def test_the_right_key_is_accepted(api: Api) -> None:
    response = api.client.get("/sessions")  # the client sends a key made for the test

    assert response.status_code == 200, response.text


def test_every_status_is_documented(make_api: MakeApi) -> None:
    paths = make_api(api_docs=True).client.get("/openapi.json").json()["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    everywhere = {"400", "401", "408", "413", "422", "500", "503"}
    assert everywhere | {"200", "409", "429", "502", "504"} <= statuses("/process", "post")
    # A streamed turn's model failures end its stream (an error event), never its status; its
    # errors are JSON all the same.
    for streamed in ("/process-streaming", "/chat"):
        assert everywhere | {"200", "409", "429"} <= statuses(streamed, "post")
        assert not {"502", "504"} & statuses(streamed, "post")
        for status, response in paths[streamed]["post"]["responses"].items():
            if status != "200":
                assert set(response["content"]) == {"application/json"}, (streamed, status)
    assert everywhere | {"201", "400", "409"} <= statuses("/sessions", "post")
    assert everywhere | {"200"} <= statuses("/sessions", "get")
    assert everywhere | {"200", "404"} <= statuses("/sessions/{session_id}", "get")
    assert everywhere | {"200", "404"} <= statuses("/sessions/{session_id}/history", "get")
    assert everywhere | {"204", "404", "409"} <= statuses("/sessions/{session_id}", "delete")
    assert {"200", "503"} <= statuses("/ready", "get")
    # A status that means several things names every code it may carry: a route's own meaning
    # of it is added to the one every route has.
    for path, operations in paths.items():
        for method, operation in operations.items():
            described = {status: r["description"] for status, r in operation["responses"].items()}
            for status, code in {"400": "invalid_host", "413": "request_too_large"}.items():
                if status in described:
                    assert code in described[status], (path, method, status)
    process = paths["/process"]["post"]["responses"]
    for status, codes in {
        "400": ["invalid_host", "invalid_json"],
        "413": ["request_too_large", "prompt_too_long"],
        "500": ["internal_error"],
        "503": [
            "database_unavailable",
            "auth_unavailable",
            "model_throttled",
            "turn_not_stored",
            "turn_outcome_unknown",
        ],
    }.items():
        for code in codes:
            assert code in process[status]["description"], (status, code)
    assert "Retry-After" in process["429"]["headers"]
    assert "WWW-Authenticate" in process["401"]["headers"]
    created = paths["/sessions"]["post"]["responses"]["201"]
    assert "Location" in created["headers"]
    assert created["content"]["application/json"]["schema"]  # the session, as before


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
