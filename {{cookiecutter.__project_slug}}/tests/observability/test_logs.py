"""Logs: JSON lines that carry the request id, and on a turn's lines its session and principal;
never a prompt unless LOG_PROMPTS asks; plain text for development. Through a real server, whose
logging is configured as in production (main.py)."""

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from {{ cookiecutter.__package_name }}.config import Settings
from {{ cookiecutter.__package_name }}.logs import log_config

from ..conftest import Api
from ..support.databases import TEST_PRINCIPAL
from ..support.server import running_server

SECRET_PROMPT = "my card number is 4111 1111 1111 1111"


@contextmanager
def server_with_log(tmp_path: Path, **env: str) -> Iterator[tuple[httpx.Client, Path]]:
    """A real server (on SQLite: logs do not depend on the database), its output in a file."""
    log_path = tmp_path / "server.log"
    database_url = f"sqlite:///{tmp_path / 'logs.db'}"
    with log_path.open("w") as log, running_server(database_url, log=log, **env) as client:
        yield client, log_path


# At DEBUG, libraries log their requests, prompts included (aiosqlite its SQL parameters, the
# model providers' clients their request bodies): not unless LOG_PROMPTS=true.
@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_json_lines_carry_request_session_and_principal_but_no_prompt(
    tmp_path: Path, level: str
) -> None:
    with server_with_log(tmp_path, LOG_FORMAT="json", LOG_LEVEL=level) as (client, log_path):
        given = client.post(
            "/process",
            json={"prompt": SECRET_PROMPT, "session_id": "chat-1"},
            headers={"X-Request-ID": "req-given-1"},
        )
        generated = client.post("/process", json={"prompt": "hello", "session_id": "chat-2"})

    assert given.headers["X-Request-ID"] == "req-given-1"
    generated_id = generated.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated_id)
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is a JSON object
    finished = [line for line in lines if line["message"].startswith("turn finished")]
    assert [(line["request_id"], line["session_id"], line["principal"]) for line in finished] == [
        ("req-given-1", "chat-1", TEST_PRINCIPAL),
        (generated_id, "chat-2", TEST_PRINCIPAL),
    ]
    assert {"time", "level", "logger"} <= finished[0].keys()
    # The card number with its space: a timestamp's microseconds can read 4111 too.
    assert "4111 1111" not in text


def sdk_log_line(log_prompts: bool, message: str, *args: object, error: bool = False) -> str:
    """A line the SDK logs, through the handler that the service's logging configuration makes
    (its filters and formatter, JSON)."""
    config = log_config(Settings(_env_file=None, log_prompts=log_prompts, log_format="json"))
    handler = logging.StreamHandler(io.StringIO())
    formatter = dict(config["formatters"]["default"])
    handler.setFormatter(formatter.pop("()")(**formatter))
    for name in config["handlers"]["default"]["filters"]:
        handler.addFilter(config["filters"][name]["()"]())
    exc_info = None
    if error:
        try:
            raise LookupError(f"no order {SECRET_PROMPT}")
        except LookupError:
            exc_info = sys.exc_info()
    record = logging.LogRecord(
        "strands.event_loop.streaming", logging.WARNING, "streaming.py", 1, message, args, exc_info
    )
    handler.handle(record)
    return handler.stream.getvalue()


@pytest.mark.parametrize("log_prompts", [False, True])
def test_the_sdks_log_lines_keep_their_values_only_if_log_prompts_asks(log_prompts: bool) -> None:
    """The SDK logs, at WARNING, a model's tool input that it cannot parse: the user's words,
    as the model repeated them; and the exceptions of failed tools, whose messages may quote
    what the tool was given."""
    unparsable = "tool_name=<%s>, raw_input=<%s> | failed to parse tool input json"
    lines = [
        sdk_log_line(log_prompts, unparsable, "word_count", '{"text": "' + SECRET_PROMPT),
        sdk_log_line(log_prompts, "tool_name=<%s> | tool failed", "lookup", error=True),
        sdk_log_line(log_prompts, "max_switches=<%d> | reached", 3),  # not a string
    ]

    assert [(SECRET_PROMPT in line) for line in lines] == [log_prompts, log_prompts, False]
    assert "failed to parse tool input json" in lines[0]
    assert "LookupError" in lines[1]
    assert "max_switches=<" in lines[2]
    for line in lines:
        json.loads(line)  # one JSON object each, not a logging error


def test_log_prompts_logs_each_prompt_in_text_for_development(tmp_path: Path) -> None:
    spoofing = "chat 2] [principal=admin"  # a valid session id, read as more of the context
    with server_with_log(tmp_path, LOG_PROMPTS="true", LOG_FORMAT="text") as (client, log_path):
        client.post("/process", json={"prompt": SECRET_PROMPT, "session_id": "chat-1"})
        client.post("/process", json={"prompt": "Hi", "session_id": spoofing})

    lines = log_path.read_text().splitlines()
    [prompt_line] = [line for line in lines if SECRET_PROMPT in line]
    assert "session_id=chat-1" in prompt_line
    assert f"principal={TEST_PRINCIPAL}" in prompt_line
    assert not prompt_line.startswith("{")
    [quoted_line] = [line for line in lines if "prompt: Hi [" in line]
    assert f'session_id="{spoofing}" principal={TEST_PRINCIPAL}]' in quoted_line


def test_a_failed_turns_session_is_told_by_its_quoted_context(tmp_path: Path) -> None:
    """Written into the message, a session id could pass for more of the context."""
    spoofing = "chat 2] [principal=admin"
    env = {"LOG_FORMAT": "text", "TURN_TIMEOUT": "0.5", "ECHO_WORD_DELAY": "0.2"}
    with server_with_log(tmp_path, **env) as (client, log_path):
        timed_out = client.post("/process", json={"prompt": "Hi", "session_id": spoofing})

    [line] = [line for line in log_path.read_text().splitlines() if "turn failed" in line]
    assert timed_out.status_code == 504
    assert line.count(spoofing) == 1
    assert f'session_id="{spoofing}"' in line


def test_an_unsafe_request_id_is_replaced(api: Api) -> None:
    for unsafe in ("x" * 200, "two words", "<script>"):
        response = api.client.get("/sessions", headers={"X-Request-ID": unsafe})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_every_response_has_a_request_id_even_an_error(api: Api) -> None:
    response = api.client.get("/no-such-route", headers={"X-Request-ID": "abc-123"})

    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "abc-123"
