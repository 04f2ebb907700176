"""`GET /sessions` cursors, signed: a client can only pass back a cursor the service handed out.

The session store's cursor (base64 JSON) is followed by an HMAC-SHA256 of it under
CURSOR_SECRET. A cursor is decoded only once its signature matches, so a forged or altered one
(a timestamp out of range, deeply nested JSON, garbage) never reaches the decoder or the database.
"""

import hashlib
import hmac
import logging
import secrets
from base64 import urlsafe_b64encode

from ..config import Settings
from ..session_store import InvalidCursorError

logger = logging.getLogger(__name__)


def cursor_secret(settings: Settings) -> bytes:
    """CURSOR_SECRET; unset, a key of this process only (with a warning)."""
    if settings.cursor_secret is not None:
        return settings.cursor_secret.get_secret_value().encode()
    logger.warning(
        "CURSOR_SECRET is unset: session cursors are signed with a key of this process "
        "only, and are refused after a restart or by another replica"
    )
    return secrets.token_bytes(32)


def _signature(secret: bytes, cursor: str) -> str:
    digest = hmac.new(secret, cursor.encode(), hashlib.sha256).digest()
    return urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def sign_cursor(secret: bytes, cursor: str) -> str:
    return f"{cursor}.{_signature(secret, cursor)}"


def verify_cursor(secret: bytes, signed: str) -> str:
    """The store's cursor inside `signed`, or InvalidCursorError if it was not signed here."""
    cursor, _, signature = signed.rpartition(".")
    if not hmac.compare_digest(signature.encode(), _signature(secret, cursor).encode()):
        raise InvalidCursorError(
            f"invalid cursor {signed[:100]!r}: pass back a next_cursor as it was given"
        )
    return cursor
