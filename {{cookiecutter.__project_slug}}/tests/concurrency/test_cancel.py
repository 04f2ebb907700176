"""POST /sessions/{id}/cancel, a front end's Stop button: the turn stops on whichever replica runs
it, stores nothing, and its session is free for the next turn at once."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from {{ cookiecutter.__package_name }}.session_store import (
    SqlSessionRepository,
    TurnStore,
    UnitOfWork,
    turn_store_for,
)
from {{ cookiecutter.__package_name }}.turns import TurnCancelledError

from ..conftest import MakeApi, MakeRunner, client_stays
from ..support.databases import TEST_PRINCIPAL, settings_for
from ..support.http import assert_error
from ..support.scripted_model import GatedModel, ScriptedModel
from ..support.server import running_server
from ..support.sse import parse_events


def test_a_turn_cancelled_on_its_replica_stops_at_once_and_stores_nothing(
    make_api: MakeApi,
) -> None:
    release = threading.Event()
    model = GatedModel(release.wait)  # the model thinks until released
    api = make_api(model=model, session_wait_timeout=0)  # a busy session is refused at once
    assert api.client.post("/sessions", json={"session_id": "s"}).status_code == 201

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(api.client.post, "/process", json={"prompt": "Hi", "session_id": "s"})
        assert model.entered.wait(10)
        cancelled = api.client.post("/sessions/s/cancel")
        release.set()
        after = api.client.post("/process", json={"prompt": "Again", "session_id": "s"})
        stopped = running.result(timeout=10)

    assert cancelled.json() == {"session_id": "s", "cancelled": True}
    assert_error(stopped, 409, "turn_cancelled")
    assert after.status_code == 200, after.text
    history = api.client.get("/sessions/s/history").json()["messages"]
    assert [message["text"] for message in history] == ["Again", "done"]
    assert api.client.post("/sessions/s/cancel").json() == {"session_id": "s", "cancelled": False}
    assert_error(api.client.post("/sessions/unknown/cancel"), 404, "session_not_found")


@pytest.mark.parametrize(
    ("stop", "status", "code"),
    [("cancel", 409, "turn_cancelled"), ("timeout", 504, "model_timeout")],
)
def test_a_stopped_turn_tells_its_model_to_stop(
    make_api: MakeApi, stop: str, status: int, code: str
) -> None:
    """Bedrock's client streams on a thread of its own, which cancelling the turn's task leaves
    reading until the answer ends: told by the agent's signal, it closes the stream at its next
    chunk, and the model stops generating (and billing) the rest."""
    model = GatedModel(lambda: model.cancel_signal.wait(30))  # a stream read until told to stop
    api = make_api(model=model, turn_timeout=0.5 if stop == "timeout" else 30)

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(api.client.post, "/process", json={"prompt": "Hi", "session_id": "s"})
        assert model.entered.wait(10)
        if stop == "cancel":
            api.client.post("/sessions/s/cancel")
        stopped = running.result(timeout=10)

    assert_error(stopped, status, code)
    assert model.cancel_signal.wait(10), "the model was never told to stop"


@pytest.mark.anyio
async def test_a_turn_cancelled_before_its_task_began_ends_and_frees_its_session(
    make_runner: MakeRunner,
) -> None:
    """A Stop right after a Send: cancelled in the same pass of the event loop that started it.
    A task cancelled before its first step never runs its own clean-up, and the session stayed
    busy for good."""
    runner = make_runner(ScriptedModel(["Again."]))

    turn = await runner.start("s", TEST_PRINCIPAL, "Hi", client_stays)
    cancelled = await runner.cancel(TEST_PRINCIPAL, "s")  # no step of the turn's task between
    with pytest.raises(TurnCancelledError):
        async with asyncio.timeout(10):  # it never ended
            await turn.result()
    again = await (await runner.start("s", TEST_PRINCIPAL, "Again", client_stays)).result()

    assert cancelled
    assert again.response == "Again."
    assert runner.turns_in_flight == 0


@pytest.mark.anyio
async def test_a_second_stop_of_a_turn_being_cancelled_says_it_was_cancelled(
    make_runner: MakeRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Stop buttons, or a client's retry, while the first Stop still ends the turn (its
    lease being given back): the second was told that no turn had been cancelled, as if the
    turn had been stored, and its client kept a message that the model never saw."""
    giving_up = asyncio.Event()
    give_up = TurnStore.give_up

    async def give_up_and_say_so(store: TurnStore, work: UnitOfWork) -> None:
        giving_up.set()
        await give_up(store, work)

    monkeypatch.setattr(TurnStore, "give_up", give_up_and_say_so)
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=20))
    runner = make_runner(model)
    turn = await runner.start("s", TEST_PRINCIPAL, "Hi", client_stays)
    assert await asyncio.to_thread(model.entered.wait, 10)

    first = asyncio.create_task(runner.cancel(TEST_PRINCIPAL, "s"))
    async with asyncio.timeout(10):
        await giving_up.wait()  # the first Stop stopped the turn: it gives its lease back
    second = await runner.cancel(TEST_PRINCIPAL, "s")
    release.set()

    assert second and await first
    with pytest.raises(TurnCancelledError):
        await turn.result()


