"""Retention: sessions idle for longer than asked are deleted, every principal's, with all they
hold; a session whose turn is running is kept, however old."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from {{ cookiecutter.__package_name }}.cli import main as command_line
from {{ cookiecutter.__package_name }}.database import create_engine, upgrade_schema
from {{ cookiecutter.__package_name }}.session_store import SqlSessionRepository, retention
from {{ cookiecutter.__package_name }}.session_store.tables import messages, sessions

from ..support.databases import settings_for


def stored_session(owner: SqlSessionRepository, session_id: str, days_ago: int) -> None:
    """A session last changed `days_ago` days ago, with an agent and a message."""
    moment = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    owner.create_session(Session(session_id, SessionType.AGENT, moment, moment))
    owner.create_agent(session_id, SessionAgent("default", {}, {}))
    message = SessionMessage({"role": "user", "content": [{"text": "Hi"}]}, message_id=0)
    owner.create_message(session_id, "default", message)


def test_sessions_idle_for_longer_than_asked_are_deleted_with_all_they_hold(
    repository: SqlSessionRepository, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH", 1)  # several batches
    alice, bob = repository.for_principal("alice"), repository.for_principal("bob")
    for owner in (alice, bob):
        stored_session(owner, "old", days_ago=31)
    stored_session(alice, "recent", days_ago=29)
    stored_session(alice, "running", days_ago=31)
    running = update(sessions).where(sessions.c.session_id == "running")
    with engine.begin() as connection:  # its turn holds the lease
        in_a_minute = datetime.now(UTC) + timedelta(minutes=1)
        connection.execute(running.values(lease_id="a-turn", lease_expires_at=in_a_minute))

    deleted = retention.delete_idle_sessions(engine, timedelta(days=30))

    assert deleted == 2
    assert {session.session_id for session in alice.list_sessions().sessions} == {
        "recent",
        "running",
    }
    assert bob.list_sessions().sessions == []
    with engine.begin() as connection:
        left = select(func.count()).select_from(messages).where(messages.c.session_id == "old")
        assert connection.execute(left).scalar_one() == 0
        a_second_ago = datetime.now(UTC) - timedelta(seconds=1)  # SQLite's clock reads ms
        connection.execute(running.values(lease_expires_at=a_second_ago))  # the turn ended
    for session_id in ("recent", "running"):
        alice.delete_session(session_id)


def test_the_command_line_deletes_the_sessions_idle_for_more_than_its_days(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'idle.db'}"
    engine = create_engine(settings_for(database_url))
    upgrade_schema(engine)
    owner = SqlSessionRepository(engine)
    stored_session(owner, "old", days_ago=31)
    stored_session(owner, "recent", days_ago=29)
    monkeypatch.setenv("DATABASE_URL", database_url)

    command_line(["delete-idle-sessions", "30"])

    assert capsys.readouterr().out == "deleted 1 sessions idle for more than 30 days\n"
    assert [session.session_id for session in owner.list_sessions().sessions] == ["recent"]
    engine.dispose()
    with pytest.raises(SystemExit):
        command_line(["delete-idle-sessions", "0"])  # a day at least: 0 would delete them all
