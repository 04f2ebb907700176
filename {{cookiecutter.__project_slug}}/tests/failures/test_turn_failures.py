"""A turn that fails stores nothing: the client gets a clear status, the session stays valid."""

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from strands import Agent
from strands.hooks import AfterModelCallEvent
from strands.types.exceptions import ModelThrottledException

from {{ cookiecutter.__package_name }} import agent as agent_module
from {{ cookiecutter.__package_name }} import turns
from {{ cookiecutter.__package_name }}.api.app import create_app
from {{ cookiecutter.__package_name }}.session_store import (
    SqlSessionRepository,
    TurnStore,
    UnitOfWork,
)
from {{ cookiecutter.__package_name }}.turns import ModelError, ModelFailures

from ..conftest import Api, MakeApi, MakeRunner, client_stays
from ..support.databases import new_api_key, settings_for
from ..support.http import assert_error
from ..support.scripted_model import (
    FailsMidAnswer,
    GatedModel,
    ProviderOverloaded,
    ScriptedModel,
    ToolCall,
    out_of_credit,
)
from ..support.sessions import assert_valid_conversation
from ..support.sse import parse_events
from ..support.tools import delete_order


def roles(api: Api, session_id: str = "s") -> list[str]:
    return [m.message["role"] for m in api.repository.list_messages(session_id, "default")]


def assert_valid(api: Api, session_id: str = "s") -> None:
    stored = api.repository.list_messages(session_id, "default")
    assert_valid_conversation([message.to_message() for message in stored])


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (RuntimeError("provider exploded"), 502, "model_error"),
        # The provider's own timeout is the model's failure, not the turn's TURN_TIMEOUT.
        (TimeoutError("provider exploded"), 502, "model_error"),
        (ModelThrottledException("slow down"), 503, "model_throttled"),
        (ProviderOverloaded("provider exploded: overloaded"), 503, "model_throttled"),
    ],
)
def test_a_failing_model_is_reported_and_its_turn_rolled_back(
    make_api: MakeApi,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    status: int,
    code: str,
) -> None:
    api = make_api(["First answer.", failure, "Third answer."], model_max_attempts=1)
    api.client.post("/process", json={"prompt": "one", "session_id": "s"})

    failed = api.client.post("/process", json={"prompt": "two", "session_id": "s"})
    after = api.client.post("/process", json={"prompt": "three", "session_id": "s"})

    assert failed.status_code == status
    assert failed.json()["error"]["code"] == code
    assert "provider exploded" not in failed.text, "provider messages stay in the logs"
    assert str(failure) in caplog.text
    if code == "model_throttled":
        assert failed.headers["Retry-After"] == "5"
    assert after.status_code == 200
    shown = [m["content"][0]["text"] for m in api.model.calls[-1]]
    assert shown == ["one", "First answer.", "three"], "the failed prompt is gone"
    assert roles(api) == ["user", "assistant", "user", "assistant"]


