"""The repository contract on SQLite and on PostgreSQL: every method, its results, its errors."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Executable
from strands import Agent
from strands.multiagent import GraphBuilder
from strands.multiagent.graph import Graph
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from {{ cookiecutter.__package_name }}.session_store import (
    AlreadyExistsError,
    InvalidCursorError,
    InvalidIdError,
    NotFoundError,
    SqlSessionRepository,
)
from {{ cookiecutter.__package_name }}.session_store import repository as repository_module
from {{ cookiecutter.__package_name }}.session_store.tables import (
    agents,
    messages,
    multi_agents,
)

from .scripted_model import ScriptedModel

PNG = b"\x89PNG\r\n\x1a\n\x00\x00binary\xff"


def new_session(repository: SqlSessionRepository, session_id: str = "s-1") -> Session:
    return repository.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))


def new_agent(
    repository: SqlSessionRepository, session_id: str = "s-1", agent_id: str = "default"
) -> SessionAgent:
    agent = SessionAgent(
        agent_id=agent_id,
        state={"user": {"name": "Ada", "visits": 3}},
        conversation_manager_state={"__name__": "SlidingWindowConversationManager", "removed": 0},
        _internal_state={"interrupt_state": {"activated": False}, "model_state": {}},
    )
    repository.create_agent(session_id, agent)
    return agent


def text_message(message_id: int, text: str, role: str = "user") -> SessionMessage:
    return SessionMessage(
        message={"role": role, "content": [{"text": text}], "tracking_id": f"t-{message_id}"},
        message_id=message_id,
    )


# Sessions


def test_session_round_trips_with_its_timestamps(repository: SqlSessionRepository) -> None:
    created = new_session(repository)

    assert repository.read_session("s-1") == created


def test_missing_session_reads_as_none(repository: SqlSessionRepository) -> None:
    assert repository.read_session("nobody") is None


def test_creating_an_existing_session_raises_a_session_exception(
    repository: SqlSessionRepository,
) -> None:
    new_session(repository)

    with pytest.raises(AlreadyExistsError, match="already exists") as raised:
        new_session(repository)
    assert isinstance(raised.value, SessionException)


@pytest.mark.parametrize(
    "bad_id", ["", "a/b", "../etc", "a b", ".hidden", "-flag", "x" * 129, "é", "a\nb"]
)
def test_invalid_ids_are_refused_with_a_clear_error(
    repository: SqlSessionRepository, bad_id: str
) -> None:
    with pytest.raises(InvalidIdError, match="use 1 to 128 letters"):
        new_session(repository, bad_id)
    with pytest.raises(InvalidIdError):
        repository.read_session(bad_id)
    new_session(repository, "fine")
    with pytest.raises(InvalidIdError, match="invalid agent id"):
        new_agent(repository, "fine", agent_id=bad_id)


@pytest.mark.parametrize("good_id", ["0", "user:42.chat_1-a", "x" * 128, "1f0c9a1e-6f0e-4c3b-9d5e"])
def test_valid_ids_are_accepted(repository: SqlSessionRepository, good_id: str) -> None:
    new_session(repository, good_id)
    new_agent(repository, good_id, agent_id=good_id)

    assert repository.read_agent(good_id, good_id) is not None


def test_delete_session_removes_everything_below_it(
    repository: SqlSessionRepository, engine: Engine
) -> None:
    new_session(repository)
    new_session(repository, "kept")
    for session_id in ("s-1", "kept"):
        new_agent(repository, session_id)
        repository.create_message(session_id, "default", text_message(0, "hi"))
        repository.create_multi_agent(session_id, graph())

    repository.delete_session("s-1")

    assert repository.read_session("s-1") is None
    with engine.connect() as connection:
        for table in (agents, messages, multi_agents):
            left = connection.execute(
                select(func.count()).where(table.c.session_id == "s-1")
            ).scalar_one()
            assert left == 0, table.name
    assert repository.count_messages("kept") == 1
    assert repository.read_multi_agent("kept", "report") is not None


def test_deleting_a_missing_session_raises_not_found(repository: SqlSessionRepository) -> None:
    with pytest.raises(NotFoundError):
        repository.delete_session("nobody")


def test_sessions_are_listed_newest_first_page_by_page(repository: SqlSessionRepository) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for number in range(7):
        # Two sessions share each timestamp: ties are ordered by id, and no page loses one.
        moment = (start + timedelta(minutes=number // 2)).isoformat()
        repository.create_session(
            Session(f"s-{number}", SessionType.AGENT, created_at=moment, updated_at=moment)
        )

    seen, cursor = [], None
    while True:
        page = repository.list_sessions(limit=3, cursor=cursor)
        seen.append([session.session_id for session in page.sessions])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert seen == [["s-6", "s-5", "s-4"], ["s-3", "s-2", "s-1"], ["s-0"]]


def test_a_cursor_that_was_never_handed_out_is_refused(repository: SqlSessionRepository) -> None:
    with pytest.raises(InvalidCursorError):
        repository.list_sessions(cursor="not-a-cursor")


# Agents


def test_agent_round_trips_with_all_its_state(repository: SqlSessionRepository) -> None:
    new_session(repository)
    created = new_agent(repository)

    assert repository.read_agent("s-1", "default") == created


def test_agent_errors(repository: SqlSessionRepository) -> None:
    with pytest.raises(NotFoundError, match="session 's-1' does not exist"):
        new_agent(repository)
    new_session(repository)
    new_agent(repository)
    with pytest.raises(AlreadyExistsError):
        new_agent(repository)
    assert repository.read_agent("s-1", "other") is None
    with pytest.raises(NotFoundError):
        repository.update_agent("s-1", SessionAgent("other", {}, {}))


def test_update_agent_keeps_created_at(repository: SqlSessionRepository) -> None:
    new_session(repository)
    created = new_agent(repository)
    changed = SessionAgent(
        agent_id="default",
        state={"user": {"name": "Ada", "visits": 4}},
        conversation_manager_state={"removed_message_count": 2},
        _internal_state={"model_state": {"response_id": "r-1"}},
    )

    repository.update_agent("s-1", changed)

    read = repository.read_agent("s-1", "default")
    assert read.state == changed.state
    assert read.conversation_manager_state == changed.conversation_manager_state
    assert read._internal_state == changed._internal_state
    assert read.created_at == created.created_at
    assert read.updated_at == changed.updated_at


@contextmanager
def statements_run(engine: Engine) -> Iterator[list[str]]:
    """The statements run on `engine`. Listening makes the store run every statement through
    SQLAlchemy, the turn's own too (see test_the_driver_runs_a_turns_statements_unless_observed)."""
    executed: list[str] = []

    def record(_connection, _cursor, statement: str, *_args: object) -> None:
        executed.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("observer", ["a cursor event listener", "the statement log"])
