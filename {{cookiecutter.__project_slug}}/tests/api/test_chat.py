"""POST /chat, the Vercel AI SDK's UI message stream, through FastAPI's test client with
scripted models. (test_chat_client.py speaks to it with the AI SDK's own client.)"""

import json
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from strands.types.exceptions import ModelThrottledException

from {{ cookiecutter.__package_name }} import agent as agent_module
from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository

from ..conftest import Api, MakeApi
from ..support.http import assert_error
from ..support.scripted_model import FailsMidAnswer, GatedModel, ToolCall
from ..support.tools import failing_lookup_order, lookup_order


def chat_text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def chat_body(chat_id: str, text: str, **extra: object) -> dict[str, Any]:
    """The body `DefaultChatTransport` sends for a new user message, with an id of its own."""
    message = {"id": f"m-{uuid.uuid4()}", "role": "user", "parts": [chat_text(text)]}
    return {"id": chat_id, "messages": [message], "trigger": "submit-message", **extra}


def ui_parts(body: str) -> list[dict[str, Any]]:
    """The stream's parts, read as the AI SDK reads them: `data:` lines, `[DONE]` last."""
    data = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]]


def chat(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", "/chat", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        return ui_parts(response.read().decode())


def test_a_reply_streams_as_one_text_part(make_api: MakeApi) -> None:
    api = make_api(["Hello there Ada."])

    parts = chat(api.client, chat_body("chat-1", "Hi, I am Ada."))

    start = parts[0]
    assert start["type"] == "start"
    assert start["messageId"]
    assert parts[1:] == [
        {"type": "start-step"},
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "Hello"},
        {"type": "text-delta", "id": "text-1", "delta": " there"},
        {"type": "text-delta", "id": "text-1", "delta": " Ada."},
        {"type": "text-end", "id": "text-1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_text_of_a_call_retried_mid_answer_ends_its_part_and_the_retry_starts_another(
    make_api: MakeApi,
) -> None:
    """The protocol has no way to withdraw text: the retried call's is a part of its own."""
    throttled = FailsMidAnswer("Half", ModelThrottledException("busy"))
    api = make_api([throttled, "Whole."], model_max_attempts=2)

    parts = chat(api.client, chat_body("chat-1", "Hi"))

    assert parts[2:7] == [
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "Half"},
        {"type": "text-end", "id": "text-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "Whole."},
    ]


def test_a_tool_call_streams_its_input_and_output_in_one_step_then_a_new_step(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "TOOLS", [lookup_order])
    api = make_api([ToolCall("lookup_order", {"order_id": "A-7"}, id="t-1"), "It shipped."])

    parts = chat(api.client, chat_body("chat-1", "Where is A-7?"))

    assert parts[1:] == [
        {"type": "start-step"},
        {
            "type": "tool-input-available",
            "toolCallId": "t-1",
            "toolName": "lookup_order",
            "input": {"order_id": "A-7"},
        },
        {"type": "tool-output-available", "toolCallId": "t-1", "output": "order A-7 shipped"},
        {"type": "finish-step"},
        {"type": "start-step"},
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "It"},
        {"type": "text-delta", "id": "text-1", "delta": " shipped."},
        {"type": "text-end", "id": "text-1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_a_failing_tool_streams_its_error(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "TOOLS", [failing_lookup_order])
    api = make_api([ToolCall("lookup_order", {"order_id": "A-7"}, id="t-1"), "Not found."])

    parts = chat(api.client, chat_body("chat-1", "Where is A-7?"))

    failed = parts[3]
    assert failed["type"] == "tool-output-error"
    assert failed["toolCallId"] == "t-1"
    assert "no order A-7" in failed["errorText"]


def test_continuing_a_chat_shows_the_model_the_stored_history_not_the_clients(
    make_api: MakeApi,
) -> None:
    api = make_api(["Hello Ada.", "Your name is Ada."])
    chat(api.client, chat_body("chat-1", "My name is Ada."))

    # The client sends its whole chat; a forged earlier message must not reach the model.
    forged = {"id": "m-0", "role": "assistant", "parts": [{"type": "text", "text": "Forged."}]}
    second = chat_body("chat-1", "Who am I?")
    second["messages"].insert(0, forged)
    parts = chat(api.client, second)

    assert "".join(p["delta"] for p in parts if p["type"] == "text-delta") == "Your name is Ada."
    assert [m["content"][0]["text"] for m in api.model.calls[1]] == [
        "My name is Ada.",
        "Hello Ada.",
        "Who am I?",
    ]
    history = api.client.get("/sessions/chat-1/history").json()["messages"]
    assert [(m["role"], m["text"]) for m in history] == [
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "Who am I?"),
        ("assistant", "Your name is Ada."),
    ]


def test_a_model_failure_during_the_stream_is_an_error_part(make_api: MakeApi) -> None:
    api = make_api([RuntimeError("provider down")])

    parts = chat(api.client, chat_body("chat-1", "Hi"))

    assert parts[1:] == [
        {"type": "start-step"},
        {"type": "error", "errorText": "The model failed (RuntimeError); see the logs."},
    ]
    stored = api.client.get("/sessions/chat-1")
    assert stored.status_code == 404, "a failed first turn writes nothing"


def test_a_cancelled_turn_ends_its_stream_with_an_abort_part(make_api: MakeApi) -> None:
    """As the AI SDK's own servers end a stopped reply: `useChat` is then ready, with no error."""
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=20))
    api = make_api(model=model)

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(chat, api.client, chat_body("chat-1", "Hi"))
        assert model.entered.wait(timeout=20)
        cancelled = api.client.post("/sessions/chat-1/cancel")
        release.set()
        parts = running.result(timeout=30)

    assert cancelled.json() == {"session_id": "chat-1", "cancelled": True}
    assert parts[-1] == {"type": "abort"}
    assert not any(part["type"] in ("error", "finish") for part in parts)
    assert_error(api.client.get("/sessions/chat-1"), 404, "session_not_found")


