"""Real Strands agents and graphs persisting through the repository, restored by new instances."""

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.multiagent import GraphBuilder
from strands.multiagent.base import Status
from strands.session import (
    FileSessionManager,
    RepositorySessionManager,
    SessionManager,
    SessionRepository,
)

from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository
from {{ cookiecutter.__package_name }}.session_store.tables import agents, messages

from ..support.scripted_model import RedactPrompt, Reply, ScriptedModel, ToolCall
from ..support.sessions import restored_agent
from ..support.tools import lookup_order

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff"


def make_agent(
    repository: SessionRepository, model: ScriptedModel, session_id: str = "chat", **kwargs: object
) -> Agent:
    """An agent as the service builds one: restored from the store for this session."""
    return restored_agent(repository, session_id, model, **kwargs)


def window_of(size: int) -> SlidingWindowConversationManager:
    return SlidingWindowConversationManager(window_size=size)


def test_text_turns_are_restored_into_a_new_agent(repository: SqlSessionRepository) -> None:
    first = make_agent(repository, ScriptedModel(["Hello Ada."]))
    first("My name is Ada.")

    model = ScriptedModel(["Your name is Ada."])
    second = make_agent(repository, model)
    result = second("What is my name?")

    shown = model.calls[0]
    assert [m["role"] for m in shown] == ["user", "assistant", "user"]
    assert shown[0]["content"][0]["text"] == "My name is Ada."
    assert shown[1]["content"][0]["text"] == "Hello Ada."
    assert str(result).strip() == "Your name is Ada."
    assert repository.message_counts("chat") == {"default": 4}


