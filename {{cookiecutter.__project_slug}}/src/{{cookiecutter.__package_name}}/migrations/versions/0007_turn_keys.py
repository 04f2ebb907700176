"""Turn keys: the turns stored with a key of their client's (an Idempotency-Key), so that a
turn sent again with its key is refused rather than stored twice.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from {{ cookiecutter.__package_name }}.session_store.tables import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "turn_keys",
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("turn_key", sa.String(128), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("prompt_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["principal", "session_id"],
            ["sessions.principal", "sessions.session_id"],
            name="fk_turn_keys_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("principal", "session_id", "turn_key", name="pk_turn_keys"),
    )


def downgrade() -> None:
    op.drop_table("turn_keys")
