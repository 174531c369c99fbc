"""Fine-tuning jobs: the job queue, each job's events (log lines) and metrics.

Revision ID: 0002_finetune_jobs
Revises: 0001_initial
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_finetune_jobs"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "finetune_jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("base_ref", sa.String(256), nullable=False),
        sa.Column("output", sa.String(129), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("data_json", sa.Text(), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("finished_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("heartbeat_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=True),
        sa.Column("checkpoint_json", sa.Text(), nullable=True),
        sa.Column("result_ref", sa.String(256), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_finetune_jobs"),
    )
    op.create_index("ix_finetune_jobs_status_created_at_ms", "finetune_jobs", ["status", "created_at_ms"])
    op.create_table(
        "finetune_job_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["finetune_jobs.id"], name="fk_finetune_job_events_job_id_finetune_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_finetune_job_events"),
    )
    op.create_index("ix_finetune_job_events_job_id", "finetune_job_events", ["job_id"])
    op.create_table(
        "finetune_job_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Float(), nullable=False),
        sa.Column("split", sa.String(8), nullable=False),
        sa.Column("values_json", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["finetune_jobs.id"], name="fk_finetune_job_metrics_job_id_finetune_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_finetune_job_metrics"),
    )
    op.create_index("ix_finetune_job_metrics_job_id", "finetune_job_metrics", ["job_id"])


def downgrade() -> None:
    for table in ["finetune_job_metrics", "finetune_job_events", "finetune_jobs"]:
        op.drop_table(table)
