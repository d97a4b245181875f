"""API keys, job and artifact owners (tenants), the artifacts each job refers to, idempotent responses

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LOCAL = "local"
"""The tenant of every job made before accounts existed, and of the CLI's own."""


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("rate", sa.String(32), nullable=True),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("tenant", sa.String(64), nullable=False, server_default=LOCAL))
        batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant", "created_at"])
    op.create_index("ix_jobs_key_status", "jobs", ["key_id", "status"])
    op.create_table(
        "artifact_owners",
        sa.Column("artifact_id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_artifact_owners_tenant", "artifact_owners", ["tenant"])
    op.create_table(
        "job_artifacts",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("artifact_id", sa.String(64), primary_key=True),
    )
    op.create_index("ix_job_artifacts_artifact_id", "job_artifacts", ["artifact_id"])
    op.create_table(
        "idempotent_responses",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("route", sa.String(64), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotent_responses")
    op.drop_table("job_artifacts")
    op.drop_table("artifact_owners")
    op.drop_index("ix_jobs_key_status", "jobs")
    op.drop_index("ix_jobs_tenant_created", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("key_id")
        batch.drop_column("tenant")
    op.drop_table("api_keys")