def test_the_driver_runs_a_turns_statements_unless_observed(
    repository: SqlSessionRepository,
    engine: Engine,
    observer: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unobserved, a turn's read and write run on psycopg's cursor; a tracer listening to
    SQLAlchemy's cursor events, or its statement log, sees them run through SQLAlchemy."""
    if engine.dialect.name != "postgresql":
        pytest.skip("on SQLite every statement runs through SQLAlchemy")
    new_session(repository)
    new_agent(repository)
    on_driver: list[Executable] = []
    driver_cursor = repository_module._driver_cursor

    def spy(connection: Connection, statement: Executable, values: dict):
        on_driver.append(statement)
        return driver_cursor(connection, statement, values)

    monkeypatch.setattr(repository_module, "_driver_cursor", spy)

    def a_turn(first: int) -> None:
        with repository.turn("s-1", "default"):
            repository.read_agent("s-1", "default")
            repository.create_message("s-1", "default", text_message(first, "hi"))
            repository.create_message("s-1", "default", text_message(first + 1, "hi", "assistant"))

    a_turn(0)
    # The read runs on the driver where libpq can stream rows (17 and newer).
    read = [repository_module._READ_TURN] if repository._streams_rows else []
    assert on_driver == [*read, repository_module._INSERT_HELD_MESSAGES]

    on_driver.clear()
    if observer == "the statement log":
        caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
        a_turn(2)
        logged = [record.getMessage() for record in caplog.records]
        assert sum("INSERT INTO messages" in statement for statement in logged) == 1
    else:
        with statements_run(engine) as executed:
            a_turn(2)
        assert len(executed) == 2
    assert on_driver == []


def test_a_turn_reads_its_agent_once_and_writes_only_changes(
    repository: SqlSessionRepository, engine: Engine
) -> None:
    session = new_session(repository)
    new_agent(repository)
    other = new_agent(repository, agent_id="other")

    with statements_run(engine) as executed, repository.turn("s-1", "default"):
        assert repository.read_session("s-1") == session
        read = repository.read_agent("s-1", "default")
        repository.update_agent("s-1", read)  # as read: nothing to write
        read.state["user"]["visits"] = 4  # the SDK changes what it was given in place
        repository.update_agent("s-1", read)
        repository.update_agent("s-1", read)  # as last written
        assert repository.read_agent("s-1", "other").state == other.state

    # The turn's one read, one update, and the read of the agent the turn is not for.
    assert len(executed) == 3
    assert repository.read_agent("s-1", "default").state["user"]["visits"] == 4


def conversation(repository: SqlSessionRepository, **state: object) -> SessionAgent:
    """Session s-1 with four messages; `state` is added to its conversation manager's."""
    new_session(repository)
    agent = new_agent(repository)
    agent.conversation_manager_state.update(state)
    repository.update_agent("s-1", agent)
    for number, text in enumerate(["hi", "hello", "and now?", "now this"]):
        role = "assistant" if number % 2 else "user"
        repository.create_message("s-1", "default", text_message(number, text, role))
    return agent


def test_a_turn_restores_its_agent_in_one_statement(
    repository: SqlSessionRepository, engine: Engine
) -> None:
    conversation(repository, removed_message_count=2)
    agent = repository.read_agent("s-1", "default")
    window = repository.list_messages("s-1", "default", offset=2)

    # What the SDK reads to restore an agent whose conversation manager removed two messages.
    with statements_run(engine) as executed, repository.turn("s-1", "default"):
        assert repository.read_session("s-1") is not None
        assert repository.read_agent("s-1", "default") == agent
        assert repository.list_messages("s-1", "default", offset=2) == window

    assert len(executed) == 1
    assert [message.message_id for message in window] == [2, 3]


def test_a_turn_restores_a_long_window_in_order_in_one_statement(
    repository: SqlSessionRepository, engine: Engine
) -> None:
    # More messages than one chunk of a streamed read.
    conversation(repository, removed_message_count=100)
    for number in range(4, 600):
        role = "assistant" if number % 2 else "user"
        repository.create_message("s-1", "default", text_message(number, f"m{number}", role))

    with statements_run(engine) as executed, repository.turn("s-1", "default"):
        restored = repository.list_messages("s-1", "default", offset=100)

    assert len(executed) == 1
    assert [message.message_id for message in restored] == list(range(100, 600))
    assert restored[-1].message["content"] == [{"text": "m599"}]


@pytest.mark.parametrize(
    ("state", "offset"),
    [
        ({}, 0),
        ({"removed_message_count": None}, 0),
        ({"removed_message_count": "2"}, 2),
        ({"removed_message_count": 2.5}, 2),
        ({"removed_message_count": [2]}, 2),
        ({"removed_message_count": -1}, 0),
        ({"removed_message_count": 1}, 2),
        ({"removed_message_count": 2}, 0),
    ],
    ids=["missing", "null", "text", "fraction", "list", "negative", "other", "from-start"],
)
def test_a_turn_lists_from_the_database_what_it_did_not_read_ahead(
    repository: SqlSessionRepository, engine: Engine, state: dict, offset: int
) -> None:
    conversation(repository, **state)
    expected = repository.list_messages("s-1", "default", offset=offset)

    with statements_run(engine) as executed, repository.turn("s-1", "default"):
        assert repository.list_messages("s-1", "default", offset=offset) == expected

    assert len(executed) == 2
    assert len(expected) == 4 - offset


def test_a_turn_lists_what_it_changed_after_reading_ahead(
    repository: SqlSessionRepository,
) -> None:
    conversation(repository, removed_message_count=0)
    redacted = text_message(1, "[redacted]", "assistant")

    with repository.turn("s-1", "default"):
        repository.read_agent("s-1", "default")
        repository.update_message("s-1", "default", redacted)
        restored = repository.list_messages("s-1", "default")
        again = repository.list_messages("s-1", "default")

    assert restored[1].message == redacted.message
    assert again == restored


def test_a_turn_discards_what_an_unfinished_turn_left_before_restoring(
    repository: SqlSessionRepository,
) -> None:
    new_session(repository)
    new_agent(repository)
    for message in (text_message(0, "hi"), text_message(1, "hello", "assistant")):
        repository.create_message("s-1", "default", message)
    repository.create_message("s-1", "default", text_message(2, "left without an answer"))

    with repository.turn("s-1", "default"):
        restored = repository.list_messages("s-1", "default")

    assert [message.message_id for message in restored] == [0, 1]


def test_a_turn_writes_its_messages_and_agent_update_together_when_it_ends(
    repository: SqlSessionRepository, engine: Engine
) -> None:
    new_session(repository)
    agent = new_agent(repository)
    agent.conversation_manager_state["removed"] = 2

    with statements_run(engine) as executed:
        with repository.turn("s-1", "default"):
            repository.create_message("s-1", "default", text_message(0, "hi"))
            repository.create_message("s-1", "default", text_message(1, "hello", "assistant"))
            repository.update_agent("s-1", agent)
            assert executed == []
        # PostgreSQL takes the messages and the update in one statement; SQLite in two.
        assert len(executed) == (1 if engine.dialect.name == "postgresql" else 2)

    assert [m.message_id for m in repository.list_messages("s-1", "default")] == [0, 1]
    assert repository.read_agent("s-1", "default").conversation_manager_state["removed"] == 2


@pytest.mark.usefixtures("agent")
def test_what_a_turn_holds_back_is_written_before_it_reads(
    repository: SqlSessionRepository,
) -> None:
    with repository.turn("s-1", "default"):
        repository.create_message("s-1", "default", text_message(0, "hi"))
        assert repository.count_messages("s-1") == 1
        repository.create_message("s-1", "default", text_message(1, "hello", "assistant"))
        assert [m.message_id for m in repository.list_messages("s-1", "default")] == [0, 1]


@pytest.mark.usefixtures("agent")
def test_a_turn_that_raises_still_writes_what_it_held_back(
    repository: SqlSessionRepository,
) -> None:
    with pytest.raises(RuntimeError, match="model failed"), repository.turn("s-1", "default"):
        repository.create_message("s-1", "default", text_message(0, "hi"))
        raise RuntimeError("model failed")

    assert repository.count_messages("s-1") == 1


@pytest.mark.usefixtures("agent")
def test_a_turn_holds_what_it_was_given_as_it_was_when_given(
    repository: SqlSessionRepository,
) -> None:
    prompt = text_message(0, "hi")
    agent = repository.read_agent("s-1", "default")
    agent._internal_state["model_state"] = {"cache": ["a"]}

    with repository.turn("s-1", "default"):
        repository.create_message("s-1", "default", prompt)
        repository.update_agent("s-1", agent)
        # The SDK changes some of what it gave later in the turn, in place (a conversation
        # manager trims a tool result, a model provider its own state); nothing writes it again.
        prompt.message["content"][0]["text"] = "changed"
        agent._internal_state["model_state"]["cache"].append("b")

    assert repository.read_message("s-1", "default", 0).message["content"] == [{"text": "hi"}]
    stored = repository.read_agent("s-1", "default")._internal_state
    assert stored["model_state"] == {"cache": ["a"]}


@pytest.mark.usefixtures("agent")
def test_held_writes_fail_with_the_store_errors_when_the_turn_ends(
    repository: SqlSessionRepository,
) -> None:
    repository.create_message("s-1", "default", text_message(0, "hi"))

    with (
        pytest.raises(AlreadyExistsError, match=r"one of messages \[1, 0\] exists"),
        repository.turn("s-1", "default"),
    ):
        repository.create_message("s-1", "default", text_message(1, "hello", "assistant"))
        repository.create_message("s-1", "default", text_message(0, "again"))
    for write in (
        lambda: repository.create_message("s-1", "ghost", text_message(0, "hi")),
        lambda: repository.update_agent("s-1", SessionAgent("ghost", {}, {})),
    ):
        with (
            pytest.raises(NotFoundError, match="agent 'ghost' does not exist"),
            repository.turn("s-1", "ghost"),
        ):
            write()


@pytest.mark.usefixtures("agent")
def test_a_read_cut_off_by_the_database_fails_as_sqlalchemy_reports_it(
    repository: SqlSessionRepository, engine: Engine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a SQLite connection cannot be cut off")
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection, repository.turn("s-1", "default", connection):
        repository.read_agent("s-1", "default")
        backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with autocommit.connect() as other:
            other.execute(select(func.pg_terminate_backend(backend)))

        with pytest.raises(OperationalError) as raised:
            repository.list_messages("s-1", "default")

    assert raised.value.connection_invalidated


def test_a_turn_sees_what_it_creates_and_deletes(repository: SqlSessionRepository) -> None:
    with repository.turn("s-1", "default"):
        assert repository.read_session("s-1") is None
        session = new_session(repository)
        agent = new_agent(repository)
        assert repository.read_session("s-1") == session
        assert repository.read_agent("s-1", "default") == agent
        repository.delete_session("s-1")
        assert repository.read_session("s-1") is None
        assert repository.read_agent("s-1", "default") is None


def test_agents_are_listed_in_creation_order(repository: SqlSessionRepository) -> None:
    new_session(repository)
    for agent_id in ("planner", "writer"):
        new_agent(repository, agent_id=agent_id)

    assert [agent.agent_id for agent in repository.list_agents("s-1")] == ["planner", "writer"]
    assert repository.list_agents("nobody") == []


# Messages


@pytest.fixture
def agent(repository: SqlSessionRepository) -> SessionAgent:
    new_session(repository)
    return new_agent(repository)


@pytest.mark.usefixtures("agent")
def test_message_round_trips_unchanged(repository: SqlSessionRepository) -> None:
    message = SessionMessage(
        message={
            "role": "user",
            "content": [
                {"text": "What is in this picture? ünïcode ✓ 😀"},
                {"image": {"format": "png", "source": {"bytes": PNG}}},
            ],
            "tracking_id": "trk-1",
            "metadata": {"usage": {"inputTokens": 3}, "custom": [1, 2.5, None, True]},
        },
        message_id=0,
    )

    repository.create_message("s-1", "default", message)

    read = repository.read_message("s-1", "default", 0)
    assert read == message
    assert read.message["content"][1]["image"]["source"]["bytes"] == PNG


@pytest.mark.usefixtures("agent")
@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("2026-01-02T03:04:05.123456+00:00", "2026-01-02T03:04:05.123456+00:00"),
        ("2026-01-02T03:04:05.000100+00:00", "2026-01-02T03:04:05.000100+00:00"),
        ("2026-01-02T03:04:05+00:00", "2026-01-02T03:04:05+00:00"),
        ("2026-01-02T05:04:05.5+02:00", "2026-01-02T03:04:05.500000+00:00"),
    ],
)
def test_message_timestamps_come_back_as_isoformat_writes_them_in_utc(
    repository: SqlSessionRepository, written: str, read: str
) -> None:
    message = text_message(0, "hi")
    message.created_at = message.updated_at = written
    repository.create_message("s-1", "default", message)

    for stored in (
        repository.read_message("s-1", "default", 0),
        repository.list_messages("s-1", "default")[0],
    ):
        assert stored.created_at == stored.updated_at == read
        assert datetime.fromisoformat(stored.created_at) == datetime.fromisoformat(written)


