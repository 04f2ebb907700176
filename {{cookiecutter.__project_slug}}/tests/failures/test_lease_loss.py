"""A turn whose lease is lost (another replica took the session after the lease expired) stops,
stores nothing, leaves the other replica's lease alone, and its client still gets an answer."""

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update

from {{ cookiecutter.__package_name }}.session_store import (
    LeaseLostError,
    SqlSessionRepository,
    TurnStore,
    UnitOfWork,
)
from {{ cookiecutter.__package_name }}.session_store.tables import sessions
from {{ cookiecutter.__package_name }}.turns import ModelError

from ..conftest import SHORT_LEASE_SECONDS, MakeRunner, client_stays
from ..support.scripted_model import GatedModel, ScriptedModel

pytestmark = pytest.mark.anyio


def stall_past_the_lease() -> None:
    """The turn's replica stalls past its lease: its event loop held, as a stalled process's is."""
    time.sleep(SHORT_LEASE_SECONDS + 0.2)


def take_over(engine: Engine, work: UnitOfWork) -> None:
    """The turn's replica stalls past its lease, and another replica takes the session
    meanwhile."""
    stall_past_the_lease()
    with engine.begin() as connection:
        connection.execute(
            update(sessions)
            .where(sessions.c.session_id == work.session_id)
            .values(lease_id="another", lease_expires_at=datetime.now(UTC) + timedelta(minutes=1))
        )


def lease_holder(engine: Engine, session_id: str = "s") -> str | None:
    with engine.connect() as connection:
        query = select(sessions.c.lease_id).where(sessions.c.session_id == session_id)
        return connection.execute(query).scalar_one()


async def test_a_turn_whose_session_was_taken_over_stops_and_stores_nothing(
    make_runner: MakeRunner, engine: Engine, repository: SqlSessionRepository
) -> None:
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=60))
    turn = await make_runner(model, SHORT_LEASE_SECONDS).start("s", "local", "hello", client_stays)
    try:
        assert await asyncio.to_thread(model.entered.wait, 20)
        take_over(engine, turn.work)
        # Stopped by the lease keeper, not left waiting for its model.
        with pytest.raises(LeaseLostError):
            await asyncio.wait_for(turn.result(), timeout=10)
    finally:
        release.set()

    assert repository.message_counts("s") == {}
    assert lease_holder(engine) == "another", "the other replica's lease is not given back"


async def test_a_session_created_by_a_turn_that_lost_its_lease_is_not_kept(
    make_runner: MakeRunner, repository: SqlSessionRepository
) -> None:
    """As any failed turn's: an empty session left behind would count against its principal's
    MAX_SESSIONS_PER_PRINCIPAL."""
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=60))
    runner = make_runner(model, SHORT_LEASE_SECONDS)
    turn = await runner.start("new", "local", "hello", client_stays)
    try:
        assert await asyncio.to_thread(model.entered.wait, 20)
        stall_past_the_lease()
        with pytest.raises(LeaseLostError):
            await asyncio.wait_for(turn.result(), timeout=10)
    finally:
        release.set()

    assert repository.read_session("new") is None


async def test_a_failed_turn_answers_even_when_its_lease_is_lost_as_it_gives_up(
    make_runner: MakeRunner,
    engine: Engine,
    repository: SqlSessionRepository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    give_up = TurnStore.give_up

    async def slow_give_up(self: TurnStore, work: UnitOfWork) -> None:
        take_over(engine, work)
        await asyncio.sleep(1)  # three lease renewals, each finding the lease gone
        await give_up(self, work)

    monkeypatch.setattr(TurnStore, "give_up", slow_give_up)
    runner = make_runner(ScriptedModel([RuntimeError("boom")]), SHORT_LEASE_SECONDS)
    turn = await runner.start("s", "local", "hi", client_stays)

    with pytest.raises(ModelError):
        await asyncio.wait_for(turn.result(), timeout=10)
    assert repository.message_counts("s") == {}
