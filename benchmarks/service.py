"""The service under load, on its database and on an in-memory turn store, side by side.

Run in a baked project by `make bench` at the template root (scripts/bench.py), against the
PostgreSQL server of BENCH_DATABASE_URL (a database of its own is created and dropped). Loads
come from the project's own `scripts/loadtest.py` (streaming conversations) and from a /process
client here; nothing is asserted, the figures are printed with their targets. The /process load
also runs with API keys (AUTH_MODE=api_keys, the generated default) and without, side by side.
"""

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from my_agent.api_keys import create_api_key
from my_agent.config import Settings
from my_agent.database import create_engine as create_project_engine
from my_agent.database import upgrade_schema
from sqlalchemy import create_engine, make_url, text
from tests.support.databases import temporary_database

from .servers import Server, running

DATABASE_APP = "benchmarks.apps:database_app"
MEMORY_APP = "benchmarks.apps:memory_app"


def loadtest(project: Path, server: Server, conversations: int) -> dict[str, Any]:
    """The project's load test: `conversations` streaming conversations at once, one turn each."""
    command = [sys.executable, "scripts/loadtest.py", server.url]
    arguments = ["--conversations", str(conversations), "--json"]
    done = subprocess.run([*command, *arguments], cwd=project, capture_output=True, text=True)
    if not done.stdout:  # it could not run (a turn that failed is in its report)
        sys.exit(f"the load test failed:\n{done.stderr}")
    return json.loads(done.stdout)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile, as the load test's."""
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


async def process_load(
    server: Server, clients: int, sessions: int, seconds: float
) -> dict[str, Any]:
    """`clients` clients sending /process turns to random sessions for `seconds`: sessions of
    their own, shared by no earlier load, which would have grown them."""
    latencies: list[float] = []
    errors = 0
    run = uuid.uuid4().hex[:8]
    start = time.perf_counter()
    deadline = start + seconds

    async def client_loop(client: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            session_id = f"{run}-{random.randrange(sessions)}"
            body = {"prompt": "What is new today?", "session_id": session_id}
            start = time.perf_counter()
            async with client.post("/process", json=body) as response:
                await response.read()
                errors += response.status != 200
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(
        base_url=server.url, connector=connector, headers=server.headers
    ) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    # Requests sent before the deadline end after it: counted over the time they took.
    wall = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "requests/s": len(latencies) / wall,
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "errors": errors,
    }


def alternating(servers: dict[str, Server], rounds: int, load: Any) -> dict[str, list[Any]]:
    """Each server takes `load` in turn, round after round, so that a slow spell of the machine
    weighs on all alike; `load(server)` returns a figure per round."""
    figures: dict[str, list[Any]] = {name: [] for name in servers}
    for _ in range(rounds):
        for name, server in servers.items():
            figures[name].append(load(server))
    return figures


def bench_throughput(
    project: Path, servers: dict[str, Server], args: argparse.Namespace
) -> dict[str, Any]:
    seconds = args.duration / args.rounds

    def load(server: Server) -> dict[str, Any]:
        before = server.cpu_seconds()
        result = asyncio.run(process_load(server, args.clients, args.sessions, seconds))
        result["cpu_per_request"] = (server.cpu_seconds() - before) / max(result["requests"], 1)
        return result

    medians = {}
    for name, results in alternating(servers, args.rounds, load).items():
        medians[name] = {
            key: statistics.median(result[key] for result in results)
            for key in ("requests/s", "p50", "p99", "cpu_per_request")
        }
        medians[name]["errors"] = sum(result["errors"] for result in results)
    return medians


def bench_cpu_per_turn(
    project: Path, servers: dict[str, Server], args: argparse.Namespace
) -> dict[str, Any]:
    """Server CPU per streamed turn of twenty words: the median of the rounds, and each round."""

    def load(server: Server) -> float:
        before = server.cpu_seconds()
        report = loadtest(project, server, args.streams)
        assert report["completed"] == args.streams, report
        return (server.cpu_seconds() - before) / args.streams

    rounds = alternating(servers, args.rounds, load)
    return {name: {"median": statistics.median(r), "rounds": r} for name, r in rounds.items()}


@contextmanager
def connections_held(database_url: str) -> Iterator[dict[str, int]]:
    """The most connections the service's processes held at once, sampled every 50 ms."""
    url = make_url(database_url).set(database="postgres")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    database = make_url(database_url).database
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :database "
        "AND application_name = 'my-agent'"
    )
    seen = {"max": 0}
    stop = threading.Event()

    def sample() -> None:
        with engine.connect() as connection:
            while not stop.is_set():
                count = connection.execute(query, {"database": database}).scalar_one()
                seen["max"] = max(seen["max"], count)
                stop.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield seen
    finally:
        stop.set()
        sampler.join()
        engine.dispose()


