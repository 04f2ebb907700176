"""Retention: the sessions that no turn has changed for a while are deleted, every principal's,
with all they hold (`{{ cookiecutter.__project_slug }} delete-idle-sessions DAYS`)."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select, tuple_

from .leases import lease_is_free
from .tables import sessions

# Sessions deleted a statement, each statement a transaction of its own: a deletion of millions
# of messages does not hold them all locked in one transaction, nor lose all its work to one
# failure.
BATCH = 100


def delete_idle_sessions(engine: Engine, idle_for: timedelta) -> int:
    """Delete the sessions last changed more than `idle_for` ago, but those whose turn is running
    (a live lease); return how many were deleted."""
    cutoff = datetime.now(UTC) - idle_for
    idle = (sessions.c.updated_at < cutoff, lease_is_free(engine.dialect))
    key = (sessions.c.principal, sessions.c.session_id)
    some_idle = select(*key).where(*idle).limit(BATCH)
    # The conditions again outside the batch: a turn that takes a session's lease while the
    # statement runs keeps the session.
    batch = delete(sessions).where(tuple_(*key).in_(some_idle), *idle)
    deleted = 0
    while True:
        with engine.begin() as connection:
            count = connection.execute(batch).rowcount
        if count == 0:
            return deleted
        deleted += count
