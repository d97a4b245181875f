"""threads: a line of jobs, as the LangGraph API's threads (service/threads.py)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("thread_id", sa.String(36), nullable=True))
    op.create_index("ix_jobs_thread_created", "jobs", ["thread_id", "created_at"])
    op.create_table(
        "threads",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("graph_id", sa.String(32), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("staged", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_threads_tenant_updated", "threads", ["tenant", "updated_at"])


def downgrade() -> None:
    op.drop_table("threads")
    op.drop_index("ix_jobs_thread_created", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("thread_id")
