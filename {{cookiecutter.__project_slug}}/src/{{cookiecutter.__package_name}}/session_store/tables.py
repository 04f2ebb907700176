"""The tables that hold sessions, their agents, the agents' messages and multi-agent state."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
)

# Session, agent and multi-agent ids are up to 256 characters, as long as an AgentCore Runtime
# session id may be; principals up to 128. Whatever the characters, a message's key (principal,
# session, agent) then fits in an entry of a PostgreSQL index, which holds at most 2,704 bytes.
ID_LENGTH = 256
PRINCIPAL_LENGTH = 128
# An Idempotency-Key, as a client makes it (a UUID, a random id).
TURN_KEY_LENGTH = 128

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always comes back in UTC.

    PostgreSQL returns timestamptz values in the connection's time zone and SQLite stores no
    time zone at all; both are normalised here so that timestamps round-trip unchanged.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must carry a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON kept as written, on PostgreSQL (its json type) as on SQLite: a conversation reads back as
# it was stored. jsonb would sort objects' keys, so that a model saw its own tool calls reordered,
# and store numbers as decimals, so that 1e16 came back an integer.
Json = JSON()
# Stores Python None as SQL NULL rather than the JSON text 'null'.
NullableJson = JSON(none_as_null=True)


# PostgreSQL returns timestamptz values in UTC as they are (the connections' time zone is UTC):
# reading them needs no conversion in Python, which for a long conversation is most of its cost.
Timestamp = UtcDateTime().with_variant(DateTime(timezone=True), "postgresql")


def _timestamps() -> list[Column]:
    return [
        Column("created_at", Timestamp, nullable=False),
        Column("updated_at", Timestamp, nullable=False),
    ]


# Every table is keyed by principal first: each principal (caller) names its sessions in its own
# namespace, so that two callers may both use session "chat-1" and neither learns that the other
# does. Sessions stored before principals existed belong to "local", AUTH_MODE=none's principal.
sessions = Table(
    "sessions",
    metadata,
    Column("principal", String(PRINCIPAL_LENGTH), primary_key=True),
    Column("session_id", String(ID_LENGTH), primary_key=True),
    Column("session_type", String(32), nullable=False),
    *_timestamps(),
    # The lease of the turn running on the session, if any (leases.py): its id, which the turn
    # shows to save, and when it expires by the database's clock unless its replica renews it.
    Column("lease_id", String(32), nullable=True),
    Column("lease_expires_at", Timestamp, nullable=True),
    # How many turns were saved into the session (each save adds one).
    Column("version", Integer, nullable=False, server_default="0"),
    # A principal's sessions, newest first, with a (created_at, session_id) cursor: one range
    # of this index.
    Index(None, "principal", "created_at", "session_id"),
)

agents = Table(
    "agents",
    metadata,
    Column("principal", String(PRINCIPAL_LENGTH), primary_key=True),
    Column("session_id", String(ID_LENGTH), primary_key=True),
    Column("agent_id", String(ID_LENGTH), primary_key=True),
    Column("state", Json, nullable=False),
    Column("conversation_manager_state", Json, nullable=False),
    Column("internal_state", Json, nullable=False),
    *_timestamps(),
    ForeignKeyConstraint(
        ["principal", "session_id"],
        ["sessions.principal", "sessions.session_id"],
        ondelete="CASCADE",
    ),
)

# The primary key (principal, session_id, agent_id, message_id) is also the index that restoring
# a conversation from an offset range-scans.
messages = Table(
    "messages",
    metadata,
    Column("principal", String(PRINCIPAL_LENGTH), primary_key=True),
    Column("session_id", String(ID_LENGTH), primary_key=True),
    Column("agent_id", String(ID_LENGTH), primary_key=True),
    Column("message_id", Integer, primary_key=True, autoincrement=False),
    Column("message", Json, nullable=False),
    Column("redact_message", NullableJson, nullable=True),
    *_timestamps(),
    ForeignKeyConstraint(
        ["principal", "session_id", "agent_id"],
        ["agents.principal", "agents.session_id", "agents.agent_id"],
        ondelete="CASCADE",
    ),
)

# The turns stored with a key of their client's (an Idempotency-Key): a turn sent again with its
# key, as a client does that did not hear the answer, is refused rather than run and stored twice.
turn_keys = Table(
    "turn_keys",
    metadata,
    Column("principal", String(PRINCIPAL_LENGTH), primary_key=True),
    Column("session_id", String(ID_LENGTH), primary_key=True),
    Column("turn_key", String(TURN_KEY_LENGTH), primary_key=True),
    # The turn's prompt: the first of the messages it stored, and its text's SHA-256, to tell
    # the same turn sent again from another sent with the same key.
    Column("message_id", Integer, nullable=False),
    Column("prompt_sha256", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    ForeignKeyConstraint(
        ["principal", "session_id"],
        ["sessions.principal", "sessions.session_id"],
        ondelete="CASCADE",
    ),
)

multi_agents = Table(
    "multi_agents",
    metadata,
    Column("principal", String(PRINCIPAL_LENGTH), primary_key=True),
    Column("session_id", String(ID_LENGTH), primary_key=True),
    Column("multi_agent_id", String(ID_LENGTH), primary_key=True),
    Column("state", Json, nullable=False),
    *_timestamps(),
    ForeignKeyConstraint(
        ["principal", "session_id"],
        ["sessions.principal", "sessions.session_id"],
        ondelete="CASCADE",
    ),
)
