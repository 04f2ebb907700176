"""PostgreSQL goes away and comes back: requests fail fast with 503 and then succeed again,
without a restart; a turn cut short by the outage leaves the session valid."""

from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from {{ cookiecutter.__package_name }}.database import create_engine, upgrade_schema

from ..support.databases import drop_other_connections, settings_for
from ..support.server import running_server
from ..support.sessions import assert_valid_conversation
from ..support.sse import parse_events
from ..support.throwaway_postgres import ThrowawayPostgres, throwaway_postgres

pytestmark = pytest.mark.postgresql

# Generous next to the ~2 s the service's own timeouts allow: a request that hangs fails the test.
PROMPT_ANSWER = httpx.Timeout(15)
FAST_FAILURE = {"DB_CONNECT_TIMEOUT": "2", "DB_POOL_TIMEOUT": "2"}


@pytest.fixture
def postgres() -> ThrowawayPostgres:
    with throwaway_postgres() as server:
        engine = create_engine(settings_for(server.url))
        upgrade_schema(engine)
        engine.dispose()
        yield server


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) > 0


def test_requests_fail_fast_during_an_outage_and_recover_after(postgres: ThrowawayPostgres) -> None:
    with running_server(postgres.url, **FAST_FAILURE) as client:
        client.timeout = PROMPT_ANSWER
        assert client.post("/process", json={"prompt": "before", "session_id": "s"}).is_success

        postgres.stop()
        assert_unavailable(client.get("/ready"))
        assert_unavailable(client.post("/process", json={"prompt": "during", "session_id": "s"}))
        assert_unavailable(client.get("/sessions"))
        assert_unavailable(client.get("/sessions/s/history"))
        assert client.get("/health").status_code == 200, "liveness does not depend on the database"

        postgres.start()
        assert client.get("/ready").status_code == 200
        after = client.post("/process", json={"prompt": "after", "session_id": "s"})
        history = client.get("/sessions/s/history").json()["messages"]

    assert after.json()["response"] == "You said: after"
    assert [m["text"] for m in history] == [
        "before",
        "You said: before",
        "after",
        "You said: after",
    ]


def test_a_turn_cut_short_by_an_outage_leaves_the_session_valid(
    postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    slow = {"ECHO_WORD_DELAY": "0.3", **FAST_FAILURE}
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log, running_server(postgres.url, log=log, **slow) as client:
        client.timeout = PROMPT_ANSWER
        body = {"prompt": "a long answer please", "session_id": "s"}
        with client.stream("POST", "/process-streaming", json=body) as response:
            lines = response.iter_lines()
            for line in lines:
                if line == "event: text":
                    postgres.stop()  # the turn runs on, and cannot be saved
                    break
            events = parse_events("\n".join([line, *lines]))
        postgres.start()
        after = client.post("/process", json={"prompt": "again", "session_id": "s"})
        history = client.get("/sessions/s/history").json()["messages"]

    assert events[-1].event == "error"
    assert events[-1].data["code"] == "database_unavailable"
    logged = log_path.read_text()
    assert "turn not stored: database unavailable" in logged
    assert "turn failed" not in logged, "an outage is logged in a line, not as a bug of ours"
    assert after.status_code == 200, after.text
    assert [m["text"] for m in history] == ["again", "You said: again"]
    assert_valid_conversation(history)


def set_read_only(postgres: ThrowawayPostgres, read_only: bool) -> None:
    """Make the server's database refuse writes, or take them again, in connections opened from
    now on: as a standby does, which a failover leaves the service connected to for a while."""
    engine = create_engine(settings_for(postgres.url))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
        admin.execute(text("SET default_transaction_read_only = off"))  # this one may write
        value = "on" if read_only else "off"
        admin.execute(text(f"ALTER DATABASE postgres SET default_transaction_read_only = {value}"))
    if read_only:
        drop_other_connections(engine)  # as the failover does: the service connects again
    engine.dispose()


def test_a_database_that_refuses_writes_is_an_outage_until_it_takes_them_again(
    postgres: ThrowawayPostgres,
) -> None:
    """503 database_unavailable, as for a database out of reach, not 500 as a bug of ours; and
    the connections that met the refusal are dropped, so that the service recovers without a
    restart once the database takes writes (the connections its pools kept would refuse them
    still)."""
    with running_server(postgres.url, **FAST_FAILURE) as client:
        client.timeout = PROMPT_ANSWER
        set_read_only(postgres, True)
        turn = client.post("/process", json={"prompt": "during", "session_id": "s"})
        created = client.post("/sessions", json={"session_id": "t"})

        set_read_only(postgres, False)
        after = client.post("/process", json={"prompt": "after", "session_id": "s"})
        created_after = client.post("/sessions", json={"session_id": "t"})

    assert_unavailable(turn)
    assert_unavailable(created)
    assert after.status_code == 200, after.text
    assert created_after.status_code == 201, created_after.text