def test_a_turn_the_database_keeps_from_starting_is_logged_as_an_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A turn that started logs why it failed; one that could not start, for the SQLite file
    held by another writer past SQLITE_BUSY_TIMEOUT_MS, said nothing of it."""
    path = tmp_path / "busy.db"
    settings = settings_for(f"sqlite:///{path}", auth_mode="none", sqlite_busy_timeout_ms=100)
    app = create_app(settings, model=ScriptedModel(["Hi."]))
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        other = sqlite3.connect(path)  # another process, writing
        other.execute("BEGIN IMMEDIATE")
        try:
            response = client.post("/process", json={"prompt": "hello"})
        finally:
            other.rollback()
            other.close()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert "database unavailable: (sqlite3.OperationalError) database is locked" in caplog.text


def test_a_failed_first_turn_leaves_no_session_behind(make_api: MakeApi) -> None:
    api = make_api(
        [RuntimeError("provider exploded")] * 2 + ["Hi."],
        model_max_attempts=1,
        max_sessions_per_principal=1,
    )

    failed = [
        api.client.post("/process", json={"prompt": "hi", "session_id": session_id})
        for session_id in ("a", "b")
    ]
    sessions = api.client.get("/sessions").json()["sessions"]
    third = api.client.post("/process", json={"prompt": "hi", "session_id": "c"})

    assert [response.status_code for response in failed] == [502, 502]
    assert sessions == [], "a turn that fails writes nothing, not even its new session"
    assert third.status_code == 200, "failed turns took none of the principal's sessions"


class HangingModel(ScriptedModel):
    async def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict]:
        yield {"messageStart": {"role": "assistant"}}
        await asyncio.sleep(60)


def test_a_turn_longer_than_the_turn_timeout_gets_504(make_api: MakeApi) -> None:
    api = make_api(model=HangingModel(), turn_timeout=0.3)

    response = api.client.post("/process", json={"prompt": "hello?", "session_id": "s"})

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "model_timeout"
    assert roles(api) == []


def test_a_failure_after_a_tool_call_leaves_no_dangling_tool_use(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strands import tool

    from {{ cookiecutter.__package_name }} import agent as agent_module

    @tool
    def ping() -> str:
        """Answer pong."""
        return "pong"

    monkeypatch.setattr(agent_module, "TOOLS", [ping])
    api = make_api(["Hi.", ToolCall("ping"), RuntimeError("lost the thread"), "Hi again."])
    api.client.post("/process", json={"prompt": "hello", "session_id": "s"})

    failed = api.client.post("/process", json={"prompt": "ping it", "session_id": "s"})
    after = api.client.post("/process", json={"prompt": "hello again", "session_id": "s"})

    assert failed.status_code == 502
    assert after.status_code == 200
    assert roles(api) == ["user", "assistant", "user", "assistant"]
    assert_valid(api)


def test_a_turn_interrupted_for_an_answer_stores_nothing(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API carries no answer back to a Strands interrupt: stored, the turn would leave a tool
    call without its result, and the SDK would refuse every later prompt of the session."""
    monkeypatch.setattr(agent_module, "TOOLS", [delete_order])
    api = make_api(["Hi.", ToolCall("delete_order", {"order_id": "A-7"}), "Hi again."])
    api.client.post("/process", json={"prompt": "hello", "session_id": "s"})

    interrupted = api.client.post("/process", json={"prompt": "delete A-7", "session_id": "s"})
    after = api.client.post("/process", json={"prompt": "hello again", "session_id": "s"})

    assert_error(interrupted, 501, "interrupt_not_supported")
    assert "approve-delete" in interrupted.json()["error"]["message"]
    assert after.status_code == 200, after.text
    assert roles(api) == ["user", "assistant", "user", "assistant"]
    assert_valid(api)


def test_a_stream_that_fails_ends_with_an_error_event(make_api: MakeApi) -> None:
    api = make_api(["Fine.", RuntimeError("boom")])
    api.client.post("/process", json={"prompt": "one", "session_id": "s"})

    with api.client.stream(
        "POST", "/process-streaming", json={"prompt": "two", "session_id": "s"}
    ) as response:
        events = parse_events(response.read().decode())

    assert [e.event for e in events] == ["session", "error"]
    assert events[-1].data["code"] == "model_error"
    assert roles(api) == ["user", "assistant"]


