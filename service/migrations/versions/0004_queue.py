"""the queue's fields: a job's priority, its queue, when a retry may start, and its attempts' history

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("queue", sa.String(64), nullable=True))
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attempt_log", sa.JSON(), nullable=False, server_default="[]"))
    op.create_index("ix_jobs_status_priority", "jobs", ["status", "priority", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_priority", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("attempt_log")
        batch.drop_column("not_before")
        batch.drop_column("queue")
        batch.drop_column("priority")
