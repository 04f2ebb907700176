"""The repository contract on SQLite and on PostgreSQL: every method, its results, its errors."""

import json
from base64 import urlsafe_b64encode
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
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
    SessionBusyError,
    SqlSessionRepository,
)
from {{ cookiecutter.__package_name }}.session_store.tables import (
    agents,
    messages,
    multi_agents,
    sessions,
)

from ..support.scripted_model import ScriptedModel

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
    "bad_id",
    # The last reverses the text after it on a screen: a log line would lie.
    ["", "a/b", "../etc", "a\\b", ".", "..", "x" * 257, "a\nb", "tab\there", "nul\x00", "a\u202eb"],
)
def test_unsafe_ids_are_refused_with_a_clear_error(
    repository: SqlSessionRepository, bad_id: str
) -> None:
    with pytest.raises(InvalidIdError, match="use 1 to 256 characters"):
        new_session(repository, bad_id)
    with pytest.raises(InvalidIdError):
        repository.read_session(bad_id)
    new_session(repository, "fine")
    with pytest.raises(InvalidIdError, match="invalid agent id"):
        new_agent(repository, "fine", agent_id=bad_id)


@pytest.mark.parametrize(
    "good_id",
    [
        "0",
        "user:42.chat_1-a",
        "x" * 256,
        "\U0001f600" * 256,  # four bytes each in UTF-8: 1,024 bytes
        "_private",
        ".hidden",
        "-flag",
        "a b",
        "é",
        "user@example.com",
    ],
)
def test_ids_the_sdk_accepts_are_accepted(repository: SqlSessionRepository, good_id: str) -> None:
    new_session(repository, good_id)
    new_agent(repository, good_id, agent_id=good_id)

    assert repository.read_agent(good_id, good_id) is not None


def test_a_message_keyed_by_the_longest_ids_is_stored_whatever_their_characters(
    repository: SqlSessionRepository,
) -> None:
    """A message's key holds a principal and two ids: at their longest and in characters of
    four bytes each, 2,560 bytes, within the 2,704 of an entry of a PostgreSQL index. Characters
    that do not repeat, so that the entry cannot be compressed to fit."""

    def longest(length: int, start: int) -> str:
        return "".join(chr(0x20000 + start + number) for number in range(length))  # CJK Ext. B

    widest = repository.for_principal(longest(128, 0))
    session_id, agent_id = longest(256, 1_000), longest(256, 2_000)
    new_session(widest, session_id)
    new_agent(widest, session_id, agent_id)
    message = text_message(0, "kept")
    widest.create_message(session_id, agent_id, message)

    assert widest.read_message(session_id, agent_id, 0).message == message.message


def test_a_principal_sees_nothing_of_another_principals_sessions(
    repository: SqlSessionRepository,
) -> None:
    new_session(repository, "theirs")
    new_agent(repository, "theirs")
    repository.create_message("theirs", "default", text_message(0, "secret"))
    other = repository.for_principal("other")

    assert other.read_session("theirs") is None
    assert other.list_sessions().sessions == []
    assert other.read_agent("theirs", "default") is None
    assert other.list_agents("theirs") == []
    assert other.read_message("theirs", "default", 0) is None
    assert other.list_messages("theirs", "default") == []
    assert other.message_counts("theirs") == {}
    with pytest.raises(NotFoundError):
        other.delete_session("theirs")
    with pytest.raises(NotFoundError):
        other.create_agent("theirs", SessionAgent("intruder", {}, {}))
    with pytest.raises(NotFoundError):
        other.create_message("theirs", "default", text_message(1, "injected"))
    with pytest.raises(NotFoundError):
        other.update_message("theirs", "default", text_message(0, "rewritten"))
    with pytest.raises(NotFoundError):
        other.update_agent("theirs", SessionAgent("default", {"x": 1}, {}))

    assert [m.to_message()["content"] for m in repository.list_messages("theirs", "default")] == [
        [{"text": "secret"}]
    ]
    assert [a.agent_id for a in repository.list_agents("theirs")] == ["default"]
    assert [s.session_id for s in repository.list_sessions().sessions] == ["theirs"]


def test_each_principal_names_its_sessions_in_its_own_namespace(
    repository: SqlSessionRepository,
) -> None:
    other = repository.for_principal("other")
    for store, text in ((repository, "mine"), (other, "theirs")):
        new_session(store, "chat")  # the same id, taken by neither from the other
        new_agent(store, "chat")
        store.create_message("chat", "default", text_message(0, text))
        store.create_multi_agent("chat", graph())

    with pytest.raises(AlreadyExistsError):
        new_session(other, "chat")
    other.delete_session("chat")

    assert other.read_session("chat") is None
    assert other.read_multi_agent("chat", "report") is None
    assert [m.to_message()["content"] for m in repository.list_messages("chat", "default")] == [
        [{"text": "mine"}]
    ]
    assert repository.read_multi_agent("chat", "report") is not None


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
    assert repository.message_counts("kept") == {"default": 1}
    assert repository.read_multi_agent("kept", "report") is not None


