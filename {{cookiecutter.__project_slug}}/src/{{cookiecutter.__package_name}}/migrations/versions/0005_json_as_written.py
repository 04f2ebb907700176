"""JSON kept as written on PostgreSQL: the json type instead of jsonb, which sorted objects' keys
and stored numbers as decimals (1e16 came back an integer). SQLite kept it as written already.

Rewrites each table with a JSON column, holding it locked meanwhile: turns wait, or fail once
DB_STATEMENT_TIMEOUT_MS passes, until it is done. Either release works with either type.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_COLUMNS = {
    "agents": ["state", "conversation_manager_state", "internal_state"],
    "messages": ["message", "redact_message"],
    "multi_agents": ["state"],
}


def upgrade() -> None:
    change_json_columns("json")


def downgrade() -> None:
    change_json_columns("jsonb")


def change_json_columns(sql_type: str) -> None:
    """Each table's JSON columns to `sql_type`, in one ALTER TABLE, so that it is rewritten once."""
    if op.get_context().dialect.name != "postgresql":
        return
    for table, columns in JSON_COLUMNS.items():
        changes = (
            f"ALTER COLUMN {name} TYPE {sql_type} USING {name}::{sql_type}" for name in columns
        )
        op.execute(f"ALTER TABLE {table} {', '.join(changes)}")
