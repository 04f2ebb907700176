"""Admission: at capacity a turn is refused at once; waiting for a busy session holds up no other
session; a turn whose client left before it started does not run."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine

from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository

from ..conftest import MakeApi
from ..support.databases import TEST_PRINCIPAL
from ..support.scripted_model import GatedModel
from ..support.server import server_process


def test_at_capacity_a_turn_gets_429_at_once(make_api: MakeApi) -> None:
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=20))
    api = make_api(model=model, max_concurrent_turns=2)

    with ThreadPoolExecutor(2) as pool:
        running = [
            pool.submit(api.client.post, "/process", json={"prompt": "hi", "session_id": f"s-{n}"})
            for n in range(2)
        ]
        deadline = time.monotonic() + 20
        while model.arrivals < 2:
            assert time.monotonic() < deadline, "the two turns never reached the model"
            time.sleep(0.01)
        refused = api.client.post("/process", json={"prompt": "hi", "session_id": "s-2"})
        streamed = api.client.post("/process-streaming", json={"prompt": "hi", "session_id": "s-3"})
        release.set()
        statuses = [future.result(timeout=30).status_code for future in running]

    assert statuses == [200, 200]
    for response in (refused, streamed):
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "overloaded"
        assert response.headers["Retry-After"] == "1"
    assert model.arrivals == 2, "a refused turn never reaches the model"
    assert api.client.post("/process", json={"prompt": "hi", "session_id": "s-2"}).is_success


def test_turns_waiting_for_a_busy_session_hold_up_no_other_session(make_api: MakeApi) -> None:
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=30))
    api = make_api(model=model, max_concurrent_turns=8, session_wait_timeout=30)

    with ThreadPoolExecutor(6) as pool:
        busy = [
            pool.submit(api.client.post, "/process", json={"prompt": f"{n}", "session_id": "busy"})
            for n in range(5)
        ]
        assert model.entered.wait(timeout=20)
        model.gate = lambda: None  # the next turns answer at once
        other = api.client.post("/process", json={"prompt": "hi", "session_id": "other"})
        other_answered_while_busy = not any(turn.done() for turn in busy)
        release.set()
        statuses = [future.result(timeout=60).status_code for future in busy]

    assert other.status_code == 200
    assert other_answered_while_busy
    assert statuses == [200] * 5, "the waiting turns ran one after the other"
    assert api.repository.message_counts("busy") == {"default": 10}


def send_and_hang_up(client: httpx.Client, body: dict) -> None:
    """Send a streaming request and close the connection without reading the answer."""
    url = urlsplit(str(client.base_url))
    payload = json.dumps(body).encode()
    request = (
        f"POST /process-streaming HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: {client.headers['Authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(request + payload)


def test_a_turn_whose_client_left_before_it_started_does_not_run(
    database_url: str, engine: Engine
) -> None:
    with server_process(database_url, ECHO_WORD_DELAY="0.3", SESSION_WAIT_TIMEOUT="30") as server:
        client = server.client
        with client.stream(
            "POST", "/process-streaming", json={"prompt": "a b c d e f", "session_id": "left"}
        ) as first:
            lines = first.iter_lines()
            next(lines)  # the first turn holds the session
            send_and_hang_up(client, {"prompt": "never mind", "session_id": "left"})
            time.sleep(0.5)  # the second request is waiting for the session, then its client left
            for _ in lines:
                pass
        after = client.post("/process", json={"prompt": "still here", "session_id": "left"})

    history = [
        m.message["content"][0]["text"]
        for m in SqlSessionRepository(engine, TEST_PRINCIPAL).list_messages("left", "default")
    ]
    SqlSessionRepository(engine, TEST_PRINCIPAL).delete_session("left")
    assert after.status_code == 200
    assert "never mind" not in history
    assert history == [
        "a b c d e f",
        "You said: a b c d e f",
        "still here",
        "You said: still here",
    ]
