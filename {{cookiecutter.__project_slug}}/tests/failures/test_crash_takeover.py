"""Replicas that die or stall mid-turn, through real uvicorn processes on one database: another
replica takes the session over once the lease expires, and the stalled replica's turn is never
written."""

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
from sqlalchemy import Engine

from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository

from ..support.databases import TEST_PRINCIPAL
from ..support.server import Server, server_process
from ..support.sse import parse_events

LONG_PROMPT = "please answer with many words so that the turn lasts a while"


def history(engine: Engine, session_id: str) -> list[str]:
    repository = SqlSessionRepository(engine, TEST_PRINCIPAL)
    return [
        m.message["content"][0]["text"] for m in repository.list_messages(session_id, "default")
    ]


@pytest.fixture
def replicas(database_url: str, engine: Engine) -> Iterator[list[Server]]:
    """Two replicas on the test database, with one-second leases."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                server_process(
                    database_url,
                    ECHO_WORD_DELAY="0.2",
                    SESSION_LEASE_SECONDS="1",
                    # Within the 5 s a takeover after a crash may take.
                    SESSION_WAIT_TIMEOUT="5",
                )
            )
            for _ in range(2)
        ]
    SqlSessionRepository(engine, TEST_PRINCIPAL).delete_session("crash")


def test_a_replica_killed_mid_turn_frees_its_session_for_another(
    replicas: list[Server], engine: Engine
) -> None:
    doomed, survivor = replicas
    body = {"prompt": LONG_PROMPT, "session_id": "crash"}
    with doomed.client.stream("POST", "/process-streaming", json=body) as response:
        for line in response.iter_lines():
            if line == "event: text":
                doomed.process.kill()  # SIGKILL: no shutdown, no release
                break

    # The survivor waits for the lease to expire (SESSION_WAIT_TIMEOUT bounds the wait).
    after = survivor.client.post("/process", json={"prompt": "still there?", "session_id": "crash"})

    assert after.status_code == 200, after.text
    assert history(engine, "crash") == ["still there?", "You said: still there?"]


def test_a_stalled_replica_does_not_write_its_turn(replicas: list[Server], engine: Engine) -> None:
    stalled, other = replicas
    body = {"prompt": LONG_PROMPT, "session_id": "crash"}
    with stalled.client.stream("POST", "/process-streaming", json=body) as response:
        lines = response.iter_lines()
        for line in lines:
            if line == "event: text":
                os.kill(stalled.process.pid, signal.SIGSTOP)  # a stall past its lease
                break
        try:
            time.sleep(1.5)
            with ThreadPoolExecutor(1) as pool:
                takeover = pool.submit(
                    other.client.post, "/process", json={"prompt": "mine", "session_id": "crash"}
                )
                # On SQLite the replica may have stopped while writing (renewing its lease),
                # holding the database's one write lock: nobody writes until it runs again. Its
                # lease has expired all the same, so it still must not write its turn.
                on_sqlite = engine.dialect.name == "sqlite"
                try:
                    taken = takeover.result(timeout=3 if on_sqlite else 30)
                except TimeoutError:
                    if not on_sqlite:
                        raise
                    os.kill(stalled.process.pid, signal.SIGCONT)
                    taken = takeover.result(timeout=30)
        finally:
            os.kill(stalled.process.pid, signal.SIGCONT)
        events = parse_events("\n".join(["event: text", *lines]))

    assert taken.status_code == 200, taken.text
    assert events[-1].event == "error"
    assert events[-1].data["code"] == "turn_not_stored"
    assert history(engine, "crash") == ["mine", "You said: mine"]