def bench_conversations(
    project: Path, database_url: str, conversations: int, replicas: int, app: str
) -> dict[str, Any]:
    """`conversations` at once at a remote model's pace (20 words, 0.5 s each), split over
    `replicas` processes, each with the service's default settings."""
    env = {"DATABASE_URL": database_url, "ECHO_WORD_DELAY": "0.5"}
    with ExitStack() as stack:
        servers = [stack.enter_context(running(app, project, **env)) for _ in range(replicas)]
        before = [server.cpu_seconds() for server in servers]
        with connections_held(database_url) as held:
            share, more = divmod(conversations, replicas)
            shares = [share + 1] * more + [share] * (replicas - more)
            with ThreadPoolExecutor(len(servers)) as pool:
                reports = list(pool.map(partial(loadtest, project), servers, shares))
        cpu = sum(s.cpu_seconds() - b for s, b in zip(servers, before, strict=True))
        memory = max(server.peak_memory_mb() for server in servers)
    completed = sum(report["completed"] for report in reports)
    errors: dict[str, int] = {}
    for report in reports:
        for error, count in report["errors"].items():
            errors[error] = errors.get(error, 0) + count
    return {
        "store": "database" if app == DATABASE_APP else "memory",
        "replicas": replicas,
        "conversations": conversations,
        "completed": completed,
        "errors": errors,
        "wall_s": max(report["wall_s"] for report in reports),
        "first_text_p50_s": max(report["first_text_p50_s"] or 0 for report in reports),
        "first_text_p99_s": max(report["first_text_p99_s"] or 0 for report in reports),
        "turn_p50_s": max(report["turn_p50_s"] or 0 for report in reports),
        "connections_held": held["max"],
        "cpu_ms_per_turn": cpu / max(completed, 1) * 1000,
        "peak_memory_mb": memory,
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def throughput_table(heading: str, rows: dict[str, dict[str, Any]]) -> None:
    print(f"| {heading} | requests/s | p50 | p99 | server CPU per request | errors |")
    print("|" + " --- |" * 6)
    for name, figures in rows.items():
        print(
            f"| {name} | {figures['requests/s']:.0f} | {ms(figures['p50'])} | "
            f"{ms(figures['p99'])} | {ms(figures['cpu_per_request'])} | {figures['errors']} |"
        )


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    throughput = results["throughput"]
    print(f"\n## /process, echo model, {args.clients} clients over {args.sessions} sessions\n")
    throughput_table("store", throughput)
    ratio = throughput["database"]["requests/s"] / throughput["memory"]["requests/s"]
    print(f"\nThroughput on PostgreSQL / in memory: {ratio:.2f} (target >= 0.7)")

    auth = results["auth"]
    print("\n## /process on PostgreSQL with an API key per request, and with none\n")
    throughput_table("AUTH_MODE", auth)
    ratio = auth["api_keys"]["requests/s"] / auth["none"]["requests/s"]
    cpu = auth["api_keys"]["cpu_per_request"] - auth["none"]["cpu_per_request"]
    print(f"\nThroughput with API keys / without: {ratio:.2f}; server CPU they add: {ms(cpu)}")

    cpu = results["cpu_per_turn"]
    print(f"\n## Server CPU per streamed turn ({args.streams} conversations, 20 words)\n")
    for name, figures in cpu.items():
        rounds = ", ".join(f"{value * 1000:.2f}" for value in figures["rounds"])
        print(f"- {name}: {ms(figures['median'])} (rounds: {rounds} ms)")
    ratio = cpu["database"]["median"] / cpu["memory"]["median"]
    print(f"\nPostgreSQL / in memory: {ratio:.2f}x (target <= 1.25x)")

    print("\n## Conversations at once, 20 words at 0.5 s (~10.5 s a turn), default settings\n")
    rows = results["conversations"]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |\n|" + " --- |" * len(columns))
    for row in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")
    print(
        "\nTargets, one replica on PostgreSQL: all done, wall <= 1.5x one turn (15.75 s), "
        "first text p99 <= 2 s, <= 25 connections; two replicas: no errors."
    )


def load_arguments(description: str, rounds: int, duration: float) -> argparse.ArgumentParser:
    """The arguments of the alternating loads, with these defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--clients", type=int, default=32, help="/process clients")
    parser.add_argument("--sessions", type=int, default=256, help="sessions they spread over")
    parser.add_argument("--duration", type=float, default=duration, help="seconds of /process")
    parser.add_argument("--streams", type=int, default=200, help="conversations per CPU round")
    parser.add_argument("--rounds", type=int, default=rounds, help="alternating rounds")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser


def main() -> None:
    parser = load_arguments(__doc__.splitlines()[0], rounds=5, duration=20)
    parser.add_argument("--conversations", type=int, default=1000, help="at once, at model pace")
    args = parser.parse_args()
    project = Path.cwd()

    results: dict[str, Any] = {}
    with temporary_database(os.environ["BENCH_DATABASE_URL"], "bench") as database_url:
        engine = create_project_engine(Settings(_env_file=None, database_url=database_url))
        upgrade_schema(engine)
        # With the key, the load runs on sessions of its principal; without, on AUTH_MODE=none's
        # (which no key may prove): the same load on as many sessions.
        api_key = create_api_key(engine, "bench")
        engine.dispose()
        stores = {"database": (DATABASE_APP, None), "memory": (MEMORY_APP, None)}
        auth_modes = {"api_keys": (DATABASE_APP, api_key), "none": (DATABASE_APP, None)}
        # /process at full speed; streamed turns at a word every 50 ms.
        for name, bench, apps, delay in (
            ("throughput", bench_throughput, stores, "0"),
            ("auth", bench_throughput, auth_modes, "0"),
            ("cpu_per_turn", bench_cpu_per_turn, stores, "0.05"),
        ):
            env = {"DATABASE_URL": database_url, "ECHO_WORD_DELAY": delay}
            with ExitStack() as stack:
                servers = {
                    server: stack.enter_context(running(app, project, key, **env))
                    for server, (app, key) in apps.items()
                }
                results[name] = bench(project, servers, args)
        results["conversations"] = [
            bench_conversations(project, database_url, args.conversations, 1, DATABASE_APP),
            bench_conversations(project, database_url, args.conversations, 1, MEMORY_APP),
            bench_conversations(project, database_url, args.conversations, 2, DATABASE_APP),
        ]
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