@pytest.mark.usefixtures("agent")
def test_message_errors(repository: SqlSessionRepository) -> None:
    repository.create_message("s-1", "default", text_message(0, "hi"))

    with pytest.raises(AlreadyExistsError):
        repository.create_message("s-1", "default", text_message(0, "again"))
    with pytest.raises(NotFoundError, match="agent 'ghost' does not exist"):
        repository.create_message("s-1", "ghost", text_message(0, "hi"))
    with pytest.raises(NotFoundError):
        repository.update_message("s-1", "default", text_message(5, "hi"))
    assert repository.read_message("s-1", "default", 5) is None
    assert repository.read_message("s-1", "ghost", 0) is None


@pytest.mark.usefixtures("agent")
def test_update_message_stores_the_redaction_and_keeps_created_at(
    repository: SqlSessionRepository,
) -> None:
    original = text_message(0, "my card is 4111 1111 1111 1111")
    repository.create_message("s-1", "default", original)
    redacted = SessionMessage(
        message=original.message,
        message_id=0,
        redact_message={"role": "user", "content": [{"text": "[redacted]"}]},
    )

    repository.update_message("s-1", "default", redacted)

    read = repository.read_message("s-1", "default", 0)
    assert read.redact_message == redacted.redact_message
    assert read.to_message() == redacted.redact_message
    assert read.created_at == original.created_at


