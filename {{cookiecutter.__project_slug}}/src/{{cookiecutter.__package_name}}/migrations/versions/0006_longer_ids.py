"""Longer ids: session, agent and multi-agent ids of up to 256 characters (128 before), as long as
an AgentCore Runtime session id may be. Principals stay at up to 128.

On PostgreSQL a longer varchar changes the catalog only: no table or index is rewritten. SQLite
does not hold its columns to a length; its tables are rebuilt to match the tables in code.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The id columns of each table.
ID_COLUMNS = {
    "sessions": ["session_id"],
    "agents": ["session_id", "agent_id"],
    "messages": ["session_id", "agent_id"],
    "multi_agents": ["session_id", "multi_agent_id"],
}

# The columns that hold every id stored (a message's ids are its agent's).
STORED_IDS = {"sessions": "session_id", "agents": "agent_id", "multi_agents": "multi_agent_id"}


def upgrade() -> None:
    change_id_length(128, 256)


def downgrade() -> None:
    longer = []
    for table, name in STORED_IDS.items():
        column = sa.table(table, sa.column(name)).c[name]
        query = sa.select(column).where(sa.func.length(column) > 128).limit(3)
        longer += [f"{name} {value[:40]!r}..." for value in op.get_bind().scalars(query)]
    if longer:
        raise RuntimeError(
            "Cannot go below 0006 while ids longer than 128 characters are stored "
            f"({', '.join(longer)}): before it, none may be. Delete the sessions that hold them "
            "first."
        )
    change_id_length(256, 128)


def change_id_length(old: int, new: int) -> None:
    for table, columns in ID_COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name in columns:
                batch.alter_column(name, existing_type=sa.String(old), type_=sa.String(new))
