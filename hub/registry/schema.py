"""The registry schema: SQLAlchemy 2.0 typed models, migrated with Alembic.

Modelled on MLflow's registry: registered models, their versions (unique on
model + version), files, tags, metrics and metadata of each version, aliases
(model + alias -> version) and every alias move. Times are integer
milliseconds since the epoch, JSON values are stored as text, so every
backend reads them the same way.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RegisteredModel(Base):
    """A model name; ``latest_version`` is its highest live version (None when all are deleted).

    ``latest_version`` and ``num_versions`` (live ones) are kept up to date on every
    publish and delete, so listing models reads one row a model.
    """

    __tablename__ = "registered_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(129), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    latest_version: Mapped[int | None] = mapped_column(Integer)
    num_versions: Mapped[int] = mapped_column(Integer, default=0)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class ModelVersionRow(Base):
    """One version: the index of its manifest (``manifest_digest``)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    manifest_digest: Mapped[str | None] = mapped_column(String(64), index=True)  # blob reads: who names it
    architecture: Mapped[str | None] = mapped_column(String(128))
    config_json: Mapped[str] = mapped_column(Text, default="{}")
    layout_json: Mapped[str] = mapped_column(Text, default="{}")
    dtype: Mapped[str | None] = mapped_column(String(32))
    num_parameters: Mapped[int] = mapped_column(BigInteger, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    task: Mapped[str | None] = mapped_column(String(128), index=True)
    license: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    parent: Mapped[str | None] = mapped_column(String(256), index=True)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class VersionFile(Base):
    __tablename__ = "model_version_files"
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)


class VersionTag(Base):
    __tablename__ = "model_version_tags"
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class VersionMetric(Base):
    __tablename__ = "model_version_metrics"
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class VersionMetadata(Base):
    __tablename__ = "model_version_metadata"
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    value_json: Mapped[str] = mapped_column(Text)


class ModelAlias(Base):
    __tablename__ = "model_aliases"
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class AliasHistory(Base):
    __tablename__ = "model_alias_history"
    __table_args__ = (Index("ix_model_alias_history_model_alias", "model_id", "alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    changed_by: Mapped[str] = mapped_column(String(128))
    changed_at_ms: Mapped[int] = mapped_column(BigInteger)


class FinetuneJob(Base):
    """A fine-tuning job: ``queued -> running -> succeeded | failed | cancelled``.

    ``heartbeat_at_ms`` is refreshed by the worker running it; a running job whose
    heartbeat is stale is claimed again and resumes from ``checkpoint_json``.
    """

    __tablename__ = "finetune_jobs"
    __table_args__ = (Index("ix_finetune_jobs_status_created_at_ms", "status", "created_at_ms"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    base_ref: Mapped[str] = mapped_column(String(256))
    output: Mapped[str] = mapped_column(String(129))
    task: Mapped[str] = mapped_column(String(32))
    data_json: Mapped[str] = mapped_column(Text)
    config_json: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    started_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    finished_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    heartbeat_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    worker: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    checkpoint_json: Mapped[str | None] = mapped_column(Text)
    result_ref: Mapped[str | None] = mapped_column(String(256))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)


class FinetuneJobEvent(Base):
    """A log line of a job, with its level (``info``, ``warning``, ``error``)."""

    __tablename__ = "finetune_job_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("finetune_jobs.id", ondelete="CASCADE"), index=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class FinetuneJobMetric(Base):
    """Metrics of a job at one step: ``split`` is ``train`` (loss, learning rate, samples/s) or ``eval``."""

    __tablename__ = "finetune_job_metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("finetune_jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float)
    split: Mapped[str] = mapped_column(String(8))
    values_json: Mapped[str] = mapped_column(Text)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    """A user of a hub server: tokens belong to one, namespaces name them as members.

    ``password_hash`` (``scrypt$n$r$p$salt$hash``, base64 parts) signs in to the web UI; None: tokens only.
    ``is_admin``: what a password sign-in may do (tokens carry their own scope).
    """

    __tablename__ = "hub_users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str | None] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class ApiToken(Base):
    """An API token ``mh_<id>_<secret>``: only the sha256 of the secret is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("hub_users.name", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(8))
    namespace: Mapped[str | None] = mapped_column(String(64))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_used_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class Namespace(Base):
    """A namespace's record: its visibility (``public`` or ``private``); its members are in :class:`NamespaceMember`."""

    __tablename__ = "namespaces"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    visibility: Mapped[str] = mapped_column(String(8))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class NamespaceMember(Base):
    """A user's role in a namespace: ``owner`` (writes, manages), ``writer`` (writes) or ``reader`` (reads private models)."""

    __tablename__ = "namespace_members"
    namespace: Mapped[str] = mapped_column(ForeignKey("namespaces.name", ondelete="CASCADE"), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("hub_users.name", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(8))


class ModelVisibility(Base):
    """A model's own visibility, where it overrides its namespace's (by name: it outlives a deleted model)."""

    __tablename__ = "model_visibility"
    name: Mapped[str] = mapped_column(String(129), primary_key=True)
    visibility: Mapped[str] = mapped_column(String(8))
