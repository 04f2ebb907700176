"""The turn routes through FastAPI's test client, on SQLite and PostgreSQL, with scripted models."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.__package_name }} import agent as agent_module
from {{ cookiecutter.__package_name }}.api import app as app_module
from {{ cookiecutter.__package_name }}.config import Settings
from {{ cookiecutter.__package_name }}.echo import EchoModel

from ..conftest import MakeApi
from ..support.databases import new_api_key, settings_for
from ..support.http import assert_error
from ..support.scripted_model import CutShort, GatedModel, ToolCall
from ..support.sse import parse_events, streamed_text
from ..support.tools import lookup_order


def stream(client: TestClient, **body: object) -> list:
    with client.stream("POST", "/process-streaming", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_events(response.read().decode())


def test_every_turn_of_a_process_runs_on_one_model(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider's client is built once per process, not per turn (boto3's, for Bedrock, is the
    costliest)."""
    built: list[EchoModel] = []

    def build_model(settings: Settings) -> EchoModel:
        built.append(EchoModel())
        return built[-1]

    monkeypatch.setattr(app_module, "build_model", build_model)
    headers = {"Authorization": f"Bearer {new_api_key(database_url)}"}
    with TestClient(app_module.create_app(settings_for(database_url)), headers=headers) as client:
        answers = [client.post("/process", json={"prompt": f"Hi {n}"}) for n in range(3)]

    expected = [f"You said: Hi {n}" for n in range(3)]
    assert [answer.json()["response"] for answer in answers] == expected
    assert len(built) == 1


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


def test_an_answer_cut_at_max_tokens_ends_its_turn_and_is_stored(make_api: MakeApi) -> None:
    api = make_api([CutShort("A long essay that"), CutShort("goes on"), "The end."])

    cut = api.client.post("/process", json={"prompt": "Write an essay.", "session_id": "s"})
    events = stream(api.client, prompt="Go on.", session_id="s")
    api.client.post("/process", json={"prompt": "Finish it.", "session_id": "s"})

    assert cut.status_code == 200
    assert cut.json()["response"] == "A long essay that"
    assert cut.json()["stop_reason"] == "max_tokens"
    assert events[-1].event == "done"
    assert events[-1].data["stop_reason"] == "max_tokens"
    assert streamed_text(events) == events[-1].data["response"] == "goes on"
    shown = [m["content"][0]["text"] for m in api.model.calls[-1]]
    assert shown == ["Write an essay.", "A long essay that", "Go on.", "goes on", "Finish it."]


def test_a_tool_call_cut_at_max_tokens_is_not_announced_nor_run(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "TOOLS", [lookup_order])
    api = make_api([CutShort(ToolCall("lookup_order", {"order_id": "A-7"})), "It shipped."])

    events = stream(api.client, prompt="Where is A-7?", session_id="s")
    after = api.client.post("/process", json={"prompt": "And now?", "session_id": "s"})

    assert [event.event for event in events] == ["session", "done"]
    assert events[-1].data["stop_reason"] == "max_tokens"
    assert after.status_code == 200
    history = api.client.get("/sessions/s/history").json()["messages"]
    assert not any("toolResult" in block for m in history for block in m["content"])


@pytest.mark.parametrize(
    "unstorable",
    [
        "\x00",  # NUL: PostgreSQL's jsonb cannot hold it
        "\udcff",  # half a surrogate pair (as Python decodes an undecodable file name): no UTF-8
    ],
)
def test_what_a_database_cannot_hold_in_an_answer_is_stored_as_a_replacement_character(
    make_api: MakeApi, unstorable: str
) -> None:
    # A model or a tool may produce it; the turn is stored, and answered as it is stored.
    api = make_api([f"A {unstorable} byte.", "Still here."])

    first = api.client.post("/process", json={"prompt": "Say it.", "session_id": "s"})
    second = api.client.post("/process", json={"prompt": "Again.", "session_id": "s"})

    assert first.status_code == second.status_code == 200, first.text
    assert first.json()["response"] == "A \ufffd byte."
    history = api.client.get("/sessions/s/history").json()["messages"]
    assert [m["text"] for m in history] == ["Say it.", "A \ufffd byte.", "Again.", "Still here."]


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
    monkeypatch.setattr(agent_module, "TOOLS", [lookup_order])
    api = make_api([ToolCall("lookup_order", {"order_id": "A-7"}, id="t-1"), "It shipped."])

    events = stream(api.client, prompt="Where is A-7?", session_id="s")

    kinds = [event.event for event in events]
    assert kinds == ["session", "tool_use", "tool_result", "text", "text", "done"]
    assert events[1].data == {"id": "t-1", "name": "lookup_order", "input": {"order_id": "A-7"}}
    assert events[2].data == {"id": "t-1", "status": "success"}
    history = api.client.get("/sessions/s/history").json()["messages"]
    assert history[2]["content"][0]["toolResult"]["content"] == [{"text": "order A-7 shipped"}]


