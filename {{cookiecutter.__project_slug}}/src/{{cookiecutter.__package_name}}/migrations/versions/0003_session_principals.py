"""Principals: who created each session (and the index that lists a principal's sessions), and
the API keys that name them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from {{ cookiecutter.__package_name }}.session_store.tables import UtcDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing sessions go to "local": visible with AUTH_MODE=none, to nobody else.
    op.add_column(
        "sessions",
        sa.Column("principal", sa.String(128), nullable=False, server_default="local"),
    )
    op.drop_index("ix_sessions_created_at_session_id", table_name="sessions")
    op.create_index(
        "ix_sessions_principal_created_at_session_id",
        "sessions",
        ["principal", "created_at", "session_id"],
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
    )


def downgrade() -> None:
    sessions = sa.table("sessions", sa.column("principal"))
    owned = sa.select(sessions.c.principal).where(sessions.c.principal != "local").distinct()
    if principals := op.get_bind().execute(owned.limit(5)).scalars().all():
        raise RuntimeError(
            f"Cannot go below 0003 while sessions belong to principals ({', '.join(principals)}): "
            "before it, every session is everyone's. Delete those sessions first."
        )
    op.drop_table("api_keys")
    op.drop_index("ix_sessions_principal_created_at_session_id", table_name="sessions")
    op.create_index("ix_sessions_created_at_session_id", "sessions", ["created_at", "session_id"])
    with op.batch_alter_table("sessions") as table:
        table.drop_column("principal")
