"""Slow: install each combination with uv in its own environment; run its own lint and tests.

The baked suites run against the PostgreSQL on TEMPLATE_TEST_DATABASE_URL (default: the local
server on 127.0.0.1:5432) with REQUIRE_POSTGRES=1 whenever it is reachable, so that its PostgreSQL
tests fail rather than skip; .ci/run makes sure it is running. Likewise REQUIRE_BROWSER=1 and
REQUIRE_NODE=1, which .ci/run sets once Chromium and Node.js are there, reach the baked suites with
the rest of the environment: their browser tests and their test of /chat with the AI SDK's Node.js
client then fail rather than skip.
"""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .baking import TEMPLATE_DIR, Bake, tool_env
from .test_bake import COMBINATIONS

pytestmark = pytest.mark.slow

POSTGRES_URL = os.environ.get(
    "TEMPLATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def browser_env() -> dict[str, str]:
    """REQUIRE_BROWSER=1 (.ci/run sets it) makes the baked browser tests fail, not skip, without
    Chromium."""
    return {"REQUIRE_BROWSER": "1"} if os.environ.get("REQUIRE_BROWSER") == "1" else {}


def postgres_env() -> dict[str, str]:
    url = urlsplit(POSTGRES_URL)
    address = (url.hostname or "127.0.0.1", url.port or 5432)
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {address} is unreachable on CI")
        return {}
    return {"TEST_DATABASE_URL": POSTGRES_URL, "REQUIRE_POSTGRES": "1"}


@pytest.mark.parametrize("answers", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_baked_project_passes_its_own_suite(bake: Bake, answers: dict[str, object]) -> None:
    project = bake(**answers)
    project.install()

    project.run("make", "lint")
    result = project.run("make", "test", **postgres_env(), **browser_env())

    assert " passed" in result.stdout
    assert " failed" not in result.stdout


def test_demo_holds_a_conversation(tmp_path: Path) -> None:
    """`make demo`: render, install, start, two turns and a streamed one, the history, then the
    playground's address (`--no-wait`: it stops instead of serving until Ctrl+C)."""
    demo = subprocess.run(
        [sys.executable, str(TEMPLATE_DIR / "scripts" / "demo.py"), "--no-wait"],
        env=tool_env(DEMO_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert demo.returncode == 0, demo.stderr
    assert "event: session" in demo.stdout
    assert "event: done" in demo.stdout
    assert re.search(r"^6 messages in session [0-9a-f-]{36}$", demo.stdout, re.MULTILINE)
    playground = r"^Playground: http://127\.0\.0\.1:\d+/playground/$"
    assert re.search(playground, demo.stdout, re.MULTILINE)