def test_a_turn_sent_again_with_its_idempotency_key_is_refused_not_stored_twice(
    make_api: MakeApi,
) -> None:
    api = make_api(["Hello.", "Hello again."])
    body, key = {"prompt": "hi", "session_id": "s"}, {"Idempotency-Key": "turn-1"}

    first = api.client.post("/process", json=body, headers=key)
    again = api.client.post("/process", json=body, headers=key)
    streamed = api.client.post("/process-streaming", json=body, headers=key)
    another = api.client.post("/process", json=body, headers={"Idempotency-Key": "turn-2"})
    reused = api.client.post("/process", json={**body, "prompt": "bye"}, headers=key)

    assert first.status_code == another.status_code == 200
    assert_error(again, 409, "turn_already_stored")
    assert_error(streamed, 409, "turn_already_stored")
    assert_error(reused, 422, "idempotency_key_reused")  # a new turn needs a new key
    assert "from message 0" in again.json()["error"]["message"]
    history = api.client.get("/sessions/s/history").json()["messages"]
    assert [message["text"] for message in history] == ["hi", "Hello.", "hi", "Hello again."]
    assert api.client.delete("/sessions/s").status_code == 204, "its keys go with it"


def test_a_turn_sent_again_while_it_runs_waits_for_it_then_is_refused(make_api: MakeApi) -> None:
    """As a client does whose proxy gave up on a long turn: the turn it sent again waits for the
    session, and finds the first stored."""
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=20))
    api = make_api(model=model, session_wait_timeout=20)
    body, key = {"prompt": "hi", "session_id": "s"}, {"Idempotency-Key": "turn-1"}

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(api.client.post, "/process", json=body, headers=key)
        assert model.entered.wait(timeout=20)
        again = pool.submit(api.client.post, "/process", json=body, headers=key)
        release.set()
        assert first.result(timeout=30).status_code == 200
        assert_error(again.result(timeout=30), 409, "turn_already_stored")

    assert len(api.repository.list_messages("s", "default")) == 2


def test_a_failed_turn_sent_again_with_its_key_runs(make_api: MakeApi) -> None:
    api = make_api([RuntimeError("down"), "Hello."], model_max_attempts=1)
    body, key = {"prompt": "hi", "session_id": "s"}, {"Idempotency-Key": "turn-1"}
    api.client.post("/sessions", json={"session_id": "s"})

    failed = api.client.post("/process", json=body, headers=key)
    again = api.client.post("/process", json=body, headers=key)

    assert failed.status_code == 502
    assert again.status_code == 200, again.text


@pytest.mark.parametrize("key", ["", "two words", "x" * 129])
def test_a_bad_idempotency_key_is_422(make_api: MakeApi, key: str) -> None:
    api = make_api()
    body = {"prompt": "hi", "session_id": "s"}

    response = api.client.post("/process", json=body, headers={"Idempotency-Key": key})

    assert_error(response, 422, "invalid_request")
    assert api.model.calls == []


def test_an_idempotency_key_needs_a_session_id(make_api: MakeApi) -> None:
    api = make_api()

    response = api.client.post("/process", json={"prompt": "hi"}, headers={"Idempotency-Key": "k"})

    assert_error(response, 422, "invalid_request")
    assert "needs a session_id" in response.json()["error"]["message"]
