"""Session locks: a second holder waits, then gives up; a crashed holder frees the lock."""

import threading
import time

import pytest
from sqlalchemy import text

from {{ cookiecutter.__package_name }}.database import create_lock_engine
from {{ cookiecutter.__package_name }}.session_store.locks import (
    AdvisorySessionLocks,
    ProcessSessionLocks,
    SessionBusyError,
)

from .databases import postgres_database, settings_for


def test_process_locks_serialise_one_session_and_not_others() -> None:
    locks = ProcessSessionLocks(timeout=0.1)

    with locks.hold("a"):
        with locks.hold("b"):
            pass
        with pytest.raises(SessionBusyError, match="'a' is busy"), locks.hold("a"):
            pass
    with locks.hold("a"):
        pass
    assert locks._locks == {}, "no lock is kept for a session nobody holds"


def test_a_waiting_turn_gets_the_lock_when_the_holder_releases_it() -> None:
    locks = ProcessSessionLocks(timeout=10)
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with locks.hold("s"):
            held.set()
            time.sleep(0.2)
            order.append("first")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait()
    with locks.hold("s"):
        order.append("second")
    thread.join()

    assert order == ["first", "second"]


@pytest.mark.postgresql
def test_advisory_locks_coordinate_replicas_and_survive_a_crash() -> None:
    with postgres_database() as url:
        settings = settings_for(url, session_lock_timeout=0.3)
        # Two engines stand for two replicas.
        one, two = create_lock_engine(settings), create_lock_engine(settings)
        replica_one = AdvisorySessionLocks(one, timeout=0.3)
        replica_two = AdvisorySessionLocks(two, timeout=0.3)
        try:
            with replica_one.hold("s"):
                with replica_two.hold("other"):
                    pass
                with pytest.raises(SessionBusyError), replica_two.hold("s"):
                    pass
            with replica_two.hold("s"):
                pass

            # A replica that dies mid-turn: PostgreSQL ends its connection, and the lock goes.
            with replica_one.hold("s"), one.connect() as spare:
                # pg_locks spans the cluster: other test runs may hold advisory locks too.
                holder = spare.execute(
                    text(
                        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND database = (SELECT oid FROM pg_database "
                        "WHERE datname = current_database())"
                    )
                ).scalar_one()
                spare.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
                with replica_two.hold("s"):
                    pass
        finally:
            one.dispose()
            two.dispose()