@pytest.mark.usefixtures("agent")
def test_list_messages_returns_every_message_from_the_offset(
    repository: SqlSessionRepository,
) -> None:
    count = 1_500  # more than the 1,000 some stores silently cap a listing at
    for message_id in range(count):
        role = ("user", "assistant")[message_id % 2]
        message = text_message(message_id, f"m{message_id}", role)
        repository.create_message("s-1", "default", message)

    everything = repository.list_messages("s-1", "default")
    tail = repository.list_messages("s-1", "default", offset=1_460)
    window = repository.list_messages("s-1", "default", limit=10, offset=100)

    assert [m.message_id for m in everything] == list(range(count))
    assert [m.message_id for m in tail] == list(range(1_460, count))
    assert [m.message["content"][0]["text"] for m in window] == [f"m{i}" for i in range(100, 110)]
    assert repository.list_messages("s-1", "default", offset=count) == []
    assert repository.count_messages("s-1") == count
    assert repository.count_messages("s-1", "default") == count


def test_list_messages_of_an_unknown_agent_is_empty(repository: SqlSessionRepository) -> None:
    assert repository.list_messages("nobody", "default") == []
    with pytest.raises(ValueError, match="must not be negative"):
        repository.list_messages("nobody", "default", offset=-1)


# Multi-agent state


