"""The turn store on SQLite and PostgreSQL: a lease and one read to begin a turn, one transaction
to save it, nothing written by a turn that fails or lost its lease."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta

import anyio
import psycopg
import pytest
from sqlalchemy import Connection, Engine, event, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.types.exceptions import SessionException
from strands.types.session import SessionAgent, SessionMessage

from {{ cookiecutter.__package_name }}.database import create_async_engine
from {{ cookiecutter.__package_name }}.session_store import (
    LeaseLostError,
    LeaseRevokedError,
    SaveOutcomeUnknownError,
    SessionBusyError,
    SqlSessionRepository,
    TurnKey,
    TurnStore,
    UnitOfWork,
    turn_store,
    turn_store_for,
)
from {{ cookiecutter.__package_name }}.session_store.records import message_values
from {{ cookiecutter.__package_name }}.session_store.tables import messages, sessions, turn_keys

from ..support.databases import (
    drop_other_connections,
    settings_for,
    until_a_statement_waits_for_a_lock,
)
from ..support.scripted_model import RedactPrompt, Reply, ScriptedModel, ToolCall
from ..support.sessions import restored_agent
from ..support.tcp_proxy import AnswerCuttingProxy, answer_cutting_proxy
from ..support.tools import lookup_order
from .test_repository import AS_WRITTEN

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n\x00\x00binary\xff"


def agent_for(work: UnitOfWork, replies: list[Reply], **kwargs: object) -> Agent:
    """A real agent, restored from the unit of work as the service builds one."""
    return restored_agent(work, work.session_id, ScriptedModel(replies), **kwargs)


async def turn(
    store: TurnStore, prompt: object, replies: list[Reply], session_id: str = "s", **kwargs: object
) -> Agent:
    """One whole turn: begin, run the agent, save."""
    work = await store.begin(session_id, "default", "local")
    agent = agent_for(work, replies, **kwargs)
    await agent.invoke_async(prompt)
    await store.save(work)
    return agent


def stored(repository: SqlSessionRepository, session_id: str = "s") -> list[tuple[str, str]]:
    return [
        (m.message["role"], m.message["content"][0].get("text", "?"))
        for m in repository.list_messages(session_id, "default")
    ]


async def test_turns_are_stored_whole_and_restored_by_the_next(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    await turn(store, "My name is Ada.", ["Hello Ada."])
    work = await store.begin("s", "default", "local")
    model = ScriptedModel(["Your name is Ada."])
    await restored_agent(work, "s", model).invoke_async("Who am I?")
    await store.save(work)

    assert [m["content"][0]["text"] for m in model.calls[0]] == [
        "My name is Ada.",
        "Hello Ada.",
        "Who am I?",
    ]
    assert stored(repository) == [
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "Who am I?"),
        ("assistant", "Your name is Ada."),
    ]


async def test_a_tool_turn_is_stored_and_restored_whole(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    replies: list[Reply] = [ToolCall("lookup_order", {"order_id": "A-7"}), "It shipped."]
    played = await turn(store, "Where is A-7?", replies, tools=[lookup_order])

    work = await store.begin("s", "default", "local")
    restored = agent_for(work, [], tools=[lookup_order])

    assert restored.messages == played.messages
    assert [role for role, _ in stored(repository)] == ["user", "assistant", "user", "assistant"]
    await store.give_up(work)


async def test_bytes_state_and_timestamps_round_trip_unchanged(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    prompt = [{"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]
    played = await turn(store, prompt, ["A tiny PNG."], state={"plan": "gold"})

    work = await store.begin("s", "default", "local")
    restored = agent_for(work, [])

    assert restored.messages == played.messages
    assert restored.messages[0]["content"][1]["image"]["source"]["bytes"] == PNG
    assert restored.state.get() == {"plan": "gold"}
    # The unit of work holds the messages as the plain repository reads them, to the letter.
    assert list(work.messages.values()) == repository.list_messages("s", "default")
    await store.give_up(work)


async def test_numbers_that_json_cannot_hold_are_stored_as_null(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    # NaN and the infinities, as a data tool's statistics hold them, are not JSON: PostgreSQL's
    # jsonb refused them and the turn was lost. Both databases store null instead.
    call = ToolCall("lookup_order", {"order_id": "A-7", "weight_kg": float("nan")})
    state = {"mean": float("nan"), "range": [float("-inf"), float("inf")]}
    await turn(store, "Where is A-7?", [call, "It shipped."], tools=[lookup_order], state=state)

    work = await store.begin("s", "default", "local")
    restored = agent_for(work, [], tools=[lookup_order])

    assert restored.state.get() == {"mean": None, "range": [None, None]}
    tool_use = restored.messages[1]["content"][0]["toolUse"]
    assert tool_use["input"] == {"order_id": "A-7", "weight_kg": None}
    assert stored(repository)[-1] == ("assistant", "It shipped.")
    await store.give_up(work)


async def test_a_turn_reads_its_json_back_as_it_was_written(store: TurnStore) -> None:
    """Tool inputs in their key order and numbers of their type: the model is shown its own calls
    as it made them, and an agent whose state did not change is not written again."""
    call = ToolCall("lookup_order", {"order_id": "A-7", **AS_WRITTEN})
    replies: list[Reply] = [call, "It shipped."]
    await turn(store, "Where is A-7?", replies, tools=[lookup_order], state=AS_WRITTEN)

    work = await store.begin("s", "default", "local")
    restored = agent_for(work, ["Still shipped."], tools=[lookup_order])
    await restored.invoke_async("And now?")

    tool_input = restored.messages[1]["content"][0]["toolUse"]["input"]
    assert json.dumps(tool_input) == json.dumps({"order_id": "A-7", **AS_WRITTEN})
    assert json.dumps(restored.state.get()) == json.dumps(AS_WRITTEN)
    assert not work.agent_changed
    await store.give_up(work)


async def test_nothing_of_a_turn_is_stored_before_it_is_saved(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    await turn(store, "one", ["First."])
    work = await store.begin("s", "default", "local")
    await agent_for(work, ["Second."]).invoke_async("two")

    assert stored(repository) == [("user", "one"), ("assistant", "First.")]
    await store.give_up(work)  # the turn failed after its model answered
    assert stored(repository) == [("user", "one"), ("assistant", "First.")]
    await turn(store, "three", ["Third."])
    assert [text for _, text in stored(repository)] == ["one", "First.", "three", "Third."]


async def test_a_failing_model_leaves_the_session_as_it_was(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    await turn(store, "one", ["First."])
    work = await store.begin("s", "default", "local")
    with pytest.raises(RuntimeError, match="provider exploded"):
        await agent_for(work, [RuntimeError("provider exploded")]).invoke_async("two")
    await store.give_up(work)

    model_saw = await turn(store, "three", ["Third."])

    assert [m["content"][0]["text"] for m in model_saw.messages] == [
        "one",
        "First.",
        "three",
        "Third.",
    ]
    assert len(stored(repository)) == 4


async def test_one_turn_at_a_time_per_session(store: TurnStore) -> None:
    work = await store.begin("s", "default", "local")

    with pytest.raises(SessionBusyError, match="'s' is busy"):
        await store.begin("s", "default", "local")
    other = await store.begin("another", "default", "local")  # other sessions are not held up

    await agent_for(work, ["Hi."]).invoke_async("hello")
    await store.save(work)
    await store.give_up(other)
    await store.give_up(await store.begin("s", "default", "local"))


async def stall(engine: Engine, work: UnitOfWork) -> None:
    """What a replica that stalled past its turn's lease finds: the lease expired, in the database
    and by the replica's own clock."""
    with engine.begin() as connection:
        connection.execute(
            update(sessions)
            .where(sessions.c.session_id == work.session_id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    work.lease_live_until = 0.0


async def test_a_turn_that_lost_its_lease_writes_nothing(
    store: TurnStore, repository: SqlSessionRepository, engine: Engine
) -> None:
    stalled = await store.begin("s", "default", "local")
    await agent_for(stalled, ["Too late."]).invoke_async("stalled")
    await stall(engine, stalled)
    await turn(store, "taken over", ["In time."])  # another replica takes the session

    with pytest.raises(LeaseLostError, match="lost its claim on session 's'") as lost:
        await store.save(stalled)

    assert not isinstance(lost.value, LeaseRevokedError)

    assert stored(repository) == [("user", "taken over"), ("assistant", "In time.")]


async def test_an_expired_lease_is_not_saved_even_if_nobody_took_it(
    store: TurnStore, repository: SqlSessionRepository, engine: Engine
) -> None:
    stalled = await store.begin("s", "default", "local")
    await agent_for(stalled, ["Too late."]).invoke_async("stalled")
    await stall(engine, stalled)

    with pytest.raises(LeaseLostError):
        await store.save(stalled)
    assert stored(repository) == []


async def test_a_turn_that_waited_for_another_turns_save_reads_what_it_saved(
    store: TurnStore, repository: SqlSessionRepository, engine: Engine
) -> None:
    """A turn that begins while the previous turn's save is committing waits for that save,
    and then reads the session as the save left it."""
    await turn(store, "one", ["First."])
    saving = await store.begin("s", "default", "local")
    await agent_for(saving, ["Second."]).invoke_async("two")
    # The previous turn's save, held open in a transaction: it released the lease and wrote.
    with engine.connect() as connection, connection.begin():
        lease = store.leases.release_values("local", "s", saving.lease_id)
        connection.execute(store.leases.release, lease)
        rows = [message_values("local", "s", "default", saving.messages[i]) for i in (2, 3)]
        connection.execute(insert(messages), rows)
        waiting = asyncio.create_task(store.begin("s", "default", "local"))
        await until_a_statement_waits_for_a_lock(engine)  # the next turn's, for the session
    work = await waiting

    assert sorted(work.messages) == [0, 1, 2, 3]
    await store.give_up(work)


async def test_renewing_keeps_the_leases_still_held(store: TurnStore, engine: Engine) -> None:
    kept = await store.begin("kept", "default", "local")
    lost = await store.begin("lost", "default", "local")
    await stall(engine, lost)

    renewed = await store.renew([kept, lost])
    assert list(renewed) == [lost.lease_id]
    assert type(renewed[lost.lease_id]) is LeaseLostError
    assert await store.renew([]) == {}

    await stall(engine, kept)  # renewal came too late: a lease once lost stays lost
    assert list(await store.renew([kept])) == [kept.lease_id]


async def test_renewing_more_leases_than_a_statement_takes(
    store: TurnStore, engine: Engine, turn_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement takes so many parameters (PostgreSQL 65,535): a replica with more turns than
    one renewal holds renews them in several."""
    monkeypatch.setattr(turn_store, "RENEWED_AT_ONCE", 2)
    works = [await store.begin(f"s-{number}", "default", "local") for number in range(5)]
    await stall(engine, works[4])
    renewals = []

    def count(connection: Connection, cursor: object, statement: str, *_: object) -> None:
        renewals.append(statement)

    event.listen(turn_engine.sync_engine, "before_cursor_execute", count)
    try:
        lost = await store.renew(works)
    finally:
        event.remove(turn_engine.sync_engine, "before_cursor_execute", count)

    assert list(lost) == [works[4].lease_id]
    assert len(renewals) == 3, "2, 2 and 1 leases"
    for work in works:
        await store.give_up(work)


async def test_a_revoked_lease_stops_its_turn_as_cancelled_and_frees_its_session(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    """POST /sessions/{id}/cancel on another replica than the turn's: its renewal and its save
    find the lease revoked, not lost; the session it created goes as it gives up."""
    running = await store.begin("s", "default", "local")
    await agent_for(running, ["Stopped."]).invoke_async("hello")

    assert await store.revoke("local", "s")
    assert not await store.revoke("local", "s"), "revoked once"
    assert isinstance((await store.renew([running]))[running.lease_id], LeaseRevokedError)
    with pytest.raises(LeaseRevokedError):
        await store.save(running)
    await store.give_up(running)

    assert repository.read_session("s") is None
    await turn(store, "again", ["Hi."])
    assert stored(repository) == [("user", "again"), ("assistant", "Hi.")]


async def test_a_lease_given_up_frees_the_session_at_once(store: TurnStore) -> None:
    work = await store.begin("s", "default", "local")
    await store.give_up(work)

    await store.give_up(await store.begin("s", "default", "local"))


async def test_a_turn_that_wrote_nothing_is_saved_and_frees_its_session(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    await store.save(await store.begin("new", "default", "local"))  # no agent yet
    await turn(store, "hello", ["Hi."])
    await store.save(await store.begin("s", "default", "local"))  # nothing of the agent changed

    again = await store.begin("s", "default", "local")
    assert list(again.messages) == [0, 1]
    assert stored(repository) == [("user", "hello"), ("assistant", "Hi.")]
    await store.give_up(again)


async def test_a_principal_begins_its_own_session_whatever_others_named_theirs(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    await turn(store, "hello", ["Hi."])
    mine = await store.begin("s", "default", "local")

    theirs = await store.begin("s", "default", "other")  # mine is busy; theirs is new

    assert theirs.new_session and not theirs.messages
    await store.save(theirs)
    assert list(mine.messages) == [0, 1]
    await store.give_up(mine)
    assert repository.for_principal("other").message_counts("s") == {}
    assert repository.message_counts("s") == {"default": 2}


async def test_a_turn_that_creates_its_session_counts_its_principals_sessions(
    store: TurnStore,
) -> None:
    for count, session_id in enumerate(["a", "b"], start=1):
        work = await store.begin(session_id, "default", "local")
        assert work.new_session and work.principal_sessions == count
        await store.save(work)
    theirs = await store.begin("a", "default", "other")
    assert theirs.new_session and theirs.principal_sessions == 1
    await store.give_up(theirs)

    again = await store.begin("a", "default", "local")
    assert not again.new_session
    await store.give_up(again)


async def test_a_crashed_turns_lease_expires_by_itself(
    turn_engine: AsyncEngine, repository: SqlSessionRepository
) -> None:
    short = turn_store_for(turn_engine, lease_seconds=1)
    await short.begin("s", "default", "local")  # its replica dies: nobody renews or gives it up

    with pytest.raises(SessionBusyError):
        await short.begin("s", "default", "local")
    await anyio.sleep(1.1)
    await short.give_up(await short.begin("s", "default", "local"))


async def trimmed_conversation(store: TurnStore, turns: int, window: int) -> None:
    """`turns` turns of an agent whose conversation manager keeps `window` messages."""
    for number in range(turns):
        manager = SlidingWindowConversationManager(window_size=window)
        await turn(store, f"prompt {number}", [f"reply {number}"], conversation_manager=manager)


async def test_the_turn_reads_only_the_window_its_conversation_manager_keeps(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    await trimmed_conversation(store, turns=5, window=4)

    work = await store.begin("s", "default", "local")
    restored = agent_for(work, [], conversation_manager=SlidingWindowConversationManager(4))

    assert repository.message_counts("s") == {"default": 10}
    assert work.offset == 6
    assert sorted(work.messages) == [6, 7, 8, 9]
    assert [m["content"][0]["text"] for m in restored.messages] == [
        "prompt 3",
        "reply 3",
        "prompt 4",
        "reply 4",
    ]
    await store.give_up(work)


async def test_a_redaction_is_saved_with_the_turn(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    await turn(store, "my password is hunter2", [RedactPrompt("I cannot help with that.")])

    message = repository.read_message("s", "default", 0)
    assert message.redact_message["content"] == [{"text": "[prompt redacted]"}]
    assert "hunter2" not in str(message), "the SDK redacts in place: the original is gone too"


async def test_a_redaction_of_an_earlier_message_is_saved_in_one_transaction(
    store: TurnStore, repository: SqlSessionRepository, turn_engine: AsyncEngine
) -> None:
    await turn(store, "my card is 4111 1111 1111 1111", ["Noted."])
    work = await store.begin("s", "default", "local")
    redacted = SessionMessage(
        message={"role": "user", "content": [{"text": "my card is [redacted]"}]},
        message_id=0,
        redact_message={"role": "user", "content": [{"text": "[redacted]"}]},
    )
    work.update_message("s", "default", redacted)
    with transaction_states(turn_engine) as states:
        await store.save(work)

    assert repository.read_message("s", "default", 0).redact_message == redacted.redact_message
    if turn_engine.dialect.name == "postgresql":  # where the engine commits every statement
        # The release, then the redaction in the transaction the release began.
        status = psycopg.pq.TransactionStatus
        assert states == [status.IDLE, status.INTRANS]
        async with turn_engine.connect() as connection:  # the pool's connections commit again
            raw = await connection.get_raw_connection()
            assert raw.driver_connection.autocommit


@contextmanager
def transaction_states(engine: AsyncEngine) -> Iterator[list[object]]:
    """The driver connection's transaction status as each statement through `engine` is sent
    (PostgreSQL)."""
    states: list[object] = []

    def record(connection: Connection, *_: object) -> None:
        if engine.dialect.name == "postgresql":
            states.append(connection.connection.driver_connection.info.transaction_status)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield states
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_agent_state_changes_are_saved_and_unchanged_state_is_not_written(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    await turn(store, "one", ["First."], state={"visits": 1})
    work = await store.begin("s", "default", "local")
    agent = agent_for(work, ["Second."])
    await agent.invoke_async("two")
    assert not work.agent_changed, "a turn that changes no state writes no agent"
    agent.state.set("visits", 2)
    work.update_agent("s", SessionAgent.from_agent(agent))
    await store.save(work)

    assert repository.read_agent("s", "default").state == {"visits": 2}


async def test_the_unit_of_work_keeps_what_it_was_given_as_it_was(store: TurnStore) -> None:
    work = await store.begin("s", "default", "local")
    agent_for(work, [])
    prompt = SessionMessage({"role": "user", "content": [{"text": "hi"}]}, message_id=0)
    work.create_message("s", "default", prompt)
    # The SDK changes some of what it gave later in the turn, in place (a conversation manager
    # trims a tool result); nothing writes it again.
    prompt.message["content"][0]["text"] = "changed"

    assert work.read_message("s", "default", 0).message["content"] == [{"text": "hi"}]
    await store.give_up(work)


async def test_the_unit_of_work_refuses_what_lies_outside_its_turn(store: TurnStore) -> None:
    await trimmed_conversation(store, turns=3, window=2)
    work = await store.begin("s", "default", "local")

    for outside in (
        lambda: work.read_session("other"),
        lambda: work.read_agent("s", "planner"),
        lambda: work.list_messages("s", "default", offset=0),
    ):
        with pytest.raises(SessionException, match="this turn"):
            outside()
    assert [m.message_id for m in work.list_messages("s", "default", offset=work.offset)] == [4, 5]
    await store.give_up(work)


@contextmanager
def round_trips(engine: AsyncEngine) -> Iterator[dict[str, int]]:
    """The statements and commits sent to the database through `engine`."""
    counts = {"statements": 0, "commits": 0}

    def statement(*_: object) -> None:
        counts["statements"] += 1

    def commit(*_: object) -> None:
        counts["commits"] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", statement)
    event.listen(engine.sync_engine, "commit", commit)
    try:
        yield counts
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", statement)
        event.remove(engine.sync_engine, "commit", commit)


async def test_a_text_turn_costs_two_round_trips_on_postgresql(
    store: TurnStore, turn_engine: AsyncEngine
) -> None:
    with round_trips(turn_engine) as first_begin:  # its principal's sessions counted too
        new = await store.begin("new", "default", "local")
    await store.give_up(new)
    await turn(store, "one", ["First."])  # the session and the agent exist from now on

    with round_trips(turn_engine) as begin:
        work = await store.begin("s", "default", "local")
    await agent_for(work, ["Second."]).invoke_async("two")
    with round_trips(turn_engine) as save:
        await store.save(work)

    if turn_engine.dialect.name == "postgresql":
        # Each is one autocommitted statement: the take commits a lease, the save the turn.
        assert first_begin == {"statements": 1, "commits": 0}
        assert begin == {"statements": 1, "commits": 0}
        assert save == {"statements": 1, "commits": 0}
    else:
        # SQLite: the take and two reads (a new session: the take, the count, one read); the
        # release and the insert, in a transaction.
        assert first_begin == {"statements": 3, "commits": 0}
        assert begin == {"statements": 3, "commits": 0}
        assert save == {"statements": 2, "commits": 1}


async def test_a_connection_the_database_dropped_is_replaced_when_a_turn_begins(
    store: TurnStore, turn_engine: AsyncEngine, engine: Engine
) -> None:
    if turn_engine.dialect.name != "postgresql":
        pytest.skip("a SQLite connection cannot be dropped by its server")
    await turn(store, "one", ["First."])  # the pool now holds a connection
    drop_other_connections(engine)

    await turn(store, "two", ["Second."])


@asynccontextmanager
async def turn_behind_a_proxy(
    database_url: str,
) -> AsyncIterator[tuple[AnswerCuttingProxy, TurnStore, UnitOfWork]]:
    """A turn answered and not saved yet, by a store whose connections pass through a proxy that
    can cut the save's answer."""
    with answer_cutting_proxy(database_url) as proxy:
        engine = create_async_engine(settings_for(proxy.url))
        try:
            store = turn_store_for(engine, lease_seconds=30)
            work = await store.begin("s", "default", "local")
            await agent_for(work, ["Hello."]).invoke_async("hi")
            yield proxy, store, work
        finally:
            await engine.dispose()


async def test_a_save_whose_answer_was_lost_is_not_reported_lost(
    database_url: str, repository: SqlSessionRepository
) -> None:
    # The save committed, and the connection dropped before its answer came back: saving again
    # finds the lease released. Reported lost, the turn would be retried by its client and
    # stored twice.
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite connection cannot be dropped")
    async with turn_behind_a_proxy(database_url) as (proxy, store, work):
        proxy.cut_next_answer = True

        await store.save(work)

        await turn(store, "again", ["Hello again."])
    assert stored(repository) == [
        ("user", "hi"),
        ("assistant", "Hello."),
        ("user", "again"),
        ("assistant", "Hello again."),
    ]


async def test_a_save_whose_answer_was_lost_as_the_database_went_away_is_not_reported_lost(
    database_url: str, repository: SqlSessionRepository
) -> None:
    # The save committed, its answer was lost, and the database cannot be reached again: the
    # turn may be stored, and its client must not be told to send it again.
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite connection cannot be dropped")
    async with turn_behind_a_proxy(database_url) as (proxy, store, work):

        def the_database_goes_away() -> None:
            proxy.refusing = True

        proxy.cut_next_answer, proxy.at_cut = True, the_database_goes_away

        with pytest.raises(SaveOutcomeUnknownError):
            await store.save(work)

    assert stored(repository) == [("user", "hi"), ("assistant", "Hello.")]


async def test_a_keyed_turn_whose_save_dropped_its_connection_stores_its_key_once(
    database_url: str, repository: SqlSessionRepository, engine: Engine
) -> None:
    """A turn with its client's key is saved in a transaction of a statement a write (on
    PostgreSQL too): one of them answered on a dropped connection, the save tried again."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite connection cannot be dropped")
    async with turn_behind_a_proxy(database_url) as (proxy, store, work):
        work.turn_key = TurnKey.of("turn-1", "hi")
        proxy.cut_next_answer = True

        await store.save(work)

    with engine.connect() as connection:
        keys = connection.execute(select(turn_keys.c.turn_key, turn_keys.c.message_id)).all()
    assert keys == [("turn-1", 0)]
    assert stored(repository) == [("user", "hi"), ("assistant", "Hello.")]


async def test_a_save_whose_answer_was_lost_is_not_reported_lost_after_another_turn_took_over(
    database_url: str, repository: SqlSessionRepository, store: TurnStore, engine: Engine
) -> None:
    # As above, and a turn waiting for the session on another replica takes it between the lost
    # answer and the save again: the lease no longer tells that the turn was saved.
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite connection cannot be dropped")

    def another_turn_takes_the_session() -> None:
        with engine.begin() as connection:
            connection.execute(store.leases.take, store.leases.take_values("local", "s"))

    async with turn_behind_a_proxy(database_url) as (proxy, proxied, work):
        proxy.cut_next_answer, proxy.at_cut = True, another_turn_takes_the_session

        await proxied.save(work)

    assert stored(repository) == [("user", "hi"), ("assistant", "Hello.")]


async def test_a_save_tried_again_after_its_lease_expired_is_lost_though_another_turn_stored_since(
    database_url: str, repository: SqlSessionRepository, store: TurnStore, engine: Engine
) -> None:
    # Its connection dropped, the turn saves again: its lease expired meanwhile, and another
    # turn took the session and stored its own messages at the ids this turn's would have had.
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite connection cannot be dropped by its server")
    work = await store.begin("s", "default", "local")
    await agent_for(work, ["Hello."]).invoke_async("hi")
    with engine.begin() as connection:  # the lease expires
        connection.execute(update(sessions).values(lease_expires_at=datetime.now(UTC)))
    await turn(store, "other", ["Another answer."])
    drop_other_connections(engine)  # the database restarted while the model ran

    with pytest.raises(LeaseLostError):
        await store.save(work)

    assert stored(repository) == [("user", "other"), ("assistant", "Another answer.")]


async def test_giving_up_after_the_save_keeps_what_it_stored(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    # As a turn whose bookkeeping failed after its save committed would: its session, new with
    # this turn, stays, and the next turn takes it.
    work = await store.begin("s", "default", "local")
    await agent_for(work, ["Hello."]).invoke_async("hi")
    await store.save(work)

    await store.give_up(work)

    assert stored(repository) == [("user", "hi"), ("assistant", "Hello.")]
    await turn(store, "again", ["Hello again."])
    assert len(stored(repository)) == 4


async def test_a_connection_the_database_dropped_while_the_model_ran_is_replaced_to_save(
    store: TurnStore, turn_engine: AsyncEngine, repository: SqlSessionRepository, engine: Engine
) -> None:
    if turn_engine.dialect.name != "postgresql":
        pytest.skip("a SQLite connection cannot be dropped by its server")
    work = await store.begin("s", "default", "local")
    await agent_for(work, ["First."]).invoke_async("one")
    drop_other_connections(engine)  # the database restarted while the model ran

    await store.save(work)

    assert stored(repository) == [("user", "one"), ("assistant", "First.")]


@pytest.mark.parametrize(
    ("before", "after"), [(1, True), (0, False), (1, 1.0), ({"b": 1, "a": 2}, {"a": 2, "b": 1})]
)
async def test_a_state_change_that_python_calls_equal_is_saved(
    store: TurnStore, repository: SqlSessionRepository, before: object, after: object
) -> None:
    """1 == True == 1.0, and dicts compare without their order: such a change of the agent's
    state was taken for none, and the next turn restored the old value."""
    for value in (before, after):
        work = await store.begin("s", "default", "local")
        agent = restored_agent(work, "s", ScriptedModel(["ok"]))
        agent.state.set("flag", value)
        await agent.invoke_async("hi")
        await store.save(work)

    stored = repository.read_agent("s", "default").state["flag"]
    assert json.dumps(stored) == json.dumps(after)


async def test_a_new_agent_keeps_the_time_it_was_created(
    store: TurnStore, repository: SqlSessionRepository
) -> None:
    """As FileSessionManager keeps it: the SDK's later writes of the agent carry a new one."""
    created, changed = "2024-01-01T00:00:00+00:00", "2024-01-01T00:05:00+00:00"
    work = await store.begin("s", "default", "local")
    work.create_agent("s", SessionAgent("default", {"n": 0}, {}, created, created))
    work.update_agent("s", SessionAgent("default", {"n": 1}, {}, changed, changed))
    await store.save(work)

    assert repository.read_agent("s", "default").created_at == created


async def test_a_renewal_that_began_before_a_revoke_does_not_undo_it(
    store: TurnStore, repository: SqlSessionRepository, engine: Engine
) -> None:
    """On PostgreSQL a statement's clock is its start: a renewal that waited for a row lock while
    a cancel revoked a lease of its batch read that lease as live, renewed it, and the cancelled
    turn was saved."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    first = await store.begin("s1", "default", "local")
    cancelled = await store.begin("s2", "default", "local")
    cancelled.create_agent("s2", SessionAgent("default", {}, {}))
    message = SessionMessage({"role": "user", "content": [{"text": "x"}]}, 0)
    cancelled.create_message("s2", "default", message)
    with engine.connect() as other:  # another session's save, say, holding its row
        other.execute(text("SELECT 1 FROM sessions WHERE session_id = 's1' FOR UPDATE"))
        renewal = asyncio.create_task(store.renew([first, cancelled]))  # the lease keeper's
        await until_a_statement_waits_for_a_lock(engine)  # for that row
        assert await store.revoke("local", "s2")  # a Stop, from another replica
        other.rollback()
    lost = await renewal

    assert cancelled.lease_id in lost, "the revoked lease was renewed"
    with pytest.raises(LeaseLostError):
        await store.save(cancelled)
    assert repository.list_messages("s2", "default") == []
    await store.give_up(first)


async def test_a_take_that_waited_for_its_row_gets_a_whole_lease(
    store: TurnStore, engine: Engine
) -> None:
    """On PostgreSQL, timed from the statement's start, the lease of a take that waited for its
    row longer than a lease lasts (3 s here) had run out as it was given: a second turn took the
    session at once, and both ran."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    await turn(store, "one", ["First."])
    with engine.connect() as other:  # a transaction that holds the session's row, stalled
        other.execute(text("SELECT 1 FROM sessions WHERE session_id = 's' FOR UPDATE"))
        waiting = asyncio.create_task(store.begin("s", "default", "local"))
        await until_a_statement_waits_for_a_lock(engine)
        await asyncio.sleep(3.5)  # longer than the lease lasts
        other.rollback()
    first = await waiting

    with pytest.raises(SessionBusyError):
        await store.begin("s", "default", "local")
    await store.give_up(first)


async def test_a_take_that_waited_for_a_delete_starts_an_empty_session(
    store: TurnStore, engine: Engine
) -> None:
    """On PostgreSQL the take then creates the session anew, while the rest of its statement
    reads as of before the delete: a session of version 0 (written before 0002, or through
    SqlSessionRepository) was restored, deleted conversation and all."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    await turn(store, "a secret question", ["A secret answer."])
    with engine.connect() as other:  # DELETE /sessions/s, under way
        other.execute(update(sessions).values(version=0))
        other.commit()
        other.execute(text("DELETE FROM sessions WHERE session_id = 's'"))
        waiting = asyncio.create_task(store.begin("s", "default", "local"))
        await until_a_statement_waits_for_a_lock(engine)  # for the row
        other.commit()
    work = await waiting

    assert work.new_session
    assert work.agent is None
    assert work.messages == {}
    await store.give_up(work)
