"""Agents restored from a session store as the service builds them, and what every stored
conversation must be, whatever happened to its turns."""

import itertools
from typing import Any

from strands import Agent
from strands.models import Model
from strands.session import RepositorySessionManager
from strands.session.session_repository import SessionRepository


def restored_agent(
    repository: SessionRepository, session_id: str, model: Model, **kwargs: Any
) -> Agent:
    """A real agent of `session_id`, restored from `repository` and saving to it."""
    manager = RepositorySessionManager(session_id=session_id, session_repository=repository)
    return Agent(model=model, session_manager=manager, callback_handler=None, **kwargs)


def assert_valid_conversation(messages: list[dict[str, Any]]) -> None:
    """User and assistant alternate, and the last turn ended with the assistant's answer, not
    with a tool call still waiting for its result: what the next turn can be restored from."""
    for earlier, later in itertools.pairwise(messages):
        assert earlier["role"] != later["role"], "two messages of one role in a row"
    if messages:
        assert messages[-1]["role"] == "assistant"
        assert not any("toolUse" in block for block in messages[-1]["content"])