@pytest.mark.anyio
async def test_a_turn_cancelled_as_it_starts_keeps_its_session_until_it_has_ended(
    make_runner: MakeRunner,
) -> None:
    """A Stop while the turn, holding its session's lease, checks that its client is still there.
    The Stop once went to the database as if another replica ran the turn, revoking the lease,
    and the next turn of the same replica took the session meanwhile: both turns then ran."""
    runner = make_runner(ScriptedModel(["Again."]))
    checking, checked = asyncio.Event(), asyncio.Event()

    async def client_checked_slowly() -> bool:
        checking.set()
        await checked.wait()
        return False

    first = asyncio.create_task(runner.start("s", TEST_PRINCIPAL, "Hi", client_checked_slowly))
    await checking.wait()
    cancel = asyncio.create_task(runner.cancel(TEST_PRINCIPAL, "s"))
    second = asyncio.create_task(runner.start("s", TEST_PRINCIPAL, "Again", client_stays))
    done, _ = await asyncio.wait([cancel, second], timeout=1)
    checked.set()

    assert not done, "neither the Stop nor the next turn ends before the first turn has"
    with pytest.raises(TurnCancelledError):
        await (await first).result()
    assert await cancel
    assert (await (await second).result()).response == "Again."
    assert runner.turns_in_flight == 0


@pytest.mark.anyio
async def test_a_turn_that_waited_for_a_connection_leaves_a_session_its_replica_runs_alone(
    make_runner: MakeRunner, turn_engine: AsyncEngine, database_url: str
) -> None:
    """The next turn of a session found it free, then waited for a connection while the first
    turn took the session; a Stop sent to another replica then revoked that turn's lease. The
    next turn took the session and ran beside the first, which its replica no longer renewed nor
    stopped: it ran on until its model ended."""
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=20))
    runner = make_runner(model)
    busy = settings_for(database_url).db_pool_size - 2  # all the turns' connections but one
    for _ in range(busy):
        await runner.connections.acquire()
    first_start = asyncio.create_task(runner.start("s", TEST_PRINCIPAL, "Hi", client_stays))
    test_waits = asyncio.create_task(runner.connections.acquire())  # for the first turn's one
    second_start = asyncio.create_task(runner.start("s", TEST_PRINCIPAL, "Again", client_stays))
    first = await first_start
    assert await asyncio.to_thread(model.entered.wait, 10)
    assert await test_waits
    assert await turn_store_for(turn_engine, lease_seconds=1).revoke(TEST_PRINCIPAL, "s")
    for _ in range(busy + 1):
        runner.connections.release()

    with pytest.raises(TurnCancelledError):  # at its lease's next renewal
        await asyncio.wait_for(first.result(), timeout=10)
    release.set()
    assert (await (await second_start).result()).response == "done"
    assert runner.turns_in_flight == 0


@pytest.mark.anyio
async def test_a_turn_whose_lease_another_replica_revoked_stops_at_its_next_renewal(
    make_runner: MakeRunner, turn_engine: AsyncEngine, repository: SqlSessionRepository
) -> None:
    """Its model is stopped, not left answering until the turn would save: the lease keeper
    finds the lease revoked within a third of its length (here two seconds)."""
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=60))
    turn = await make_runner(model).start("s", TEST_PRINCIPAL, "Hi", client_stays)
    other_replica = turn_store_for(turn_engine, lease_seconds=1)
    try:
        assert await asyncio.to_thread(model.entered.wait, 20)
        assert await other_replica.revoke(TEST_PRINCIPAL, "s")
        with pytest.raises(TurnCancelledError):
            await asyncio.wait_for(turn.result(), timeout=10)
    finally:
        release.set()

    assert repository.for_principal(TEST_PRINCIPAL).read_session("s") is None, "it was new"


@pytest.mark.parametrize("next_turn", ["at once", "after the stop"])
def test_a_turn_cancelled_from_another_replica_stores_nothing_and_frees_its_session(
    database_url: str, repository: SqlSessionRepository, next_turn: str
) -> None:
    """The replica that runs the turn learns of it from its lease, revoked in the database: the
    next turn, on the other replica, starts without waiting for it (SESSION_WAIT_TIMEOUT=0).
    The cancelled turn had created the session, which it deletes as it stops, unless the next
    turn took it first."""
    slow = {"ECHO_WORD_DELAY": "0.2", "SESSION_WAIT_TIMEOUT": "0"}
    body = {"prompt": "an answer of many words, one every fifth of a second", "session_id": "s"}
    with (
        running_server(database_url, **slow) as first,
        running_server(database_url, **slow) as other,
    ):
        with first.stream("POST", "/process-streaming", json=body) as stream:
            lines = stream.iter_lines()
            next(line for line in lines if line == "event: text")  # the turn is answering
            cancelled = other.post("/sessions/s/cancel")
            if next_turn == "at once":
                after = other.post("/process", json={"prompt": "Hi", "session_id": "s"})
            events = parse_events("\n".join(lines))
        if next_turn == "after the stop":
            assert_error(other.get("/sessions/s"), 404, "session_not_found")
            after = other.post("/process", json={"prompt": "Hi", "session_id": "s"})

    assert cancelled.json() == {"session_id": "s", "cancelled": True}
    assert after.status_code == 200, after.text
    assert events[-1].event == "error"
    assert events[-1].data["code"] == "turn_cancelled"
    stored = repository.for_principal(TEST_PRINCIPAL).list_messages("s", "default")
    assert [message.message["content"][0]["text"] for message in stored] == ["Hi", "You said: Hi"]