def test_a_tool_turn_is_restored_whole(repository: SqlSessionRepository) -> None:
    replies: list[Reply] = [ToolCall("lookup_order", {"order_id": "A-7"}), "It shipped."]
    make_agent(repository, ScriptedModel(replies), tools=[lookup_order])("Where is order A-7?")

    restored = make_agent(repository, ScriptedModel(), tools=[lookup_order])

    roles = [m["role"] for m in restored.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    tool_use = restored.messages[1]["content"][0]["toolUse"]
    tool_result = restored.messages[2]["content"][0]["toolResult"]
    assert tool_use["name"] == "lookup_order"
    assert tool_use["input"] == {"order_id": "A-7"}
    assert tool_result["toolUseId"] == tool_use["toolUseId"]
    assert tool_result["content"][0]["text"] == "order A-7 shipped"


def test_an_image_prompt_keeps_its_bytes(repository: SqlSessionRepository) -> None:
    prompt = [{"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]
    make_agent(repository, ScriptedModel(["A tiny PNG."]))(prompt)

    restored = make_agent(repository, ScriptedModel())

    assert restored.messages[0]["content"][1]["image"]["source"]["bytes"] == PNG


def test_a_redacted_prompt_stays_redacted(repository: SqlSessionRepository) -> None:
    make_agent(repository, ScriptedModel([RedactPrompt("I cannot help with that.")]))(
        "my password is hunter2"
    )

    restored = make_agent(repository, ScriptedModel())

    assert restored.messages[0]["content"] == [{"text": "[prompt redacted]"}]
    stored = repository.read_message("chat", "default", 0)
    assert stored.redact_message["content"] == [{"text": "[prompt redacted]"}]
    assert "hunter2" not in str(stored), "the SDK redacts in place: the original is gone too"


def test_agent_state_and_conversation_manager_state_survive(
    repository: SqlSessionRepository,
) -> None:
    first = make_agent(repository, ScriptedModel(["one", "two"]), state={"plan": "gold"})
    first("a")
    first.state.set("turns", 1)
    first("b")

    restored = make_agent(repository, ScriptedModel(), state={"plan": "ignored"})

    assert restored.state.get() == {"plan": "gold", "turns": 1}
    assert restored.conversation_manager.get_state() == first.conversation_manager.get_state()


def test_a_trimmed_window_restores_from_its_offset(repository: SqlSessionRepository) -> None:
    replies = ScriptedModel([f"reply {n}" for n in range(5)])
    agent = make_agent(repository, replies, conversation_manager=window_of(4))
    for n in range(5):
        agent(f"prompt {n}")

    restored = make_agent(repository, ScriptedModel(), conversation_manager=window_of(4))

    assert repository.message_counts("chat") == {"default": 10}
    assert restored.conversation_manager.removed_message_count == 6
    assert restored.messages == agent.messages
    assert restored.messages[0]["content"][0]["text"] == "prompt 3"


def test_a_long_trimmed_history_restores_only_the_window(
    repository: SqlSessionRepository, engine: Engine
) -> None:
    """100,000 stored messages, 99,960 of them trimmed: the restore reads the last 40 rows."""
    total, kept = 100_000, 40
    make_agent(repository, ScriptedModel(["first reply"]))("first prompt")
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(messages.delete())
        rows = [
            {
                "principal": "local",
                "session_id": "chat",
                "agent_id": "default",
                "message_id": n,
                "message": {"role": ("user", "assistant")[n % 2], "content": [{"text": f"m{n}"}]},
                "created_at": now,
                "updated_at": now,
            }
            for n in range(total)
        ]
        connection.execute(insert(messages), rows)
        trimmed = {**window_of(kept).get_state(), "removed_message_count": total - kept}
        connection.execute(agents.update().values(conversation_manager_state=trimmed))

    restored = make_agent(repository, ScriptedModel())

    assert len(restored.messages) == kept
    assert restored.messages[0]["content"][0]["text"] == f"m{total - kept}"
    assert restored.messages[-1]["content"][0]["text"] == f"m{total - 1}"


def test_parity_with_the_sdk_file_session_manager(
    repository: SqlSessionRepository, tmp_path: Path
) -> None:
    """The same conversation through FileSessionManager and through this store restores the same."""

    def play(manager_for: Callable[[], SessionManager]) -> tuple[Agent, Agent]:
        """Play the conversation; return the agent that played it and a fresh restored one."""
        replies: list[Reply] = [
            "Hi!",
            ToolCall("lookup_order", {"order_id": "B-2"}),
            "Shipped.",
            "Bye.",
        ]
        agent = Agent(
            model=ScriptedModel(replies),
            tools=[lookup_order],
            session_manager=manager_for(),
            conversation_manager=window_of(4),
            state={"tier": "gold"},
            callback_handler=None,
        )
        agent("hello")
        agent.state.set("asked", ["B-2"])
        agent("where is B-2?")
        agent([{"text": "thanks"}, {"image": {"format": "png", "source": {"bytes": PNG}}}])
        return agent, Agent(
            model=ScriptedModel(),
            tools=[lookup_order],
            session_manager=manager_for(),
            conversation_manager=window_of(4),
            callback_handler=None,
        )

    played_files, from_files = play(
        lambda: FileSessionManager(session_id="chat", storage_dir=str(tmp_path))
    )
    played_database, from_database = play(lambda: make_manager(repository))

    # Tracking ids and timings differ per run: each store must restore its own exactly...
    assert from_files.messages == played_files.messages
    assert from_database.messages == played_database.messages
    # ...and both stores must restore the same conversation.
    assert comparable(from_database.messages) == comparable(from_files.messages)
    assert from_database.state.get() == from_files.state.get()
    window = from_database.conversation_manager
    assert window.get_state() == from_files.conversation_manager.get_state()
    assert window.removed_message_count > 0


def comparable(messages: list[dict]) -> list[dict]:
    """The messages without what differs between two plays of one script.

    Strands gives each message a random tracking id and records the model's time to first byte
    only when it reaches a millisecond, which a scripted model does on a busy machine.
    """
    result = []
    for message in messages:
        message = {key: value for key, value in message.items() if key != "tracking_id"}
        if "metrics" in message.get("metadata", {}):
            metrics = message["metadata"]["metrics"]
            timings = {key: value for key, value in metrics.items() if key != "timeToFirstByteMs"}
            message["metadata"] = {**message["metadata"], "metrics": timings}
        result.append(message)
    return result


def make_manager(repository: SessionRepository) -> RepositorySessionManager:
    return RepositorySessionManager(session_id="chat", session_repository=repository)


def test_a_graph_persists_and_resumes_where_it_failed(repository: SqlSessionRepository) -> None:
    def build(researcher: ScriptedModel, writer: ScriptedModel):
        builder = GraphBuilder()
        builder.add_node(Agent(model=researcher, callback_handler=None), "research")
        builder.add_node(Agent(model=writer, callback_handler=None), "write")
        builder.add_edge("research", "write")
        builder.set_entry_point("research")
        builder.set_graph_id("report")
        builder.set_max_node_executions(5)
        builder.set_session_manager(make_manager(repository))
        return builder.build()

    failing = build(ScriptedModel(["facts"]), ScriptedModel([RuntimeError("model down")]))
    with pytest.raises(Exception, match="model down"):
        failing("write a report")

    saved = repository.read_multi_agent("chat", "report")
    assert saved["completed_nodes"] == ["research"]
    assert saved["next_nodes_to_execute"] == ["write"]

    researcher, writer = ScriptedModel(), ScriptedModel(["the report"])
    resumed = build(researcher, writer)
    result = resumed("write a report")

    # (The graph's own status stays "failed" after a resume: the SDK's file store does the same.)
    assert {node: r.status for node, r in result.results.items()} == {
        "research": Status.COMPLETED,
        "write": Status.COMPLETED,
    }
    assert researcher.calls == [], "the completed node is not run again"
    assert "facts" in str(writer.calls[0])
    saved = repository.read_multi_agent("chat", "report")
    assert sorted(saved["completed_nodes"]) == ["research", "write"]
    assert saved["next_nodes_to_execute"] == []