def test_a_failure_of_the_service_itself_is_500_not_a_model_error(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api = make_api(["First.", "Second."])
    api.client.post("/process", json={"prompt": "one", "session_id": "s"})

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(UnitOfWork, "create_message", broken)
    response = api.client.post("/process", json={"prompt": "two", "session_id": "s"})

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "a bug of ours" in caplog.text, "logged with its traceback"
    assert len(tracebacks(caplog)) == 1
    assert roles(api) == ["user", "assistant"]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


def test_a_turn_that_fails_to_start_is_500_logged_once(
    database_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_agent(*args: object, **kwargs: object) -> Agent:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(turns, "build_agent", broken_agent)
    app = create_app(settings_for(database_url))
    key = new_api_key(database_url)
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        response = client.post("/process", json={"prompt": "hi", "session_id": "s"})
        streamed = client.post("/process-streaming", json={"prompt": "hi", "session_id": "s"})
        stored = client.get("/sessions/s")

    for failed in (response, streamed):
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "internal_error"
        assert "a bug of ours" not in failed.text
    assert [str(r.exc_info[1]) for r in tracebacks(caplog)] == ["a bug of ours"] * 2
    assert stored.status_code == 404, "the session the failed turns created went with them"


def test_a_bug_while_the_model_fails_is_500_not_a_model_error(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The service's own error, raised while it handles the model's: the model is not to blame."""
    api = make_api([RuntimeError("provider exploded")], model_max_attempts=1)

    def broken_hook(self: ModelFailures, event: AfterModelCallEvent) -> None:
        if event.exception is not None:
            raise KeyError("a bug of ours")

    monkeypatch.setattr(ModelFailures, "_record", broken_hook)
    response = api.client.post("/process", json={"prompt": "hi", "session_id": "s"})

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert len(tracebacks(caplog)) == 1
    assert roles(api) == []


@pytest.mark.anyio
async def test_a_failed_turn_is_answered_when_its_lease_cannot_be_given_back(
    make_runner: MakeRunner,
    repository: SqlSessionRepository,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(TurnStore, "give_up", broken)
    runner = make_runner(ScriptedModel([RuntimeError("provider exploded"), "Second."]))

    failed = await runner.start("s", "local", "hi", client_stays)
    with pytest.raises(ModelError):
        await asyncio.wait_for(failed.result(), timeout=10)  # not left waiting for ever
    # The session the failed turn created stays, its lease held until it expires.
    after = await runner.start("s", "local", "again", client_stays)
    await asyncio.wait_for(after.result(), timeout=10)

    assert "a bug of ours" in caplog.text, "logged with its traceback"
    assert repository.message_counts("s") == {"default": 2}


def test_a_second_turn_on_a_busy_session_gets_409_after_the_wait_timeout(
    make_api: MakeApi,
) -> None:
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=20))
    api = make_api(model=model, session_wait_timeout=0.2)

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(api.client.post, "/process", json={"prompt": "a", "session_id": "s"})
        assert model.entered.wait(timeout=20)
        asked = time.monotonic()
        busy = api.client.post("/process", json={"prompt": "b", "session_id": "s"})
        waited = time.monotonic() - asked
        streamed = api.client.post("/process-streaming", json={"prompt": "c", "session_id": "s"})
        other = api.client.get("/sessions/s")
        read_while_busy = not first.done()
        deleted = api.client.delete("/sessions/s")
        release.set()
        assert first.result(timeout=30).status_code == 200

    assert busy.status_code == streamed.status_code == deleted.status_code == 409
    assert busy.json()["error"]["code"] == deleted.json()["error"]["code"] == "session_busy"
    assert busy.headers["Retry-After"] == deleted.headers["Retry-After"] == "1"
    assert waited >= 0.2, "it waited the whole SESSION_WAIT_TIMEOUT, as its message says"
    # The waits that ended in 409 are measured too (three turns), the slowest of them.
    assert "agent_session_wait_seconds_count 3.0" in api.client.get("/metrics").text
    assert other.status_code == 200
    assert read_while_busy, "a session is read while its turn runs"
    assert roles(api) == ["user", "assistant"]


def test_text_of_a_call_throttled_mid_answer_is_withdrawn_when_it_is_retried(
    make_api: MakeApi,
) -> None:
    """The SDK calls the model again: without `retry` a client showed the first call's text and
    then the second's, where the session stores only the second."""
    throttled = FailsMidAnswer("Half an", ModelThrottledException("busy"))
    api = make_api([throttled, "A whole answer."], model_max_attempts=2)

    body = {"prompt": "hi", "session_id": "s"}
    events = parse_events(api.client.post("/process-streaming", json=body).text)

    assert [(event.event, event.data) for event in events[1:-1]] == [
        ("text", {"text": "Half"}),
        ("text", {"text": " an"}),
        ("retry", {"delay": 2}),
        ("text", {"text": "A"}),
        ("text", {"text": " whole"}),
        ("text", {"text": " answer."}),
    ]
    assert events[-1].data["response"] == "A whole answer."
    stored = api.repository.list_messages("s", "default")
    assert [message.message["content"] for message in stored][1] == [{"text": "A whole answer."}]


def test_a_provider_account_out_of_credit_is_not_retried(make_api: MakeApi) -> None:
    """A 429 that waiting does not lift: retried, it would hold every turn through the retries'
    waits, then tell its client to come back in 5 s, and the next turn the same."""
    api = make_api([out_of_credit(), "Never asked."], model_max_attempts=3)

    response = api.client.post("/process", json={"prompt": "hi", "session_id": "s"})

    assert_error(response, 502, "model_error")
    assert "Retry-After" not in response.headers
    assert len(api.model.calls) == 1


@pytest.mark.parametrize(
    "refusal",
    [
        ModelThrottledException("busy"),
        ProviderOverloaded("busy", status_code=429, error_type="rate_limit_error"),
        ProviderOverloaded("busy", status_code=200),
    ],
    ids=["throttled", "429", "overloaded-mid-answer"],
)
def test_a_throttled_call_is_retried_before_giving_up(
    make_api: MakeApi, refusal: Exception
) -> None:
    api = make_api([refusal, "Got through."], model_max_attempts=2)

    response = api.client.post("/process", json={"prompt": "hi", "session_id": "s"})

    assert response.status_code == 200
    assert len(api.model.calls) == 2
