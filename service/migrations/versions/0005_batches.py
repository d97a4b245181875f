"""batches: many jobs of one workflow made by one request (a catalog), and each job's batch and row

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=True),
        sa.Column("workflow", sa.String(32), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_batches_tenant_created", "batches", ["tenant", "created_at"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("batch_row", sa.Integer(), nullable=True))
    op.create_index("ix_jobs_batch_row", "jobs", ["batch_id", "batch_row"])


def downgrade() -> None:
    op.drop_index("ix_jobs_batch_row", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("batch_row")
        batch.drop_column("batch_id")
    op.drop_index("ix_batches_tenant_created", "batches")
    op.drop_table("batches")
