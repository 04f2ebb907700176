"""POST /chat spoken to by the Vercel AI SDK's own chat client (npm package `ai`, pinned in
tests/chat_client), as `useChat` speaks to it, over a real uvicorn server: the echo model, which
calls a tool when asked to (tests/support/slow_app.py).

Needs Node.js and npm; skipped without them, unless REQUIRE_NODE=1 (CI) asks for this test.
"""

import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
from sqlalchemy import Engine

from ..support.server import SLOW_APP, Server, server_process

CLIENT_DIR = Path(__file__).resolve().parents[1] / "chat_client"
REQUIRE_NODE = os.environ.get("REQUIRE_NODE") == "1"


def installed_client() -> Path:
    """The client's directory, its pinned packages installed (once: node_modules is kept)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        reason = "Node.js and npm are needed to run the AI SDK's chat client"
        if REQUIRE_NODE:
            pytest.fail(f"REQUIRE_NODE=1 but {reason}")
        pytest.skip(reason)
    installed = CLIENT_DIR / "node_modules" / ".package-lock.json"
    lock = CLIENT_DIR / "package-lock.json"
    with lock.open() as lock_file:
        # One test process installs; the others wait for it (`npm ci` starts by deleting
        # node_modules, from under a client that another process runs).
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
            command = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
            subprocess.run(command, cwd=CLIENT_DIR, check=True, timeout=300)
    return CLIENT_DIR


def ui_part(part: dict[str, Any]) -> tuple:
    """What matters of a part of a UI message, as the AI SDK assembled it."""
    if part["type"] == "text":
        return (part["type"], part["text"])
    if part["type"].startswith("tool-"):
        return (part["type"], part["state"], part["input"], part["output"])
    return (part["type"],)


def chat_client(server: Server, chat_id: str, *texts: str) -> subprocess.Popen:
    """chat.mjs, started: it sends `texts` to the server's /chat, then prints the chat."""
    api_key = server.client.headers["Authorization"].removeprefix("Bearer ")
    environment = {
        **os.environ,
        "CHAT_URL": str(server.client.base_url.join("/chat")),
        "CHAT_API_KEY": api_key,
        "CHAT_ID": chat_id,
    }
    command = ["node", "chat.mjs", *texts]
    return subprocess.Popen(
        command, cwd=installed_client(), env=environment, stdout=PIPE, stderr=PIPE, text=True
    )


def test_the_ai_sdk_chat_client_holds_a_conversation(database_url: str, engine: Engine) -> None:
    with server_process(database_url, app=SLOW_APP, TEST_TOOL_DELAY="0") as server:
        texts = ["My name is Ada.", "Look me up with the tool.", "--regenerate"]
        with chat_client(server, "ai-sdk-chat", *texts) as run:
            output, errors = run.communicate(timeout=60)
        history = server.client.get("/sessions/ai-sdk-chat/history")
        server.client.delete("/sessions/ai-sdk-chat")

    assert run.returncode == 0, errors
    chat = json.loads(output)
    assert chat["status"] == "ready", chat["error"]
    assert [
        (message["role"], [ui_part(part) for part in message["parts"]])
        for message in chat["messages"]
    ] == [
        ("user", [("text", "My name is Ada.")]),
        ("assistant", [("step-start",), ("text", "You said: My name is Ada.")]),
        ("user", [("text", "Look me up with the tool.")]),
        (
            "assistant",
            [
                ("step-start",),
                ("tool-slow_tool", "output-available", {"topic": "turns"}, "notes on turns"),
                ("step-start",),
                ("text", "You said: notes on turns"),  # the tool's result, echoed
            ],
        ),
    ]
    assert [(message["role"], message["text"]) for message in history.json()["messages"]] == [
        ("user", "My name is Ada."),
        ("assistant", "You said: My name is Ada."),
        ("user", "Look me up with the tool."),
        ("assistant", ""),  # the tool's use
        ("user", ""),  # its result
        ("assistant", "You said: notes on turns"),
    ]  # and nothing of the regenerate, refused:
    assert chat["regenerated"]["status"] == "error"
    assert "regenerating a reply is not supported" in chat["regenerated"]["error"]


def test_the_ai_sdk_chat_client_takes_a_cancelled_turn_as_a_stop(database_url: str) -> None:
    """A Stop from elsewhere (another tab, the README's Stop button) ends the reply with an
    `abort` part: the chat is ready for the next message, and shows no error."""
    words = "one two three four five six seven eight"
    with (
        server_process(database_url, ECHO_WORD_DELAY="0.2") as server,
        chat_client(server, "stopped", words) as run,
    ):
        cancelled = False
        deadline = time.monotonic() + 30
        while not cancelled and time.monotonic() < deadline:
            response = server.client.post("/sessions/stopped/cancel")
            cancelled = response.status_code == 200 and response.json()["cancelled"]
            time.sleep(0.1)  # until the chat's turn is running, to cancel it
        output, errors = run.communicate(timeout=60)

    assert cancelled
    assert run.returncode == 0, errors
    chat = json.loads(output)
    assert (chat["status"], chat.get("error")) == ("ready", None)
    assert [message["role"] for message in chat["messages"]] == ["user", "assistant"]
