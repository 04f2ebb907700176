"""Two first requests for one session, in threads or in processes: one creates it, none crashes."""

import multiprocessing
import threading
from collections.abc import Callable

import pytest
from strands.types.session import Session, SessionType

from {{ cookiecutter.__package_name }}.database import create_engine
from {{ cookiecutter.__package_name }}.session_store import (
    AlreadyExistsError,
    SqlSessionRepository,
)

from ..support.databases import settings_for

CONTENDERS = 8


def create_session(database_url: str, session_id: str, wait: Callable[[], object]) -> str:
    """Create the session with an engine of its own, as a separate replica would."""
    engine = create_engine(settings_for(database_url))
    repository = SqlSessionRepository(engine)
    try:
        engine.connect().close()  # connect before the start line, so the inserts really race
        wait()
        repository.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
        return "created"
    except AlreadyExistsError:
        return "exists"
    except Exception as error:  # reported to the test, which fails with it
        return repr(error)
    finally:
        engine.dispose()


def create_in_process(database_url: str, session_id: str, barrier, results) -> None:
    results.put(create_session(database_url, session_id, barrier.wait))


def test_threads_creating_one_session(repository: SqlSessionRepository, database_url: str) -> None:
    barrier = threading.Barrier(CONTENDERS)
    outcomes: list[str] = []

    def contender() -> None:
        outcomes.append(create_session(database_url, "race", barrier.wait))

    threads = [threading.Thread(target=contender) for _ in range(CONTENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["created"] + ["exists"] * (CONTENDERS - 1)
    assert repository.read_session("race") is not None


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_creating_one_session(
    repository: SqlSessionRepository, database_url: str, processes: int
) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=create_in_process, args=(database_url, "race", barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)

    assert outcomes == ["created"] + ["exists"] * (processes - 1)
    assert repository.read_session("race") is not None
