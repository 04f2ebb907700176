"""Durable Strands sessions in PostgreSQL or SQLite."""

from .repository import (
    AlreadyExistsError,
    InvalidCursorError,
    InvalidIdError,
    MessageActivity,
    NotFoundError,
    SessionPage,
    SqlSessionRepository,
    validate_id,
)
from .tables import metadata

__all__ = [
    "AlreadyExistsError",
    "InvalidCursorError",
    "InvalidIdError",
    "MessageActivity",
    "NotFoundError",
    "SessionPage",
    "SqlSessionRepository",
    "metadata",
    "validate_id",
]