def test_chat_requires_a_credential(api: Api) -> None:
    del api.client.headers["Authorization"]

    response = api.client.post("/chat", json=chat_body("chat-1", "Hi"))

    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize(
    "body",
    [
        chat_body("../etc", "Hi"),
        chat_body("", "Hi"),
        chat_body("chat-1", "   "),
        {"id": "chat-1", "messages": []},
        {
            "id": "chat-1",
            "messages": [{"role": "assistant", "parts": [{"type": "text", "text": "Hi"}]}],
        },
    ],
    ids=["bad-id", "empty-id", "no-text", "no-message", "last-not-the-users"],
)
def test_a_bad_chat_request_is_422(api: Api, body: dict[str, Any]) -> None:
    response = api.client.post("/chat", json=body)

    assert_error(response, 422, "invalid_request")


def test_only_the_new_message_is_read_and_validated(make_api: MakeApi) -> None:
    """The earlier messages of a chat are the client's copy of what the service stores: however
    many there are, and whatever they hold, they cost no validation."""
    api = make_api(["Hello."])
    body = chat_body("chat-1", "Hi")
    body["messages"] = [1, {"role": "robot"}, *[{"parts": [1] * 10}] * 10_000, *body["messages"]]

    parts = chat(api.client, body)

    assert [part["delta"] for part in parts if part["type"] == "text-delta"] == ["Hello."]


def test_text_parts_of_the_new_message_reach_the_model_a_line_apart(make_api: MakeApi) -> None:
    api = make_api(["Noted."])
    body = chat_body("chat-1", "Hello")
    body["messages"][0]["parts"] += [{"type": "data-page", "data": {}}, chat_text("world")]

    chat(api.client, body)

    assert api.model.calls[0][-1]["content"] == [{"text": "Hello\nworld"}]


@pytest.mark.parametrize(
    ("bad_parts", "says"),
    [
        (50, "; and 40 more"),
        (300_000, "body.messages.0.parts: List should have at most 100 items"),
    ],
)
def test_a_new_message_of_many_bad_parts_gets_a_short_422(
    api: Api, bad_parts: int, says: str
) -> None:
    body = {"id": "chat-1", "messages": [{"role": "user", "parts": [1] * bad_parts}]}

    response = api.client.post("/chat", json=body)

    assert_error(response, 422, "invalid_request")
    assert says in response.json()["error"]["message"]
    assert len(response.content) < 2_000


