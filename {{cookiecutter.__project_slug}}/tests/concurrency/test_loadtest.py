"""`make loadtest` against a real server: it counts what completed and what was refused."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import Engine

from ..support.server import PROJECT_DIR, running_server, server_process


def loadtest(client: httpx.Client, *arguments: str) -> dict:
    """Run it against the server `client` talks to, with the client's API key."""
    command = [sys.executable, "scripts/loadtest.py", str(client.base_url), *arguments, "--json"]
    key = client.headers["Authorization"].removeprefix("Bearer ")
    done = subprocess.run(
        command,
        cwd=PROJECT_DIR,
        env={"API_KEY": key, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    # 1 when a turn did not complete, so that a script may act on it.
    assert done.returncode == int(report["completed"] < report["turns"]), done.stderr
    return report


def test_the_load_test_reports_completed_turns_and_refusals(
    database_url: str, engine: Engine
) -> None:
    # Leases long enough that a CI machine starved of CPU loses none: not what this tests.
    leases = {"SESSION_LEASE_SECONDS": "30"}
    with running_server(database_url, ECHO_WORD_DELAY="0.02", **leases) as client:
        report = loadtest(client, "--conversations", "20", "--turns", "2")
    crowded_server = {"ECHO_WORD_DELAY": "0.05", "MAX_CONCURRENT_TURNS": "5", **leases}
    with running_server(database_url, **crowded_server) as client:
        crowded = loadtest(client, "--conversations", "30")

    assert report["turns"] == report["completed"] == 40
    assert report["errors"] == {}
    assert 0 < report["first_text_p50_s"] <= report["first_text_p99_s"] <= report["turn_p99_s"]
    assert crowded["completed"] + crowded["errors"]["429 overloaded"] == 30
    assert crowded["completed"] >= 5


def test_the_load_test_counts_refusals_that_are_not_the_services_errors(tmp_path: Path) -> None:
    """Beyond `serve`'s connection limit uvicorn answers a plain-text 503, as a proxy in front
    may answer with its own page: counted, not a crash of the load test."""
    database_url = f"sqlite:///{tmp_path / 'test.db'}"
    # uvicorn serves three requests at once (the fourth connection is at the limit), one more
    # than the service admits: `serve` refuses a limit that leaves no room above its turns.
    options = ["--limit-concurrency", "4"]
    settings = {"MAX_CONCURRENT_TURNS": "2", "ECHO_WORD_DELAY": "0.05"}
    # Turns of a second: the ten are open at once, whatever the machine's speed.
    with server_process(database_url, serve=True, serve_options=options, **settings) as server:
        report = loadtest(server.client, "--conversations", "10")

    refused = report["errors"].pop("503 (not the service's error)")
    overloaded = report["errors"].pop("429 overloaded", 0)  # the third at once, if any
    assert refused > 0
    assert report["completed"] + refused + overloaded == 10
    assert report["errors"] == {}


def loadtest_module():
    path = PROJECT_DIR / "scripts" / "loadtest.py"
    spec = importlib.util.spec_from_file_location("loadtest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_percentiles_are_nearest_rank() -> None:
    percentile = loadtest_module().percentile

    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99  # not the largest
    assert percentile([float(n) for n in range(1, 11)], 0.50) == 5
    assert percentile([7.0], 0.99) == 7


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("stream", "counted_as"),
    [
        # A proxy's page in an error event.
        (b"event: error\ndata: <h1>Bad gateway</h1>\n\n", "error event (not the service's error)"),
        # A `done` event carrying an answer longer than aiohttp reads as one line.
        (b"event: done\ndata: " + b"x" * 600_000 + b"\n\n", "LineTooLong"),
    ],
)
async def test_a_stream_it_cannot_read_is_counted_not_fatal(stream: bytes, counted_as: str) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=stream, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/process-streaming", answer)
    async with TestServer(app) as server:
        report = await loadtest_module().run(str(server.make_url("")), 2, 1, "hello", 30)

    assert report.completed == 0
    assert report.errors == {counted_as: 2}
