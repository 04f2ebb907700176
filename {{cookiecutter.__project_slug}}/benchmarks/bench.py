"""Benchmarks of the session store and the service: `make bench`.

Every comparison is measured side by side in one run and printed as a ratio as well as in
milliseconds (medians; p99 where the tail matters). Nothing here asserts a time: targets are
printed next to the figures for a person to read.

PostgreSQL figures need BENCH_DATABASE_URL (or TEST_DATABASE_URL): a server on which the user
may create databases; the benchmark creates its own and drops it afterwards.
"""

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine, insert, text
from strands import Agent, tool
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.session import FileSessionManager, RepositorySessionManager, SessionRepository
from strands.types.content import Messages
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType
from tests.databases import temporary_database
from tests.server import running_server

from {{ cookiecutter.__package_name }}.api import app as app_module
from {{ cookiecutter.__package_name }}.config import Settings
from {{ cookiecutter.__package_name }}.database import create_engine, upgrade_schema
from {{ cookiecutter.__package_name }}.echo import EchoModel
from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository
from {{ cookiecutter.__package_name }}.session_store.locks import SessionLocks, session_locks
from {{ cookiecutter.__package_name }}.session_store.tables import agents, messages, sessions
from {{ cookiecutter.__package_name }}.turns import locked_turn

from .memory_store import MemorySessionRepository

