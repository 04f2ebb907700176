"""Session leases: one turn at a time per session across every replica, with no connection held.

A lease is two columns of the session's row: its id (a random token per turn) and when it
expires, by the database's clock, never a replica's. A turn takes it before it reads the session
and gives it back in the transaction that saves it; its replica renews it meanwhile, so that a
replica that dies leaves its sessions free once their leases expire. A turn that lost its lease
(its replica stalled past the expiry) writes nothing: the save releases the lease only where the
id is still the turn's and it has not expired, and goes no further when it finds none.

The save that releases a lease sets its expiry to RELEASED_AT, long past, and leaves its id in
place until the next turn takes the session: a turn that failed after its save does not give
back, or discard, what the save stored. A lease that ran out is never mistaken for a released one.
(Whether a save whose answer never came back was done, its messages tell: turn_store.py.)
"""

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Dialect, bindparam, func, or_, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement

from .tables import UtcDateTime, sessions

# The expiry a save gives the lease it releases: long past, so that every turn (and every earlier
# release of this service, which released leases by clearing them) reads the session as free.
RELEASED_AT = datetime(1970, 1, 1, tzinfo=UTC)
# The expiry a revoke gives the lease it takes: long past too (whatever the clock of a statement
# that began before the revoke and waited for its row), but not RELEASED_AT: nothing was saved.
REVOKED_AT = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)


def database_time(dialect: Dialect, seconds_from_now: float = 0) -> ColumnElement[datetime]:
    """The database's clock, `seconds_from_now` ahead: the one clock every replica reads.

    SQLAlchemy has no portable date arithmetic; on SQLite the time is text in the format
    SQLAlchemy stores datetimes in, which sorts in time order. On PostgreSQL it is the time as the
    row is written (`clock_timestamp()`), not as the statement began (`now()`): a take that waited
    for its row would give a lease that had run out as long as it waited. (SQLite reads its
    clock once it holds the database, for writers take turns.)
    """
    if dialect.name == "sqlite":
        modifier = f"{seconds_from_now:+.3f} seconds"
        return func.strftime("%Y-%m-%d %H:%M:%f", "now", modifier, type_=UtcDateTime)
    return func.clock_timestamp() + timedelta(seconds=seconds_from_now)


def lease_is_free(dialect: Dialect) -> ColumnElement[bool]:
    """Whether a session's row holds no live lease: none was taken, or it has expired (a released
    one expired at RELEASED_AT)."""
    return or_(sessions.c.lease_id.is_(None), sessions.c.lease_expires_at <= database_time(dialect))


class Leases:
    """The statements that take, renew and release leases (built once: building a statement costs
    more than running it), and their values. The turn store runs them."""

    def __init__(self, dialect: Dialect, seconds: float) -> None:
        now, expiry = database_time(dialect), database_time(dialect, seconds)
        this_session = (
            sessions.c.principal == bindparam("key_principal"),
            sessions.c.session_id == bindparam("key_session"),
        )
        this_lease = sessions.c.lease_id == bindparam("key_lease")

        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        new_session = insert(sessions).values(
            principal=bindparam("key_principal"),
            session_id=bindparam("key_session"),
            session_type="AGENT",
            created_at=bindparam("now"),
            updated_at=bindparam("now"),
            lease_id=bindparam("new_lease"),
            lease_expires_at=expiry,
        )
        # Creates the session if it is new; returns nothing if another turn holds the lease.
        self.take = new_session.on_conflict_do_update(
            index_elements=[sessions.c.principal, sessions.c.session_id],
            set_={"lease_id": new_session.excluded.lease_id, "lease_expires_at": expiry},
            where=lease_is_free(dialect),
        ).returning(*sessions.c)
        # Returns the session's key if the lease was still held; the row stays locked until the
        # end of the transaction, so that no turn takes the lease before the save is written.
        self.release = (
            update(sessions)
            .where(*this_session, this_lease, sessions.c.lease_expires_at > now)
            .values(
                lease_expires_at=RELEASED_AT,
                updated_at=bindparam("now"),
                version=sessions.c.version + 1,
            )
            .returning(sessions.c.principal, sessions.c.session_id)
        )
        # Takes (principal, session id, lease id) triples; returns the ids of the leases renewed.
        held = tuple_(sessions.c.principal, sessions.c.session_id, sessions.c.lease_id)
        self.renew = (
            update(sessions)
            .where(
                held.in_(bindparam("leases", expanding=True)),
                sessions.c.lease_expires_at > now,
            )
            .values(lease_expires_at=expiry)
            .returning(sessions.c.lease_id)
        )
        # Takes the lease from the turn that holds it, whichever it is (the turn is cancelled):
        # returns the session's id if one held it. The lease expires now and keeps its id, so
        # that the turn can still give it back, or discard the session it created.
        self.revoke = (
            update(sessions)
            .where(*this_session, sessions.c.lease_expires_at > now)
            .values(lease_expires_at=REVOKED_AT)
            .returning(sessions.c.session_id)
        )
        # Gives the lease back without saving anything (the turn failed), unless a save released it.
        self.give_up = (
            update(sessions)
            .where(*this_session, this_lease, sessions.c.lease_expires_at != RELEASED_AT)
            .values(lease_id=None, lease_expires_at=None)
        )

    @staticmethod
    def take_values(principal: str, session_id: str) -> dict[str, Any]:
        """The values of `take` for a new lease on the principal's session."""
        return {
            "key_principal": principal,
            "key_session": session_id,
            "new_lease": secrets.token_hex(16),
            "now": datetime.now(UTC),
        }

    @staticmethod
    def release_values(principal: str, session_id: str, lease_id: str) -> dict[str, Any]:
        """The values of `release` and of `give_up`."""
        return {
            "key_principal": principal,
            "key_session": session_id,
            "key_lease": lease_id,
            "now": datetime.now(UTC),
        }
