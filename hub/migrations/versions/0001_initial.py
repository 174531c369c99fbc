"""Initial registry schema: models, versions, files, tags, metrics, metadata, aliases, alias history.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(129), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("latest_version", sa.Integer(), nullable=True),
        sa.Column("num_versions", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.UniqueConstraint("name", name="uq_registered_models_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("manifest_digest", sa.String(64), nullable=True),
        sa.Column("architecture", sa.String(128), nullable=True),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("layout_json", sa.Text(), nullable=False),
        sa.Column("dtype", sa.String(32), nullable=True),
        sa.Column("num_parameters", sa.BigInteger(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("task", sa.String(128), nullable=True),
        sa.Column("license", sa.String(128), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("parent", sa.String(256), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"], name="fk_model_versions_model_id_registered_models", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
    )
    op.create_index("ix_model_versions_model_id", "model_versions", ["model_id"])
    op.create_index("ix_model_versions_task", "model_versions", ["task"])
    op.create_index("ix_model_versions_parent", "model_versions", ["parent"])
    for table, key, key_type, value_column, value_type in [
        ("model_version_files", "path", sa.String(512), "sha256", sa.String(64)),
        ("model_version_metrics", "key", sa.String(128), "value", sa.Float()),
        ("model_version_metadata", "key", sa.String(256), "value_json", sa.Text()),
    ]:
        columns = [
            sa.Column("version_id", sa.Integer(), nullable=False),
            sa.Column(key, key_type, nullable=False),
            sa.Column(value_column, value_type, nullable=False),
        ]
        if table == "model_version_files":
            columns.append(sa.Column("size", sa.BigInteger(), nullable=False))
        op.create_table(
            table,
            *columns,
            sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"], name=f"fk_{table}_version_id_model_versions", ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("version_id", key, name=f"pk_{table}"),
        )
    op.create_index("ix_model_version_files_sha256", "model_version_files", ["sha256"])
    op.create_table(
        "model_version_tags",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"], name="fk_model_version_tags_version_id_model_versions", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("version_id", "tag", name="pk_model_version_tags"),
    )
    op.create_index("ix_model_version_tags_tag", "model_version_tags", ["tag"])
    op.create_table(
        "model_aliases",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"], name="fk_model_aliases_model_id_registered_models", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
    )
    op.create_table(
        "model_alias_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("changed_by", sa.String(128), nullable=False),
        sa.Column("changed_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"], name="fk_model_alias_history_model_id_registered_models", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_model_alias_history"),
    )
    op.create_index("ix_model_alias_history_model_alias", "model_alias_history", ["model_id", "alias"])


def downgrade() -> None:
    for table in [
        "model_alias_history", "model_aliases", "model_version_tags", "model_version_metadata",
        "model_version_metrics", "model_version_files", "model_versions", "registered_models",
    ]:
        op.drop_table(table)
