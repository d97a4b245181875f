"""variants: a job's copies x sizes, each a branch of the job (variant_of, variant), made as their sources
finish (spawn_pending)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("variant_of", sa.String(36), nullable=True))
        batch.add_column(sa.Column("variant", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("spawn_pending", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_jobs_variant", "jobs", ["variant_of", "variant"], unique=True)
    op.create_index("ix_jobs_spawn_pending", "jobs", ["spawn_pending", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_spawn_pending", "jobs")
    op.drop_index("ix_jobs_variant", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("spawn_pending")
        batch.drop_column("variant")
        batch.drop_column("variant_of")
