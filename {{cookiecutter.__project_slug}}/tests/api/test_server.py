"""Through a real uvicorn server: turns, streaming, and history over real HTTP."""

from collections.abc import Iterator

from sqlalchemy import Engine

from ..support.http import assert_error
from ..support.server import running_server
from ..support.sse import parse_events, streamed_text


def test_conversation_through_a_real_server(database_url: str, engine: Engine) -> None:
    with running_server(database_url) as client:
        first = client.post("/process", json={"prompt": "Hello"}).json()
        session_id = first["session_id"]
        second = client.post("/process", json={"prompt": "Again", "session_id": session_id})
        history = client.get(f"/sessions/{session_id}/history").json()["messages"]

        with client.stream(
            "POST", "/process-streaming", json={"prompt": "Stream it", "session_id": session_id}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = parse_events(response.read().decode())
        stored = client.get(f"/sessions/{session_id}/history").json()["messages"]
        client.delete(f"/sessions/{session_id}")

    assert first["response"] == "You said: Hello"
    assert second.json()["response"] == "You said: Again"
    assert [m["text"] for m in history] == [
        "Hello",
        "You said: Hello",
        "Again",
        "You said: Again",
    ]
    assert events[0].event == "session"
    assert events[0].data == {"session_id": session_id}
    assert events[-1].event == "done"
    assert streamed_text(events) == events[-1].data["response"] == stored[-1]["text"]
    assert len(stored) == 6


def test_a_chunked_body_over_the_limit_never_reaches_the_route(
    database_url: str, engine: Engine
) -> None:
    """Valid JSON followed by whitespace past MAX_BODY_BYTES: a prefix of it is valid JSON too."""

    def chunks() -> Iterator[bytes]:  # a generator: sent chunked, with no Content-Length
        yield b'{"prompt": "do not run me", "session_id": "too-large"}'
        for _ in range(8):
            yield b" " * 512

    with running_server(database_url, MAX_BODY_BYTES="1024") as client:
        response = client.post(
            "/process", content=chunks(), headers={"Content-Type": "application/json"}
        )
        stored = client.get("/sessions/too-large")

    assert "content-length" not in response.request.headers
    assert_error(response, 413, "request_too_large")
    assert_error(stored, 404, "session_not_found")