def test_deleting_a_missing_session_raises_not_found(repository: SqlSessionRepository) -> None:
    with pytest.raises(NotFoundError):
        repository.delete_session("nobody")


def test_a_session_whose_turn_holds_its_lease_is_not_deleted(
    repository: SqlSessionRepository, engine: Engine
) -> None:
    new_session(repository)
    hold_lease = update(sessions).values(
        lease_id="a-running-turn", lease_expires_at=datetime.now(UTC) + timedelta(minutes=1)
    )
    with engine.begin() as connection:
        connection.execute(hold_lease)

    with pytest.raises(SessionBusyError):
        repository.delete_session("s-1")
    assert repository.read_session("s-1") is not None

    with engine.begin() as connection:  # the lease expired: its replica died
        expired = datetime.now(UTC) - timedelta(seconds=1)
        connection.execute(hold_lease.values(lease_expires_at=expired))
    repository.delete_session("s-1")
    assert repository.read_session("s-1") is None


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


def store_cursor(text: str) -> str:
    """What the store's own cursors look like: base64 of JSON."""
    return urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        store_cursor("[" * 5000 + "]" * 5000),
        store_cursor('["0001-01-01T00:00:00+14:00", "s"]'),  # before year 1 in UTC
        store_cursor('["9999-12-31T23:59:59-14:00", "s"]'),  # after year 9999 in UTC
        store_cursor('["2026-01-01T00:00:00+00:00", "a/b"]'),
        # A well-formed cursor with characters outside base64's alphabet, which it would skip.
        "WyIy...." + store_cursor('["2026-01-01T00:00:00+00:00", "s"]')[4:],
    ],
)
def test_a_cursor_that_was_never_handed_out_is_refused(
    repository: SqlSessionRepository, cursor: str
) -> None:
    with pytest.raises(InvalidCursorError):
        repository.list_sessions(cursor=cursor)


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


# Keys out of order, and numbers whose form a decimal type would change.
AS_WRITTEN = {"zeta": 1e16, "alpha": 1.2345e30, "mid": [2.0, 1e-7, 10**20], "a": {"y": 1, "x": 2}}


@pytest.mark.usefixtures("agent")
def test_json_reads_back_as_it_was_written(repository: SqlSessionRepository) -> None:
    """Keys in their order and numbers of their type, as the SDK's own stores give them back: a
    model is shown its tool calls as it made them, and 1e16 stays a float."""
    use = {"toolUse": {"toolUseId": "t-1", "name": "lookup", "input": AS_WRITTEN}}
    repository.create_message(
        "s-1", "default", SessionMessage({"role": "assistant", "content": [use]}, message_id=0)
    )
    repository.update_agent("s-1", SessionAgent("default", AS_WRITTEN, {}))

    stored = repository.read_message("s-1", "default", 0).message["content"][0]["toolUse"]["input"]
    for read in (stored, repository.read_agent("s-1", "default").state):
        assert json.dumps(read) == json.dumps(AS_WRITTEN)


@pytest.mark.usefixtures("agent")
@pytest.mark.parametrize("data", ["not base64!", "abc", 5])
def test_a_bytes_marker_that_holds_no_base64_reads_back_as_written(
    repository: SqlSessionRepository, data: object
) -> None:
    """The SDK's mark for bytes, {"__bytes_encoded__": true, "data": ...}, as a model or a tool
    may write it into a conversation: one that holds no base64 made every read of the session
    fail, and its next turn with it."""
    marker = {"__bytes_encoded__": True, "data": data}
    use = {"toolUse": {"toolUseId": "t-1", "name": "lookup", "input": marker}}
    repository.create_message(
        "s-1", "default", SessionMessage({"role": "assistant", "content": [use]}, message_id=0)
    )

    [read] = repository.list_messages("s-1", "default")
    assert read.message["content"][0]["toolUse"]["input"] == marker


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
@pytest.mark.parametrize("bad_id", ["0", 1.0, True, None, -1, 2**31])
def test_a_message_id_that_is_no_position_is_refused(
    repository: SqlSessionRepository, bad_id: Any
) -> None:
    """As the SDK's own stores refuse an id that is no integer, on either database alike."""
    message = SessionMessage(message={"role": "user", "content": []}, message_id=bad_id)

    with pytest.raises(InvalidIdError, match="invalid message id"):
        repository.create_message("s-1", "default", message)
    with pytest.raises(InvalidIdError, match="invalid message id"):
        repository.update_message("s-1", "default", message)
    with pytest.raises(InvalidIdError, match="invalid message id"):
        repository.read_message("s-1", "default", bad_id)
    assert repository.list_messages("s-1", "default") == []


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
    assert repository.message_counts("s-1") == {"default": count}


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


class Unserialisable:
    """An orchestrator whose state cannot be stored."""

    id = "other"

    def serialize_state(self) -> dict[str, Any]:
        return {"when": datetime.now(UTC)}


def test_updating_a_missing_multi_agent_is_not_found_whatever_its_state(
    repository: SqlSessionRepository,
) -> None:
    new_session(repository)

    with pytest.raises(NotFoundError, match="multi-agent 'other' does not exist"):
        repository.update_multi_agent("s-1", Unserialisable())
