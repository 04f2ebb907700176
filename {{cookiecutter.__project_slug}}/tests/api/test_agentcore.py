"""The AgentCore Runtime contract through a real uvicorn server: /invocations and /ping."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import httpx
import pytest
from fastapi.sse import ServerSentEvent
from sqlalchemy import Engine, delete

from {{ cookiecutter.__package_name }}.api import agentcore
from {{ cookiecutter.__package_name }}.api.agentcore import SESSION_HEADER
from {{ cookiecutter.__package_name }}.session_store.tables import sessions

from ..support.http import assert_error
from ..support.server import running_server
from ..support.sse import parse_events, streamed_text


@pytest.fixture(scope="module")
def runtime(database_url: str, engine: Engine) -> Iterator[httpx.Client]:
    """One server for the module. Its echo model takes 0.05 s a word, so that a turn lasts long
    enough for /ping to see it."""
    with running_server(database_url, ECHO_WORD_DELAY="0.05") as client:
        yield client
    with engine.begin() as connection:  # the next tests on this database start with no session
        connection.execute(delete(sessions))


def runtime_session(length: int = 44) -> str:
    """An id as the runtime takes them: 33 to 256 characters."""
    return f"runtime-{uuid4()}".ljust(length, "0")


@pytest.mark.parametrize("length", [44, 256], ids=["uuid", "longest"])
def test_invocations_continue_the_runtime_session(runtime: httpx.Client, length: int) -> None:
    session = {SESSION_HEADER: runtime_session(length)}
    first = runtime.post("/invocations", json={"prompt": "Hello"}, headers=session)
    second = runtime.post("/invocations", json={"prompt": "Again"}, headers=session)
    history = runtime.get(f"/sessions/{session[SESSION_HEADER]}/history").json()

    assert first.status_code == 200, first.text
    assert first.json()["session_id"] == session[SESSION_HEADER]
    assert first.json()["response"] == "You said: Hello"
    assert second.json()["response"] == "You said: Again"
    assert [message["text"] for message in history["messages"]] == [
        "Hello",
        "You said: Hello",
        "Again",
        "You said: Again",
    ]


def test_an_invocation_streams_when_asked(runtime: httpx.Client) -> None:
    headers = {SESSION_HEADER: runtime_session(), "Accept": "text/event-stream"}
    invocation = {"json": {"prompt": "Stream it"}, "headers": headers}
    with runtime.stream("POST", "/invocations", **invocation) as response:
        body = response.read().decode()

    events = parse_events(body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[0].event == "session"
    assert events[0].data == {"session_id": headers[SESSION_HEADER]}
    assert events[-1].event == "done"
    assert streamed_text(events) == events[-1].data["response"] == "You said: Stream it"


def test_without_a_session_header_an_invocation_starts_a_session(runtime: httpx.Client) -> None:
    answer = runtime.post("/invocations", json={"prompt": "Hello"}).json()
    stored = runtime.get(f"/sessions/{answer['session_id']}")

    assert stored.status_code == 200


def test_bad_invocations_get_json_errors(runtime: httpx.Client) -> None:
    no_prompt = runtime.post("/invocations", json={"input": "Hello"})
    bad_session = runtime.post(
        "/invocations", json={"prompt": "Hi"}, headers={SESSION_HEADER: "a/b"}
    )
    no_key = runtime.post("/invocations", json={"prompt": "Hi"}, headers={"Authorization": ""})
    # Both problems said at once: the header's is not hidden behind the body's type.
    as_text = {SESSION_HEADER: "a/b", "Content-Type": "text/plain"}
    both = runtime.post("/invocations", content=b'{"prompt": "Hi"}', headers=as_text)

    assert_error(no_prompt, 422, "invalid_request")
    assert_error(bad_session, 422, "invalid_request")
    assert_error(no_key, 401, "unauthorized")
    assert_error(both, 422, "invalid_request")
    assert "invalid id 'a/b'" in both.json()["error"]["message"]


def test_an_invocation_without_a_content_type_is_read_as_json(runtime: httpx.Client) -> None:
    """As boto3's invoke_agent_runtime sends it unless its caller names a content type."""
    answer = runtime.post("/invocations", content=b'{"prompt": "Hello"}')

    assert answer.status_code == 200, answer.text
    assert answer.json()["response"] == "You said: Hello"


def test_ping_answers_whatever_the_host(runtime: httpx.Client) -> None:
    """As /health and /ready do: the runtime probes by address."""
    assert runtime.get("/ping", headers={"Host": "10.0.3.7:8080"}).status_code == 200
    assert_error(runtime.get("/sessions", headers={"Host": "10.0.3.7:8080"}), 400, "invalid_host")


def test_ping_is_busy_while_a_turn_runs(runtime: httpx.Client) -> None:
    """It needs no credential; its time is when its status last changed."""
    prompt = " ".join(["word"] * 20)  # echoed back in about a second
    invocation = {"json": {"prompt": prompt}, "headers": {SESSION_HEADER: runtime_session()}}
    idle = runtime.get("/ping", headers={"Authorization": ""}).json()
    turn = threading.Thread(target=runtime.post, args=("/invocations",), kwargs=invocation)
    turn.start()
    busy = wait_for_status(runtime, "HealthyBusy")
    turn.join()
    after = wait_for_status(runtime, "Healthy")

    assert idle["status"] == "Healthy"
    assert idle["time_of_last_update"] <= busy["time_of_last_update"] <= time.time()
    assert busy["time_of_last_update"] <= after["time_of_last_update"] <= time.time()


def wait_for_status(runtime: httpx.Client, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = runtime.get("/ping").json()
        if answer["status"] == status:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"/ping never answered {status}")


def test_a_streamed_invocation_keeps_its_connection_alive_while_a_tool_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agentcore, "KEEPALIVE_SECONDS", 0.05)

    async def slow_tool() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(event="tool_use", data={"name": "lookup_order"})
        await asyncio.sleep(0.2)
        yield ServerSentEvent(event="tool_result", data={"status": "success"})

    async def sent() -> list[bytes]:
        return [chunk async for chunk in agentcore.encoded(slow_tool())]

    chunks = asyncio.run(sent())

    assert chunks[0].startswith(b"event: tool_use\n")
    assert set(chunks[1:-1]) == {b": ping\n\n"}
    assert chunks[-1].startswith(b"event: tool_result\n")


def test_a_streamed_event_holds_json_only() -> None:
    # A tool's input or result may hold NaN or an infinity, which JSON has no words for.
    async def tool_use() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(event="tool_use", data={"input": {"mean": float("nan")}})

    async def sent() -> list[bytes]:
        return [chunk async for chunk in agentcore.encoded(tool_use())]

    (chunk,) = asyncio.run(sent())

    assert chunk == b'event: tool_use\ndata: {"input":{"mean":null}}\n\n'