TEXT = "The quick brown fox jumps over the lazy dog while the agent keeps notes. " * 3
WINDOW = 40


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def interleaved_medians(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The median time of each run over `repeat` rounds, in each of which every run goes once,
    in a shuffled order: a slow spell of the machine weighs on all of them alike, and the
    ratios between them hold even when the machine is noisy."""
    # What earlier measurements left behind (the in-memory store keeps every message it was
    # given) is long-lived: frozen, as the service freezes what it starts with, so that it does
    # not slow down the garbage collections of what is measured next.
    gc.collect()
    gc.freeze()
    timings: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs.items())
    for _ in range(repeat):
        random.shuffle(order)
        for name, run in order:
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in timings.items()}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def message(number: int) -> dict[str, Any]:
    """A message of ~300 bytes, shaped as the SDK stores it."""
    role = ("user", "assistant")[number % 2]
    return {"role": role, "content": [{"text": f"{number}: {TEXT}"}], "tracking_id": f"t-{number}"}


def window_state(removed: int) -> dict[str, Any]:
    return {"__name__": "SlidingWindowConversationManager", "removed_message_count": removed}


# The stores compared


@dataclass
class Store:
    name: str
    repository: SessionRepository
    seed: Callable[[str, int, int], None]  # session id, messages, messages trimmed by the window
    floor: Callable[[str], int] | None = None  # the bare SELECT and JSON decoding of a session
    engine: Engine | None = None  # the database, for the stores that have one
    locks: SessionLocks | None = None  # the service's session locks on that database


def seed_through(repository: SessionRepository) -> Callable[[str, int, int], None]:
    def seed(session_id: str, total: int, removed: int) -> None:
        repository.create_session(Session(session_id, SessionType.AGENT))
        repository.create_agent(session_id, SessionAgent("default", {}, window_state(removed)))
        for number in range(total):
            repository.create_message(
                session_id, "default", SessionMessage(message(number), number)
            )

    return seed


def sql_store(name: str, engine: Engine, locks: SessionLocks) -> Store:
    """This project's store; seeded in bulk, since a 100,000-message session is seeded too."""

    def seed(session_id: str, total: int, removed: int) -> None:
        now = datetime.now(UTC)
        stamps = {"created_at": now, "updated_at": now}
        with engine.begin() as connection:
            connection.execute(
                insert(sessions), {"session_id": session_id, "session_type": "AGENT", **stamps}
            )
            connection.execute(
                insert(agents),
                {
                    "session_id": session_id,
                    "agent_id": "default",
                    "state": {},
                    "conversation_manager_state": window_state(removed),
                    "internal_state": {},
                    **stamps,
                },
            )
            for start in range(0, total, 5_000):
                rows = [
                    {"session_id": session_id, "agent_id": "default", "message_id": number,
                     "message": message(number), **stamps}
                    for number in range(start, min(total, start + 5_000))
                ]  # fmt: skip
                connection.execute(insert(messages), rows)

    def floor(session_id: str) -> int:
        query = text(
            "SELECT CAST(message AS TEXT) FROM messages "
            "WHERE session_id = :session_id AND agent_id = 'default' ORDER BY message_id"
        )
        with engine.connect() as connection:
            rows = connection.execute(query, {"session_id": session_id}).all()
        return len([json.loads(row[0]) for row in rows])

    return Store(name, SqlSessionRepository(engine), seed, floor, engine, locks)


@contextmanager
def stores(postgres_server: str | None) -> Iterator[list[Store]]:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        memory = MemorySessionRepository()
        files = FileSessionManager("unused", storage_dir=str(workdir / "files")).session_repository
        found = [
            Store("in-memory (SDK cost)", memory, seed_through(memory)),
            Store("FileSessionManager", files, seed_through(files)),
        ]
        urls = [("SQLite", f"sqlite:///{workdir / 'bench.db'}")]
        if postgres_server:
            urls.append(
                ("PostgreSQL", stack.enter_context(temporary_database(postgres_server, "bench")))
            )
        for name, url in urls:
            settings = Settings(_env_file=None, database_url=url)
            engine = create_engine(settings)
            stack.callback(engine.dispose)
            upgrade_schema(engine)
            locks, lock_engine = session_locks(settings, engine)
            if lock_engine is not None:
                stack.callback(lock_engine.dispose)
            found.append(sql_store(name, engine, locks))
        yield found


# Store benchmarks


def restore(repository: SessionRepository, session_id: str) -> Agent:
    manager = RepositorySessionManager(session_id=session_id, session_repository=repository)
    return Agent(model=EchoModel(), session_manager=manager, callback_handler=None)


def restore_as_the_service(store: Store, session_id: str) -> Agent:
    """A restore as a turn of the service runs it: holding the session's lock, in the turn
    scope, where one statement reads the session, the agent and the messages to restore."""
    with service_scope(store)(session_id):
        return restore(store.repository, session_id)


def bench_restore(all_stores: list[Store], sizes: list[int], repeat: int) -> list[dict]:
    results = []
    for size in sizes:
        session_id = f"restore-{size}"
        runs: dict[str, Callable[[], object]] = {}
        for store in all_stores:
            store.seed(session_id, size, 0)
            assert len(restore(store.repository, session_id).messages) == size
            runs[store.name] = partial(restore, store.repository, session_id)
            if store.floor:
                runs[f"{store.name} I/O floor"] = partial(store.floor, session_id)
            if store.locks:
                runs[f"{store.name}, as the service"] = partial(
                    restore_as_the_service, store, session_id
                )
        results.append({"messages": size, **interleaved_medians(runs, repeat)})
    return results


def bench_growth(all_stores: list[Store], total: int, repeat: int) -> list[dict]:
    """A long session whose window trimmed all but WINDOW messages, against a short one."""
    results = []
    for store in all_stores:
        if not store.floor:
            continue
        store.seed("grown", total, total - WINDOW)
        store.seed("short", WINDOW, 0)
        runs = {length: partial(restore, store.repository, length) for length in ("grown", "short")}
        medians = interleaved_medians(runs, repeat)
        results.append(
            {"store": store.name, **medians, "ratio": medians["grown"] / medians["short"]}
        )
    return results


@tool
def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: The text.
    """
    return len(text.split())


class ToolCallingEchoModel(EchoModel):
    """Calls word_count on each prompt, then echoes: a one-tool turn."""

    async def stream(self, messages: Messages, *args: Any, **kwargs: Any) -> Any:
        if any("toolResult" in block for block in messages[-1]["content"]):
            async for event in super().stream(messages, *args, **kwargs):
                yield event
            return
        start = {"toolUse": {"toolUseId": f"c-{len(messages)}", "name": "word_count"}}
        yield {"messageStart": {"role": "assistant"}}
        yield {"contentBlockStart": {"start": start}}
        yield {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"text": "a b c"}'}}}}
        yield {"contentBlockStop": {}}
        yield {"messageStop": {"stopReason": "tool_use"}}


@dataclass
class TimedAgent:
    """One long-lived agent that a per-turn figure is taken from."""

    name: str
    agent: Agent
    session_id: str
    scope: Callable[[str], AbstractContextManager] | None = None

    def turn(self) -> None:
        with self.scope(self.session_id) if self.scope else nullcontext():
            self.agent("How many words are in this prompt?")


def timed_agent(
    name: str,
    repository: SessionRepository | None,
    with_tool: bool,
    scope: Callable[[str], AbstractContextManager] | None = None,
) -> TimedAgent:
    """An agent for `name`'s figure; `scope(session_id)` is entered around each of its turns."""
    session_id = f"turns-{uuid.uuid4().hex}"
    manager = None
    if repository:
        manager = RepositorySessionManager(session_id=session_id, session_repository=repository)
    agent = Agent(
        model=ToolCallingEchoModel() if with_tool else EchoModel(),
        tools=[word_count],
        session_manager=manager,
        conversation_manager=SlidingWindowConversationManager(window_size=WINDOW),
        callback_handler=None,
    )
    return TimedAgent(name, agent, session_id, scope)


def turn_scope(store: Store) -> Callable[[str], AbstractContextManager]:
    """The repository's turn scope, on a pooled connection of its own."""
    return lambda session_id: store.repository.turn(session_id, "default")


def service_scope(store: Store) -> Callable[[str], AbstractContextManager]:
    """A turn as the service runs it (turns.locked_turn)."""
    return partial(locked_turn, store.locks, store.repository)


def bench_turns(all_stores: list[Store], turns: int) -> list[dict]:
    """Time a turn adds over the same agent with no session manager.

    Database stores are measured three ways: each call on a pooled connection (as any Strands
    agent uses a store), in the repository's turn scope, and as the service runs turns (the
    turn scope, and the session's lock around it). Every agent takes one turn per round
    (interleaved_medians).
    """
    results = []
    for kind, with_tool in (("text turn", False), ("one-tool turn", True)):
        timed = [timed_agent("no session manager", None, with_tool)]
        for store in all_stores:
            timed.append(timed_agent(store.name, store.repository, with_tool))
            if store.locks is not None:
                for how, scope in (("turn scope", turn_scope), ("as the service", service_scope)):
                    name = f"{store.name}, {how}"
                    timed.append(timed_agent(name, store.repository, with_tool, scope(store)))
        # The window fills up and starts trimming after WINDOW / 2 turns: measured from there.
        for _ in range(WINDOW // 2 + 1):
            for agent in timed:
                agent.turn()
        medians = interleaved_medians({agent.name: agent.turn for agent in timed}, turns)
        bare = medians.pop("no session manager")
        row: dict[str, Any] = {"turn": kind, "no session manager": bare}
        row.update({name: median - bare for name, median in medians.items()})
        results.append(row)
    return results


# Service benchmarks


def create_bench_app() -> FastAPI:
    """uvicorn factory: the service, or with BENCH_STORE=memory the same service on an in-memory
    store (what the service costs without a database)."""
    if os.environ.get("BENCH_STORE") == "memory":
        app_module.SqlSessionRepository = lambda engine: MemorySessionRepository()
    return app_module.create_app()


async def load(base_url: str, headers: dict, clients: int, sessions: int, duration: float) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            body = {"prompt": "What is new today?", "session_id": f"s-{random.randrange(sessions)}"}
            start = time.perf_counter()
            response = await client.post("/process", json=body)
            latencies.append(time.perf_counter() - start)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    return {
        "requests/s": len(latencies) / duration,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "errors": errors,
    }


def first_event(client: httpx.Client, repeat: int) -> dict:
    """Time from sending /process-streaming to its first event, and to its first text."""
    to_session, to_text = [], []
    for number in range(repeat):
        start = time.perf_counter()
        body = {"prompt": "Stream a reply", "session_id": f"first-{number}"}
        with client.stream("POST", "/process-streaming", json=body) as response:
            for line in response.iter_lines():
                if line == "event: session":
                    to_session.append(time.perf_counter() - start)
                elif line == "event: text":
                    to_text.append(time.perf_counter() - start)
                    break
    return {"first event": statistics.median(to_session), "first text": statistics.median(to_text)}


def probe_health(
    base_url: str, start_after: float, duration: float, probes: multiprocessing.Queue
) -> None:
    """Time GET /health every 10 ms once the streams are under way. Runs in a process of its
    own, so that the load generator's event loop never delays a reading."""
    time.sleep(start_after)
    timings = []
    deadline = time.perf_counter() + duration
    with httpx.Client(base_url=base_url) as client:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            client.get("/health")
            timings.append(time.perf_counter() - start)
            time.sleep(0.01)
    probes.put(timings)


async def stream_turns(base_url: str, headers: dict, streams: int, duration: float) -> None:
    deadline = time.perf_counter() + duration

    async def streamer(client: httpx.AsyncClient, number: int) -> None:
        while time.perf_counter() < deadline:
            body = {"prompt": "Stream a long reply " * 20, "session_id": f"stream-{number}"}
            async with client.stream("POST", "/process-streaming", json=body) as response:
                async for _ in response.aiter_lines():
                    pass

    limits = httpx.Limits(max_connections=streams)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as client:
        await asyncio.gather(*(streamer(client, n) for n in range(streams)))


def health_under_streams(base_url: str, headers: dict, streams: int, duration: float) -> dict:
    probes: multiprocessing.Queue = multiprocessing.Queue()
    # Probes start once the streams run, and stop before they end.
    margin = min(0.5, duration / 4)
    prober = multiprocessing.Process(
        target=probe_health, args=(base_url, margin, duration - 2 * margin, probes)
    )
    prober.start()
    asyncio.run(stream_turns(base_url, headers, streams, duration))
    timings = probes.get()
    prober.join()
    return {
        "p50": statistics.median(timings),
        "p99": percentile(timings, 0.99),
        "probes": len(timings),
    }


def bench_service(database_url: str, args: argparse.Namespace) -> dict:
    """Both services run side by side and take the load alternately, a few seconds at a time,
    so that a noisy neighbour or a slow spell of the machine weighs on both alike. Figures are
    medians over the rounds."""
    with ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        # In memory, the service touches no database; its session locks are in-process ones.
        urls = {"memory": f"sqlite:///{workdir}/unused.db", "database": database_url}
        clients = {
            # The service as shipped: its default settings.
            store: stack.enter_context(
                running_server(url, app="benchmarks.bench:create_bench_app", BENCH_STORE=store)
            )
            for store, url in urls.items()
        }
        rounds: dict[str, list[dict]] = {store: [] for store in clients}
        for _ in range(args.rounds):
            for store, client in clients.items():
                figures = asyncio.run(
                    load(
                        str(client.base_url),
                        dict(client.headers),
                        args.clients,
                        args.sessions,
                        args.duration / args.rounds,
                    )
                )
                rounds[store].append(figures)
        results: dict[str, Any] = {}
        for store, client in clients.items():
            results[store] = {
                name: statistics.median(figures[name] for figures in rounds[store])
                for name in ("requests/s", "p50", "p99")
            }
            results[store]["errors"] = sum(figures["errors"] for figures in rounds[store])
            results[store] |= first_event(client, repeat=20)
        database = clients["database"]
        results["health"] = health_under_streams(
            str(database.base_url), dict(database.headers), args.clients, args.duration
        )
    return results


# Report


def table(rows: list[dict], formats: dict[str, Callable[[Any], str]] | None = None) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = [
            (formats or {}).get(c, ms if isinstance(row[c], float) else str)(row[c])
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: dict[str, Any], postgres: bool) -> None:
    print(f"\n## Restore into a new Agent (median)\n\n{table(results['restore'])}")
    for row in results["restore"]:
        files, sdk = row["FileSessionManager"], row["in-memory (SDK cost)"]
        for name in ("SQLite", "PostgreSQL") if postgres else ("SQLite",):
            bound = row[f"{name} I/O floor"] + sdk
            service = row[f"{name}, as the service"]
            print(
                f"- {row['messages']:>6} messages, {name}: {files / row[name]:.1f}x faster than "
                f"FileSessionManager (target >= 15x at 10,000); "
                f"{row[name] / bound:.2f}x the I/O floor + SDK cost (target <= 1.5x); "
                f"as the service {service / row[name]:.2f}x the plain restore"
            )
    print(f"\n## Growth: {results['growth_total']:,} messages, the window keeps {WINDOW}\n")
    print(table(results["growth"], {"ratio": lambda r: f"{r:.2f}x (target <= 2x)"}))
    print(f"\n## Per-turn overhead over no session manager (median)\n\n{table(results['turns'])}")
    database = "PostgreSQL" if postgres else "SQLite"
    for row in results["turns"]:
        files = row["FileSessionManager"]
        for name in (column for column in row if column.startswith(database)):
            print(f"- {row['turn']}, {name}: {row[name] / files:.2f}x FileSessionManager's")
    print(
        "Target: at most 1.5 ms per text turn on PostgreSQL, for the store as the service uses"
        " it (its turn scope); as the service, the session lock's two statements come on top."
    )
    service = results.get("service")
    if service:
        print("\n## Service: /process, echo model, "
              f"{results['clients']} clients over {results['sessions']} sessions\n")  # fmt: skip
        rows = [{"store": store, **service[store]} for store in ("memory", "database")]
        print(table(rows, {"requests/s": lambda v: f"{v:.0f}", "errors": str}))
        ratio = service["database"]["requests/s"] / service["memory"]["requests/s"]
        print(f"\nThroughput on the database / in memory: {ratio:.2f} (target >= 0.7)")
        health = service["health"]
        print(f"\n## /health while {results['clients']} streaming turns run\n")
        print(f"p50 {ms(health['p50'])}, p99 {ms(health['p99'])} over {health['probes']} probes "
              "(target p99 <= 20 ms)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="messages per restored session")
    parser.add_argument("--growth", type=int, default=100_000, help="messages of the long session")
    parser.add_argument("--repeat", type=int, default=9, help="runs per restore figure")
    parser.add_argument("--turns", type=int, default=200, help="turns per per-turn figure")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--sessions", type=int, default=256)
    parser.add_argument("--duration", type=float, default=10, help="seconds per service figure")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of load")
    parser.add_argument("--no-service", action="store_true", help="skip the uvicorn benchmarks")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    postgres = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if not postgres:
        print("BENCH_DATABASE_URL is not set: PostgreSQL figures are left out.", file=sys.stderr)

    results: dict[str, Any] = {
        "growth_total": args.growth,
        "clients": args.clients,
        "sessions": args.sessions,
    }
    with stores(postgres) as all_stores:
        sizes = [int(size) for size in args.sizes.split(",")]
        results["restore"] = bench_restore(all_stores, sizes, args.repeat)
        results["growth"] = bench_growth(all_stores, args.growth, args.repeat)
        results["turns"] = bench_turns(all_stores, args.turns)
        if not args.no_service:
            # The service runs on the last store: PostgreSQL when there is one.
            url = all_stores[-1].engine.url.render_as_string(hide_password=False)
            results["service"] = bench_service(url, args)
    report(results, postgres=bool(postgres))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
