"""Session leases: which turn holds a session, and until when; and the session's version.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from {{ cookiecutter.__package_name }}.session_store.tables import UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as table:
        table.add_column(sa.Column("lease_id", sa.String(32), nullable=True))
        table.add_column(sa.Column("lease_expires_at", UtcDateTime(), nullable=True))
        table.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as table:
        table.drop_column("version")
        table.drop_column("lease_expires_at")
        table.drop_column("lease_id")