def graph(graph_id: str = "report") -> Graph:
    builder = GraphBuilder()
    builder.add_node(Agent(model=ScriptedModel(), callback_handler=None), "only")
    builder.set_graph_id(graph_id)
    builder.set_max_node_executions(1)
    return builder.build()


def test_multi_agent_state_round_trips(repository: SqlSessionRepository) -> None:
    new_session(repository)
    orchestrator = graph()

    repository.create_multi_agent("s-1", orchestrator)
    assert repository.read_multi_agent("s-1", "report") == orchestrator.serialize_state()

    orchestrator.state.execution_count = 3
    repository.update_multi_agent("s-1", orchestrator)
    assert repository.read_multi_agent("s-1", "report")["execution_count"] == 3


def test_multi_agent_errors(repository: SqlSessionRepository) -> None:
    with pytest.raises(NotFoundError, match="session 's-1' does not exist"):
        repository.create_multi_agent("s-1", graph())
    new_session(repository)
    repository.create_multi_agent("s-1", graph())

    with pytest.raises(AlreadyExistsError):
        repository.create_multi_agent("s-1", graph())
    with pytest.raises(NotFoundError):
        repository.update_multi_agent("s-1", graph("other"))
    assert repository.read_multi_agent("s-1", "other") is None
    with pytest.raises(InvalidIdError):
        repository.create_multi_agent("s-1", graph("no/slashes"))
