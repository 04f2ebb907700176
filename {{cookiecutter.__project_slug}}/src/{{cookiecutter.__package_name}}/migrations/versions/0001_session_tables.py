"""Session tables: sessions, agents, messages, multi_agents.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from {{ cookiecutter.__package_name }}.session_store.tables import UtcDateTime

# The ids' length as this revision made them, until 0006.
ID_LENGTH = 128
# The JSON columns as this revision made them: jsonb on PostgreSQL, until 0005.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
NullableJson = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("session_type", sa.String(32), nullable=False),
        *timestamps(),
        sa.PrimaryKeyConstraint("session_id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_created_at_session_id", "sessions", ["created_at", "session_id"])
    op.create_table(
        "agents",
        sa.Column("session_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("agent_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("state", Json, nullable=False),
        sa.Column("conversation_manager_state", Json, nullable=False),
        sa.Column("internal_state", Json, nullable=False),
        *timestamps(),
        sa.PrimaryKeyConstraint("session_id", "agent_id", name="pk_agents"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.session_id"],
            name="fk_agents_sessions",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "messages",
        sa.Column("session_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("agent_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("message_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("message", Json, nullable=False),
        sa.Column("redact_message", NullableJson, nullable=True),
        *timestamps(),
        sa.PrimaryKeyConstraint("session_id", "agent_id", "message_id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["session_id", "agent_id"],
            ["agents.session_id", "agents.agent_id"],
            name="fk_messages_agents",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "multi_agents",
        sa.Column("session_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("multi_agent_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("state", Json, nullable=False),
        *timestamps(),
        sa.PrimaryKeyConstraint("session_id", "multi_agent_id", name="pk_multi_agents"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.session_id"],
            name="fk_multi_agents_sessions",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("multi_agents")
    op.drop_table("messages")
    op.drop_table("agents")
    op.drop_index("ix_sessions_created_at_session_id", table_name="sessions")
    op.drop_table("sessions")
