"""POST /chat spoken to by the Vercel AI SDK's own chat client (npm package `ai`, pinned in
tests/chat_client), as `useChat` speaks to it, over a real uvicorn server.

Needs Node.js and npm; skipped without them, unless REQUIRE_NODE=1 (CI) asks for this test.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ..support.server import server_process

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
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        command = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run(command, cwd=CLIENT_DIR, check=True, timeout=300)
    return CLIENT_DIR


def test_the_ai_sdk_chat_client_holds_a_conversation(database_url: str, engine: Engine) -> None:
    client_dir = installed_client()

    with server_process(database_url) as server:
        api_key = server.client.headers["Authorization"].removeprefix("Bearer ")
        environment = {
            **os.environ,
            "CHAT_URL": str(server.client.base_url.join("/chat")),
            "CHAT_API_KEY": api_key,
            "CHAT_ID": "ai-sdk-chat",
        }
        run = subprocess.run(
            ["node", "chat.mjs", "My name is Ada.", "Who am I?"],
            cwd=client_dir,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        history = server.client.get("/sessions/ai-sdk-chat/history")
        server.client.delete("/sessions/ai-sdk-chat")

    assert run.returncode == 0, run.stderr
    chat = json.loads(run.stdout)
    assert chat["status"] == "ready", chat["error"]
    assert [
        (message["role"], [(part["type"], part.get("text")) for part in message["parts"]])
        for message in chat["messages"]
    ] == [
        ("user", [("text", "My name is Ada.")]),
        ("assistant", [("step-start", None), ("text", "You said: My name is Ada.")]),
        ("user", [("text", "Who am I?")]),
        ("assistant", [("step-start", None), ("text", "You said: Who am I?")]),
    ]
    assert [(message["role"], message["text"]) for message in history.json()["messages"]] == [
        ("user", "My name is Ada."),
        ("assistant", "You said: My name is Ada."),
        ("user", "Who am I?"),
        ("assistant", "You said: Who am I?"),
    ]
