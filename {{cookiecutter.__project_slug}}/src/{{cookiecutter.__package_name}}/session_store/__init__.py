"""Durable Strands sessions in PostgreSQL or SQLite.

`SqlSessionRepository` is a plain Strands `SessionRepository` for any agent; the service runs
each turn through a `TurnStore` instead: a lease and one read to begin, one transaction to end.
"""

from .records import (
    AlreadyExistsError,
    InvalidIdError,
    NotFoundError,
    SessionBusyError,
    validate_id,
    validate_principal,
)
from .repository import InvalidCursorError, SessionPage, SqlSessionRepository
from .tables import metadata
from .turn_store import (
    LeaseLostError,
    LeaseRevokedError,
    SaveOutcomeUnknownError,
    TurnAlreadyStoredError,
    TurnKeyReusedError,
    TurnStore,
    again_if_dropped,
    turn_store_for,
)
from .unit_of_work import TurnKey, UnitOfWork

__all__ = [
    "AlreadyExistsError",
    "InvalidCursorError",
    "InvalidIdError",
    "LeaseLostError",
    "LeaseRevokedError",
    "NotFoundError",
    "SaveOutcomeUnknownError",
    "SessionBusyError",
    "SessionPage",
    "SqlSessionRepository",
    "TurnAlreadyStoredError",
    "TurnKey",
    "TurnKeyReusedError",
    "TurnStore",
    "UnitOfWork",
    "again_if_dropped",
    "metadata",
    "turn_store_for",
    "validate_id",
    "validate_principal",
]
