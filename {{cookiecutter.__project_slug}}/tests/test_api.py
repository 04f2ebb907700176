"""The HTTP API through FastAPI's test client, on SQLite and PostgreSQL, with a scripted model."""

import json
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from strands import tool

from {{ cookiecutter.__package_name }} import agent as agent_module

from .conftest import Api
from .databases import API_KEY
from .scripted_model import ToolCall
from .sse import parse_events, streamed_text

MakeApi = Callable[..., Api]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def stream(client: TestClient, **body: object) -> list:
    with client.stream("POST", "/process-streaming", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_events(response.read().decode())


# Turns


def test_two_turns_on_one_session(make_api: MakeApi) -> None:
    api = make_api(["Hello Ada.", "Your name is Ada."])

    first = api.client.post("/process", json={"prompt": "My name is Ada."})
    session_id = first.json()["session_id"]
    second = api.client.post("/process", json={"prompt": "Who am I?", "session_id": session_id})

    assert first.status_code == second.status_code == 200
    assert uuid.UUID(session_id)
    assert second.json() == {
        "session_id": session_id,
        "response": "Your name is Ada.",
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
    }
    shown = api.model.calls[1]
    assert [m["content"][0]["text"] for m in shown] == [
        "My name is Ada.",
        "Hello Ada.",
        "Who am I?",
    ]
    history = api.client.get(f"/sessions/{session_id}/history").json()["messages"]
    assert [(m["role"], m["text"]) for m in history] == [
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "Who am I?"),
        ("assistant", "Your name is Ada."),
    ]


def test_a_given_session_id_is_created_when_new(make_api: MakeApi) -> None:
    api = make_api(["Hi."])

    response = api.client.post("/process", json={"prompt": "Hi", "session_id": "my-chat"})

    assert response.json()["session_id"] == "my-chat"
    assert api.client.get("/sessions/my-chat").json()["message_count"] == 2


def test_streaming_events_in_order_and_equal_to_what_is_stored(make_api: MakeApi) -> None:
    api = make_api(["Streams arrive word by word."])

    events = stream(api.client, prompt="Stream please", session_id="s")

    assert events[0].event == "session"
    assert events[0].data == {"session_id": "s"}
    assert {e.event for e in events[1:-1]} == {"text"}
    assert len(events[1:-1]) == 5
    done = events[-1]
    assert done.event == "done"
    assert done.data["response"] == streamed_text(events) == "Streams arrive word by word."
    stored = api.client.get("/sessions/s/history").json()["messages"][-1]
    assert stored["text"] == done.data["response"]


def test_a_tool_turn_streams_its_tool_events(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    @tool
    def lookup_order(order_id: str) -> str:
        """Look up an order.

        Args:
            order_id: The order number.
        """
        return f"order {order_id} shipped"

    monkeypatch.setattr(agent_module, "TOOLS", [lookup_order])
    api = make_api([ToolCall("lookup_order", {"order_id": "A-7"}, id="t-1"), "It shipped."])

    events = stream(api.client, prompt="Where is A-7?", session_id="s")

    kinds = [event.event for event in events]
    assert kinds == ["session", "tool_use", "tool_result", "text", "text", "done"]
    assert events[1].data == {"id": "t-1", "name": "lookup_order", "input": {"order_id": "A-7"}}
    assert events[2].data == {"id": "t-1", "status": "success"}
    history = api.client.get("/sessions/s/history").json()["messages"]
    assert history[2]["content"][0]["toolResult"]["content"] == [{"text": "order A-7 shipped"}]


# Sessions


def test_create_list_inspect_and_delete_sessions(make_api: MakeApi) -> None:
    api = make_api(["Hi."])
    created = api.client.post("/sessions", json={"session_id": "support-1"})
    anonymous = api.client.post("/sessions")
    api.client.post("/process", json={"prompt": "Hello", "session_id": "support-1"})

    assert created.status_code == anonymous.status_code == 201
    assert uuid.UUID(anonymous.json()["session_id"])
    detail = api.client.get("/sessions/support-1").json()
    assert detail["message_count"] == 2
    assert [(a["agent_id"], a["message_count"]) for a in detail["agents"]] == [("default", 2)]
    newest = api.client.get("/sessions/support-1/history").json()["messages"][-1]
    assert detail["updated_at"] == detail["agents"][0]["updated_at"] >= newest["created_at"]
    again = api.client.post("/sessions", json={"session_id": "support-1"})
    assert_error(again, 409, "already_exists")

    assert api.client.delete("/sessions/support-1").status_code == 204
    assert_error(api.client.get("/sessions/support-1"), 404, "session_not_found")
    assert_error(api.client.get("/sessions/support-1/history"), 404, "session_not_found")
    assert_error(api.client.delete("/sessions/support-1"), 404, "session_not_found")
    assert api.repository.count_messages("support-1") == 0


def test_sessions_are_paged_newest_first(api: Api) -> None:
    for number in range(5):
        api.client.post("/sessions", json={"session_id": f"s-{number}"})

    pages, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/sessions", params=params).json()
        pages.append([s["session_id"] for s in page["sessions"]])
        if not (cursor := page["next_cursor"]):
            break

    assert pages == [["s-4", "s-3"], ["s-2", "s-1"], ["s-0"]]
    assert_error(api.client.get("/sessions", params={"limit": 101}), 422, "invalid_request")
    assert_error(api.client.get("/sessions", params={"cursor": "garbage"}), 422, "invalid_request")


def test_history_is_paged_with_limit_and_offset(make_api: MakeApi) -> None:
    api = make_api([f"reply {n}" for n in range(3)])
    for n in range(3):
        api.client.post("/process", json={"prompt": f"prompt {n}", "session_id": "s"})

    first = api.client.get("/sessions/s/history", params={"limit": 4}).json()
    rest = api.client.get("/sessions/s/history", params={"offset": first["next_offset"]}).json()

    assert [m["message_id"] for m in first["messages"]] == [0, 1, 2, 3]
    assert first["next_offset"] == 4
    assert [m["text"] for m in rest["messages"]] == ["prompt 2", "reply 2"]
    assert rest["next_offset"] is None
    other = api.client.get("/sessions/s/history", params={"agent_id": "nobody"}).json()
    assert other["messages"] == []


# Errors


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
    assert_error(api.client.get("/sessions/bad%20id"), 422, "invalid_request")


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
    response = api.client.get("/ready", headers={"Authorization": f"Bearer {API_KEY}"})

    assert response.json() == {"status": "ok"}


def test_routes_and_schemas_are_documented(api: Api) -> None:
    document = api.client.get("/openapi.json").json()

    assert {"/process", "/process-streaming", "/sessions", "/sessions/{session_id}"} <= set(
        document["paths"]
    )
    assert "/sessions/{session_id}/history" in document["paths"]
    assert {"TurnRequest", "TurnResponse", "ErrorResponse", "History"} <= set(
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
