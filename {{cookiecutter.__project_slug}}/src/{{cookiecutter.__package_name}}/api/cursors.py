"""`GET /sessions` cursors, signed: a client can only pass back a cursor the service handed out,
to the principal it was handed out to.

The session store's cursor (base64 JSON) is followed by an HMAC-SHA256, under CURSOR_SECRET, of
it and of the principal. A cursor is decoded only once its signature matches, so a forged or
altered one (a timestamp out of range, deeply nested JSON, garbage) never reaches the decoder or
the database, and another principal's is refused rather than paging through the caller's own
sessions from where the other's page ended.
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


def _signature(secret: bytes, principal: str, cursor: str) -> str:
    # A cursor holds no "." (verify_cursor ends it at the first): the message's first "." ends
    # it, so no other cursor and principal sign the same message, whatever "."s a principal has.
    message = f"{cursor}.{principal}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def sign_cursor(secret: bytes, principal: str, cursor: str) -> str:
    return f"{cursor}.{_signature(secret, principal, cursor)}"


def verify_cursor(secret: bytes, principal: str, signed: str) -> str:
    """The store's cursor inside `signed`, or InvalidCursorError if it was not signed here for
    `principal`."""
    cursor, _, signature = signed.partition(".")
    expected = _signature(secret, principal, cursor)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise InvalidCursorError(
            f"invalid cursor {signed[:100]!r}: pass back a next_cursor as it was given"
        )
    return cursor