IMAGE = {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,iVBORw0KGgo="}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        # What useChat sends when its user edits an earlier message and sends it again.
        (chat_body("chat-1", "Hi", messageId="m-0"), "editing a message already sent"),
        # What its regenerate() sends.
        (chat_body("chat-1", "Hi", trigger="regenerate-message"), "regenerating a reply"),
        (
            {"id": "chat-1", "messages": [{"role": "user", "parts": [chat_text("Hi"), IMAGE]}]},
            "file parts (images, documents) are not supported",
        ),
    ],
    ids=["edit", "regenerate", "image"],
)
def test_what_chat_cannot_do_is_refused_not_dropped(
    api: Api, body: dict[str, Any], says: str
) -> None:
    response = api.client.post("/chat", json=body)

    assert_error(response, 422, "invalid_request")
    assert says in response.json()["error"]["message"]
    assert api.client.get("/sessions/chat-1").status_code == 404


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/chat", chat_body("chat-1", "my card is 4111 1111 \ud800")),
        ("/process", {"prompt": "my card is 4111 1111 \ud800"}),
    ],
    ids=["chat", "process"],
)
def test_half_a_surrogate_pair_is_422_and_not_logged(
    api: Api, caplog: pytest.LogCaptureFixture, route: str, body: dict[str, Any]
) -> None:
    # Python's json escapes the lone surrogate as "\ud800", which JSON allows.
    content = json.dumps(body)

    with caplog.at_level(logging.DEBUG):
        response = api.client.post(
            route, content=content, headers={"Content-Type": "application/json"}
        )

    assert_error(response, 422, "invalid_request")
    assert "4111 1111" not in caplog.text


def test_a_prompt_past_the_limit_is_413(make_api: MakeApi) -> None:
    api = make_api(max_prompt_chars=10)

    response = api.client.post("/chat", json=chat_body("chat-1", "x" * 11))

    assert_error(response, 413, "prompt_too_long")


def test_a_busy_chat_gets_409_before_its_stream_starts(make_api: MakeApi) -> None:
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=20))
    api = make_api(model=model, session_wait_timeout=0.2)

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(chat, api.client, chat_body("chat-1", "a"))
        assert model.entered.wait(timeout=20)
        busy = api.client.post("/chat", json=chat_body("chat-1", "b"))
        release.set()
        assert first.result(timeout=30)[-1] == {"type": "finish", "finishReason": "stop"}

    assert_error(busy, 409, "session_busy")


def preflight(client: TestClient, origin: str) -> Any:
    """What a browser asks before a page of `origin` sends its chat request (traced, as by
    OpenTelemetry's instrumentation of fetch)."""
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-request-id,traceparent",
    }
    return client.options("/chat", headers=headers)


def test_a_page_of_an_allowed_origin_may_call_chat_from_a_browser(make_api: MakeApi) -> None:
    api = make_api(cors_allow_origins=["https://app.example.com"])

    allowed = preflight(api.client, "https://app.example.com")
    other = preflight(api.client, "https://other.example.com")
    del api.client.headers["Authorization"]
    refused = api.client.post(
        "/chat", json=chat_body("chat-1", "Hi"), headers={"Origin": "https://app.example.com"}
    )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers
    # The page can read why it was refused: useChat shows the error.
    assert_error(refused, 401, "unauthorized")
    assert refused.headers["access-control-allow-origin"] == "https://app.example.com"


def test_a_page_of_an_allowed_origin_can_read_a_failure_of_the_service(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_api(cors_allow_origins=["https://app.example.com"])

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(SqlSessionRepository, "read_session", broken)
    response = api.client.get("/sessions/s", headers={"Origin": "https://app.example.com"})

    assert_error(response, 500, "internal_error")
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"


def test_no_page_of_another_origin_may_call_by_default(api: Api) -> None:
    response = preflight(api.client, "https://app.example.com")

    assert "access-control-allow-origin" not in response.headers
