"""Identity and permissions for the hub server: users, API tokens, namespaces and their members,
per-model visibility; an index on model_versions.manifest_digest (which live version names a blob).

Revision ID: 0003_access
Revises: 0002_finetune_jobs
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_access"
down_revision = "0002_finetune_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_model_versions_manifest_digest", "model_versions", ["manifest_digest"])
    op.create_table(
        "hub_users",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_hub_users"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("namespace", sa.String(64), nullable=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_used_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_name"], ["hub_users.name"], name="fk_api_tokens_user_name_hub_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
    )
    op.create_index("ix_api_tokens_user_name", "api_tokens", ["user_name"])
    op.create_table(
        "namespaces",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("visibility", sa.String(8), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_namespaces"),
    )
    op.create_table(
        "namespace_members",
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.ForeignKeyConstraint(["namespace"], ["namespaces.name"], name="fk_namespace_members_namespace_namespaces", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_name"], ["hub_users.name"], name="fk_namespace_members_user_name_hub_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("namespace", "user_name", name="pk_namespace_members"),
    )
    op.create_index("ix_namespace_members_user_name", "namespace_members", ["user_name"])
    op.create_table(
        "model_visibility",
        sa.Column("name", sa.String(129), nullable=False),
        sa.Column("visibility", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_model_visibility"),
    )


def downgrade() -> None:
    for table in ["model_visibility", "namespace_members", "namespaces", "api_tokens", "hub_users"]:
        op.drop_table(table)
    op.drop_index("ix_model_versions_manifest_digest", table_name="model_versions")
