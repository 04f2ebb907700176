from datetime import datetime

from {{ cookiecutter.__package_name }}.tools import EXAMPLE_TOOLS, current_time, word_count

from .conftest import MakeApi
from .support.scripted_model import ToolCall


def test_tools_have_specs_the_model_can_read() -> None:
    specs = {tool.tool_spec["name"]: tool.tool_spec for tool in EXAMPLE_TOOLS}

    assert set(specs) == {"current_time", "word_count"}
    assert "timezone" in specs["current_time"]["inputSchema"]["json"]["properties"]


def test_current_time_is_timezone_aware() -> None:
    parsed = datetime.fromisoformat(current_time(timezone="Europe/Paris"))

    assert parsed.utcoffset() is not None


def test_current_time_explains_an_unknown_zone() -> None:
    assert "Unknown time zone" in current_time(timezone="Mars/Olympus")


def test_word_count() -> None:
    assert word_count(text="one two  three\nfour") == 4


def test_the_agent_calls_an_example_tool_in_a_turn(make_api: MakeApi) -> None:
    api = make_api([ToolCall("word_count", {"text": "one two three"}), "Three words."])

    reply = api.client.post("/process", json={"prompt": "Count: one two three", "session_id": "s"})

    assert reply.json()["response"] == "Three words."
    history = api.client.get("/sessions/s/history").json()["messages"]
    assert history[1]["content"][0]["toolUse"]["name"] == "word_count"
    assert history[2]["content"][0]["toolResult"]["content"] == [{"text": "3"}]
