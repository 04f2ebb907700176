"""Two server processes on one PostgreSQL, many concurrent turns on one session: never a 500,
and the stored conversation stays whole, in order, without gaps."""

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest
from sqlalchemy import select

from {{ cookiecutter.__package_name }}.database import create_engine, upgrade_schema
from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository
from {{ cookiecutter.__package_name }}.session_store.tables import messages

from ..support.databases import TEST_PRINCIPAL, postgres_database, settings_for
from ..support.server import running_server

pytestmark = pytest.mark.postgresql

TURNS = 12


def test_concurrent_turns_on_one_session_across_two_replicas() -> None:
    with postgres_database() as url, ExitStack() as stack:
        engine = create_engine(settings_for(url))
        stack.callback(engine.dispose)
        upgrade_schema(engine)
        # Turns of ~0.3 s against a 1 s wait: some turns wait their turn, some give up.
        replicas = [
            stack.enter_context(
                running_server(url, SESSION_WAIT_TIMEOUT="1", ECHO_WORD_DELAY="0.1")
            )
            for _ in range(2)
        ]

        def turn(number: int) -> httpx.Response:
            client = replicas[number % 2]
            body = {"prompt": f"turn {number}", "session_id": "shared"}
            return client.post("/process", json=body)

        with ThreadPoolExecutor(TURNS) as pool:
            responses = list(pool.map(turn, range(TURNS)))
        # Then each replica continues the session: whichever replicas won the burst, both store.
        afterwards = [turn(TURNS + number) for number in range(2)]

        statuses = [response.status_code for response in responses]
        with engine.connect() as connection:
            rows = connection.execute(
                select(messages.c.message_id)
                .where(messages.c.session_id == "shared")
                .order_by(messages.c.message_id)
            ).all()
        stored = SqlSessionRepository(engine, TEST_PRINCIPAL).list_messages("shared", "default")

    assert set(statuses) <= {200, 409}, [
        r.text for r in responses if r.status_code not in (200, 409)
    ]
    assert statuses.count(200) >= 2, "turns were stored, one after the other"
    assert [response.status_code for response in afterwards] == [200, 200], "both replicas store"
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "session_busy"
    assert [row.message_id for row in rows] == list(range(2 * (statuses.count(200) + 2)))
    pairs = [stored[i : i + 2] for i in range(0, len(stored), 2)]
    for prompt, reply in pairs:
        assert prompt.message["role"] == "user"
        assert reply.message["role"] == "assistant"
        asked = prompt.message["content"][0]["text"]
        assert reply.message["content"][0]["text"] == f"You said: {asked}", "each turn is whole"
    answered = {r.json()["response"] for r in [*responses, *afterwards] if r.status_code == 200}
    assert answered == {f"You said: {p.message['content'][0]['text']}" for p, _ in pairs}
