"""Sessions named per principal: every table keyed by (principal, session_id, ...), so that two
principals may use the same session id and neither can tell that the other does.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What each table holds below its session, and the table its foreign key refers to.
CHILDREN = {
    "agents": (["agent_id"], "sessions"),
    "multi_agents": (["multi_agent_id"], "sessions"),
    "messages": (["agent_id", "message_id"], "agents"),
}


def upgrade() -> None:
    # Each row below a session takes its session's principal.
    sessions = sa.table("sessions", sa.column("principal"), sa.column("session_id"))
    for name in CHILDREN:
        with op.batch_alter_table(name) as table:
            table.add_column(sa.Column("principal", sa.String(128), nullable=True))
        child = sa.table(name, sa.column("principal"), sa.column("session_id"))
        owner = sa.select(sessions.c.principal).where(sessions.c.session_id == child.c.session_id)
        op.execute(sa.update(child).values(principal=owner.scalar_subquery()))
    # The keys change from the top down; the foreign keys that point at them go first.
    for name in CHILDREN:
        with op.batch_alter_table(name) as table:
            table.drop_constraint(f"fk_{name}_{CHILDREN[name][1]}", type_="foreignkey")
    with op.batch_alter_table("sessions") as table:
        table.alter_column("principal", server_default=None)
        table.drop_constraint("pk_sessions", type_="primary")
        table.create_primary_key("pk_sessions", ["principal", "session_id"])
    for name, (below, parent) in CHILDREN.items():
        parent_key = ["principal", "session_id", *(["agent_id"] if parent == "agents" else [])]
        with op.batch_alter_table(name) as table:
            table.alter_column("principal", existing_type=sa.String(128), nullable=False)
            table.drop_constraint(f"pk_{name}", type_="primary")
            table.create_primary_key(f"pk_{name}", ["principal", "session_id", *below])
            table.create_foreign_key(
                f"fk_{name}_{parent}", parent, parent_key, parent_key, ondelete="CASCADE"
            )


def downgrade() -> None:
    sessions = sa.table("sessions", sa.column("session_id"))
    shared = (
        sa.select(sessions.c.session_id)
        .group_by(sessions.c.session_id)
        .having(sa.func.count() > 1)
        .limit(5)
    )
    if ids := op.get_bind().execute(shared).scalars().all():
        raise RuntimeError(
            f"Cannot go below 0004 while principals share session ids ({', '.join(ids)}): "
            "before it, a session id names one session only. Delete or rename those sessions first."
        )
    for name, (_below, parent) in CHILDREN.items():
        with op.batch_alter_table(name) as table:
            table.drop_constraint(f"fk_{name}_{parent}", type_="foreignkey")
    with op.batch_alter_table("sessions") as table:
        table.drop_constraint("pk_sessions", type_="primary")
        table.create_primary_key("pk_sessions", ["session_id"])
        table.alter_column("principal", existing_type=sa.String(128), server_default="local")
    for name, (below, parent) in CHILDREN.items():
        parent_key = ["session_id", *(["agent_id"] if parent == "agents" else [])]
        with op.batch_alter_table(name) as table:
            table.drop_constraint(f"pk_{name}", type_="primary")
            table.create_primary_key(f"pk_{name}", ["session_id", *below])
            table.create_foreign_key(
                f"fk_{name}_{parent}", parent, parent_key, parent_key, ondelete="CASCADE"
            )
            table.drop_column("principal")
