"""API keys: each names a principal; the database holds only their hashes.

A key is `<key id>.<secret>`. The id, which is not secret, finds the key's row; the secret is
checked against the row's SHA-256 hash. Keys are random (256 bits), so a fast hash is enough: no
password hashing, whose cost would fall on every request. Revoking a key takes effect on every
replica at once: each request reads its key's row, on the event loop through the service's
asynchronous engine (no thread and no pre-ping for it).
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    Engine,
    RowMapping,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from .session_store import again_if_dropped, metadata, validate_principal
from .session_store.tables import PRINCIPAL_LENGTH, Timestamp

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("principal", String(PRINCIPAL_LENGTH), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
)


@dataclass(frozen=True)
class ApiKey:
    """What is known of a key once it is made: everything but its secret."""

    key_id: str
    principal: str
    created_at: datetime
    revoked_at: datetime | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(engine: Engine, principal: str) -> str:
    """A new key for `principal`, returned once: only its hash is stored."""
    key_id = secrets.token_hex(6)
    key = f"{key_id}.{secrets.token_urlsafe(32)}"
    values = {
        "key_id": key_id,
        "principal": validate_principal(principal),
        "key_hash": _hash(key),
        "created_at": datetime.now(UTC),
    }
    with engine.begin() as connection:
        connection.execute(insert(api_keys).values(values))
    return key


def list_api_keys(engine: Engine) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    columns = (api_keys.c[name] for name in ("key_id", "principal", "created_at", "revoked_at"))
    query = select(*columns).order_by(api_keys.c.created_at, api_keys.c.key_id)
    with engine.connect() as connection:
        return [ApiKey(**row) for row in connection.execute(query).mappings()]


def revoke_api_key(engine: Engine, key_id: str) -> bool:
    """Revoke the key; False if there is no such key that is not revoked already."""
    statement = (
        update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount == 1


_READ_KEY = select(api_keys.c.principal, api_keys.c.key_hash).where(
    api_keys.c.key_id == bindparam("key_id"), api_keys.c.revoked_at.is_(None)
)


async def principal_for_key(engine: AsyncEngine, key: str) -> str | None:
    """The principal of a valid, unrevoked key; None for any other string."""
    values = {"key_id": key.partition(".")[0]}

    async def read() -> RowMapping | None:
        async with engine.connect() as connection:
            return (await connection.execute(_READ_KEY, values)).mappings().first()

    row = await again_if_dropped(read)
    if row is None or not hmac.compare_digest(row["key_hash"], _hash(key)):
        return None
    return row["principal"]
