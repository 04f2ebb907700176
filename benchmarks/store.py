"""The session store against its peers: restoring a conversation, a long one, and a turn's cost.

Run in a baked project by `make bench` at the template root (scripts/bench.py). Every comparison
is measured side by side in one run, interleaved (`interleaved_medians`), and printed with its
ratios; nothing is asserted. PostgreSQL figures need BENCH_DATABASE_URL: a server on which the
user may create databases.
"""

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from my_agent.config import Settings
from my_agent.database import create_async_engine, create_engine, upgrade_schema
from my_agent.echo import EchoModel
from my_agent.session_store import SqlSessionRepository, TurnStore, turn_store_for
from my_agent.session_store.records import LOCAL_PRINCIPAL as LOCAL
from my_agent.session_store.tables import agents, messages, sessions
from sqlalchemy import Engine, event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine
from strands import Agent, tool
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.session import FileSessionManager, RepositorySessionManager, SessionRepository
from strands.types.content import Messages
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType
from tests.support.databases import temporary_database

from .memory_store import MemorySessionRepository, MemoryTurnStore

TEXT = "The quick brown fox jumps over the lazy dog while the agent keeps notes. " * 3
WINDOW = 40


def interleaved_medians(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The median time of each run over `repeat` rounds, in each of which every run goes once,
    in a shuffled order: a slow spell of the machine weighs on all of them alike, and the
    ratios between them hold even when the machine is noisy."""
    # What earlier measurements left behind is long-lived: frozen, as the service freezes what
    # it starts with, so that it does not slow the garbage collections of what is measured next.
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
    turns: TurnStore | None = None  # the service's turn store on the same database
    turn_engine: AsyncEngine | None = None  # the engine it runs on


def seed_through(repository: SessionRepository) -> Callable[[str, int, int], None]:
    def seed(session_id: str, total: int, removed: int) -> None:
        repository.create_session(Session(session_id, SessionType.AGENT))
        repository.create_agent(session_id, SessionAgent("default", {}, window_state(removed)))
        for number in range(total):
            repository.create_message(
                session_id, "default", SessionMessage(message(number), number)
            )

    return seed


def sql_store(name: str, engine: Engine, turn_engine: AsyncEngine, lease_seconds: float) -> Store:
    """This project's store; seeded in bulk, since a 100,000-message session is seeded too."""

    def seed(session_id: str, total: int, removed: int) -> None:
        now = datetime.now(UTC)
        stamps = {"created_at": now, "updated_at": now}
        with engine.begin() as connection:
            connection.execute(
                insert(sessions),
                {"principal": LOCAL, "session_id": session_id, "session_type": "AGENT", **stamps},
            )
            connection.execute(
                insert(agents),
                {
                    "principal": LOCAL,
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
                    {"principal": LOCAL, "session_id": session_id, "agent_id": "default",
                     "message_id": number, "message": message(number), **stamps}
                    for number in range(start, min(total, start + 5_000))
                ]  # fmt: skip
                connection.execute(insert(messages), rows)

    def floor(session_id: str) -> int:
        """The least any store must do: select the messages, and decode their JSON."""
        query = text(
            "SELECT CAST(message AS TEXT) FROM messages "
            "WHERE principal = :principal AND session_id = :session_id AND agent_id = 'default' "
            "ORDER BY message_id"
        )
        with engine.connect() as connection:
            rows = connection.execute(query, {"principal": LOCAL, "session_id": session_id}).all()
        return len([json.loads(row[0]) for row in rows])

    turns = turn_store_for(turn_engine, lease_seconds)
    return Store(name, SqlSessionRepository(engine), seed, floor, turns, turn_engine)


# The service's turn store is asynchronous: every figure of it runs on this one event loop.
LOOP = asyncio.new_event_loop()


def run(coroutine: Any) -> Any:
    return LOOP.run_until_complete(coroutine)


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
            turn_engine = create_async_engine(settings)
            stack.callback(lambda turn_engine=turn_engine: run(turn_engine.dispose()))
            found.append(sql_store(name, engine, turn_engine, settings.session_lease_seconds))
        yield found


# Restoring a conversation


def restore(repository: SessionRepository, session_id: str) -> Agent:
    manager = RepositorySessionManager(session_id=session_id, session_repository=repository)
    return Agent(model=EchoModel(), session_manager=manager, callback_handler=None)


def restore_as_the_service(turns: TurnStore, session_id: str) -> Agent:
    """A restore as a turn of the service makes it: one statement takes the lease and reads the
    session (on PostgreSQL), the agent is restored from the unit of work, the lease given back."""
    work = run(turns.begin(session_id, "default", "local"))
    agent = restore(work, session_id)
    run(turns.give_up(work))
    return agent


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
            if store.turns:
                runs[f"{store.name}, as the service"] = partial(
                    restore_as_the_service, store.turns, session_id
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


# What a turn costs


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


PROMPT = "How many words are in this prompt?"


def new_agent(with_tool: bool, repository: SessionRepository | None, session_id: str) -> Agent:
    manager = None
    if repository is not None:
        manager = RepositorySessionManager(session_id=session_id, session_repository=repository)
    return Agent(
        model=ToolCallingEchoModel() if with_tool else EchoModel(),
        tools=[word_count],
        session_manager=manager,
        conversation_manager=SlidingWindowConversationManager(window_size=WINDOW),
        callback_handler=None,
    )


def long_lived_turns(repository: SessionRepository | None, with_tool: bool) -> Callable[[], None]:
    """Turns of one agent kept for the whole conversation, as a Strands program keeps one."""
    agent = new_agent(with_tool, repository, f"turns-{uuid.uuid4().hex}")
    return lambda: agent(PROMPT)


def service_turns(turns: TurnStore | MemoryTurnStore, with_tool: bool) -> Callable[[], None]:
    """Turns as the service runs them: the session's lease and one read, an agent restored from
    the unit of work, one save that releases the lease."""
    session_id = f"turns-{uuid.uuid4().hex}"

    async def one_turn() -> None:
        work = await turns.begin(session_id, "default", "local")
        await new_agent(with_tool, work, session_id).invoke_async(PROMPT)
        await turns.save(work)

    return lambda: run(one_turn())


def bench_turns(all_stores: list[Store], repeat: int) -> list[dict]:
    """Time a turn adds over the same turn with no session manager, or, as the service runs
    turns, over the same on an in-memory turn store. Every kind takes one turn per round."""
    results = []
    for kind, with_tool in (("text turn", False), ("one-tool turn", True)):
        runs = {"no session manager": long_lived_turns(None, with_tool)}
        runs["service, in memory"] = service_turns(MemoryTurnStore(), with_tool)
        for store in all_stores:
            runs[store.name] = long_lived_turns(store.repository, with_tool)
            if store.turns:
                runs[f"{store.name}, as the service"] = service_turns(store.turns, with_tool)
        # The window fills up and starts trimming after WINDOW / 2 turns: measured from there.
        for _ in range(WINDOW // 2 + 1):
            for turn in runs.values():
                turn()
        medians = interleaved_medians(runs, repeat)
        bare, in_memory = medians.pop("no session manager"), medians.pop("service, in memory")
        row: dict[str, Any] = {"turn": kind, "no session manager": bare}
        row["service, in memory"] = in_memory
        for name, median in medians.items():
            row[name] = median - (in_memory if name.endswith("as the service") else bare)
        results.append(row)
    return results


def bench_round_trips(store: Store) -> dict[str, Any]:
    """The statements and commits a text turn of the service sends, on an existing session."""
    assert store.turns is not None and store.turn_engine is not None
    turn = service_turns(store.turns, with_tool=False)
    turn()  # the session and the agent exist from now on
    counts = {"store": store.name, "statements": 0, "commits": 0}

    def statement(*_: object) -> None:
        counts["statements"] += 1

    def commit(*_: object) -> None:
        counts["commits"] += 1

    engine = store.turn_engine.sync_engine
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        turn()
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
    return counts


# Report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


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


def report(results: dict[str, Any], databases: list[str]) -> None:
    print(f"\n## Restore into a new Agent (median)\n\n{table(results['restore'])}\n")
    for row in results["restore"]:
        files, sdk = row["FileSessionManager"], row["in-memory (SDK cost)"]
        for name in databases:
            bound = row[f"{name} I/O floor"] + sdk
            service = row[f"{name}, as the service"]
            print(
                f"- {row['messages']:>6} messages, {name}: {files / row[name]:.1f}x faster than "
                f"FileSessionManager (target >= 10x at 10,000); {row[name] / bound:.2f}x the I/O "
                f"floor + SDK cost (target <= 2x); as the service {service / row[name]:.2f}x "
                "the plain restore"
            )
    print(f"\n## Growth: {results['growth_total']:,} messages, the window keeps {WINDOW}\n")
    print(table(results["growth"], {"ratio": lambda r: f"{r:.2f}x (target <= 2x)"}))
    print("\n## Time a turn adds (median)\n")
    print(
        "Over no session manager for one long-lived agent; as the service, over the same "
        "service turn on an in-memory turn store.\n"
    )
    print(table(results["turns"]))
    print("\n## Round trips of a text turn of the service\n")
    print(table(results["round_trips"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="messages per restored session")
    parser.add_argument("--growth", type=int, default=100_000, help="messages of the long session")
    parser.add_argument("--repeat", type=int, default=9, help="runs per restore figure")
    parser.add_argument("--turns", type=int, default=200, help="turns per per-turn figure")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    postgres = os.environ.get("BENCH_DATABASE_URL")
    if not postgres:
        print("BENCH_DATABASE_URL is not set: PostgreSQL figures are left out.", file=sys.stderr)

    results: dict[str, Any] = {"growth_total": args.growth}
    with stores(postgres) as all_stores:
        sizes = [int(size) for size in args.sizes.split(",")]
        results["restore"] = bench_restore(all_stores, sizes, args.repeat)
        results["growth"] = bench_growth(all_stores, args.growth, args.repeat)
        results["turns"] = bench_turns(all_stores, args.turns)
        results["round_trips"] = [bench_round_trips(s) for s in all_stores if s.turns]
    report(results, databases=["SQLite", "PostgreSQL"] if postgres else ["SQLite"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
