"""The job queue: fine-tuning jobs, their events and metrics, in the registry database.

A job moves ``queued -> running -> succeeded | failed | cancelled``. Workers
claim jobs atomically: on PostgreSQL with ``SELECT ... FOR UPDATE SKIP LOCKED``,
on SQLite inside a ``BEGIN IMMEDIATE`` transaction (one writer at a time), so two
workers never run one job. A running job's worker refreshes its heartbeat; a
job whose heartbeat is older than the stale limit (its worker died) is claimed
again and resumes from its last checkpoint.

Every claim counts an attempt, and ``(job, worker, attempt)`` is the claim's token:
each write a worker makes for its job (heartbeat, events, metrics, checkpoint, the
final state, and the publish through :meth:`JobStore.fence`) first checks, in its
own transaction and under a lock on the job's row, that the job is still running
under that token, and raises :class:`ClaimLostError` otherwise. A worker that was
paused past the stale limit and taken over therefore writes nothing more for the
job, and one job publishes at most one version.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from finetune.settings import Timing, stale_after_ms, timing
from hub.entities import from_millis
from hub.errors import InvalidArgumentError, JobNotFoundError, JobStateError
from hub.registry.database import Database
from hub.registry.store import now_ms

__all__ = ["ClaimLostError", "Job", "JobEvent", "JobMetric", "JobStore", "STATUSES", "FINISHED", "Timing", "data_path",
           "job_not_found", "stale_after_ms", "timing"]

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
LEVELS = ("debug", "info", "warning", "error")
_JOB_COLUMNS = (
    "id, status, base_ref, output, task, data_json, config_json, created_by, created_at_ms, started_at_ms, "
    "finished_at_ms, heartbeat_at_ms, worker, attempts, cancel_requested, step, total_steps, checkpoint_json, "
    "result_ref, error_code, error_message"
)


def data_path(home: str | os.PathLike[str], recorded: str | None) -> Path | None:
    """The file a job's data record names: a relative path is inside the hub's ``home``."""
    return None if recorded is None else Path(home) / recorded


def job_not_found(job_id: str) -> JobNotFoundError:
    """The error for a job id that names no job (a server says the same of one its caller may not see)."""
    return JobNotFoundError(f"no fine-tuning job {job_id!r}; `finetune list` shows the jobs there are")


class ClaimLostError(JobStateError):
    """A worker's claim on a job no longer holds: another worker took the job over (this one
    was silent longer than ``FINETUNE_STALE_SECONDS``), or the job ended. Nothing of the write
    that raised it was kept; the worker must abandon the job."""

    def __init__(self, job_id: str, worker: str, attempt: int, now: tuple | None) -> None:
        where = "the job is gone" if now is None else f"the job is now {now[0]} under {now[1]}, attempt {now[2]}"
        super().__init__(f"job {job_id}: claim lost to another worker (attempt {attempt} by {worker}; {where})")
        self.job_id, self.worker, self.attempt = job_id, worker, attempt


@dataclass(frozen=True)
class Job:
    """A fine-tuning job as the registry holds it.

    ``data`` holds the training and validation paths and their sha256; ``config`` the
    :class:`~finetune.config.FinetuneConfig` as a dict; ``checkpoint`` the last saved
    checkpoint (``{"digest", "step"}``); ``error`` is ``{"code", "message"}`` on failure.
    """

    id: str
    status: str
    base: str
    output: str
    task: str
    data: dict[str, Any]
    config: dict[str, Any]
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    attempts: int
    cancel_requested: bool
    step: int
    total_steps: int | None
    checkpoint: dict[str, Any] | None
    result: str | None
    error: dict[str, str] | None

    @property
    def progress(self) -> float:
        """Share of steps done, 0 to 1."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else (1.0 if self.status == "succeeded" else 0.0)

    @property
    def finished(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled)."""
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON values (times as ISO 8601), with its ``progress``."""
        record = asdict(self)
        for key in ("created_at", "started_at", "finished_at", "heartbeat_at"):
            record[key] = record[key].isoformat() if record[key] else None
        record["progress"] = self.progress
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Job:
        """The job that :meth:`to_dict` wrote (what a hub server answers); keys it does not know
        (``progress``, a newer server's) are left out.

        Raises:
            ValueError: not a job record.
        """
        return _from_record(cls, record)


@dataclass(frozen=True)
class JobEvent:
    """One log line of a job."""

    id: int
    job_id: str
    created_at: datetime
    level: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON values (its time as ISO 8601)."""
        return {**asdict(self), "created_at": self.created_at.isoformat()}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> JobEvent:
        """The event that :meth:`to_dict` wrote.

        Raises:
            ValueError: not an event record.
        """
        return _from_record(cls, record)


@dataclass(frozen=True)
class JobMetric:
    """Metrics at one step: ``split`` ``train`` (loss, lr, samples_per_s) or ``eval`` (loss, accuracy, ...)."""

    step: int
    epoch: float
    split: str
    values: dict[str, float]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The metrics as JSON values (their time as ISO 8601)."""
        return {**asdict(self), "created_at": self.created_at.isoformat()}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> JobMetric:
        """The metrics that :meth:`to_dict` wrote.

        Raises:
            ValueError: not a metrics record.
        """
        return _from_record(cls, record)


_TIMES = ("created_at", "started_at", "finished_at", "heartbeat_at")


def _from_record(cls: type, record: Any) -> Any:
    """``cls`` from a JSON record: ISO 8601 times back to datetimes, unknown keys left out."""
    if not isinstance(record, dict):
        raise ValueError(f"a {cls.__name__} record must be an object, not {type(record).__name__}")
    names = {spec.name for spec in fields(cls)}
    values = {key: value for key, value in record.items() if key in names}
    try:
        for key in _TIMES:
            if isinstance(values.get(key), str):
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a {cls.__name__} record: {exc}") from None


def _job(row: tuple) -> Job:
    (id_, status, base, output, task, data, config, created_by, created, started, finished, heartbeat, worker,
     attempts, cancel, step, total, checkpoint, result, code, message) = row
    return Job(
        id=id_, status=status, base=base, output=output, task=task, data=json.loads(data), config=json.loads(config),
        created_by=created_by, created_at=from_millis(created), started_at=from_millis(started) if started else None,
        finished_at=from_millis(finished) if finished else None, heartbeat_at=from_millis(heartbeat) if heartbeat else None,
        worker=worker, attempts=attempts, cancel_requested=bool(cancel), step=step, total_steps=total,
        checkpoint=json.loads(checkpoint) if checkpoint else None, result=result,
        error={"code": code, "message": message or ""} if code else None,
    )


class JobStore:
    """Every read and write of fine-tuning jobs, on one registry database."""

    def __init__(self, database: Database) -> None:
        self.db = database

    # --- reads -----------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job ``job_id``.

        Raises:
            JobNotFoundError: no such job.
        """
        self.db.ensure_schema()
        rows = self.db.query(f"SELECT {_JOB_COLUMNS} FROM finetune_jobs WHERE id = :id", {"id": str(job_id)})
        if not rows:
            raise job_not_found(job_id)
        return _job(rows[0])

    def list(self, status: str | None = None, *, limit: int | None = None, offset: int = 0) -> list[Job]:
        """Jobs, newest first, optionally only those in ``status``; ``limit`` of them after the first ``offset``.

        Raises:
            InvalidArgumentError: ``status`` is not a job state.
        """
        if status is not None and status not in STATUSES:
            raise InvalidArgumentError(f"status {status!r} is not a job state; use one of {', '.join(STATUSES)}")
        self.db.ensure_schema()
        sql = f"SELECT {_JOB_COLUMNS} FROM finetune_jobs" + (" WHERE status = :status" if status else "")
        sql += " ORDER BY created_at_ms DESC, id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        if offset:
            sql += ("" if limit else f" LIMIT {2**62}") + f" OFFSET {int(offset)}"
        return [_job(row) for row in self.db.query(sql, {"status": status})]

    def unfinished(self) -> list[Job]:
        """The queued and running jobs, oldest first: those that may still read their data files
        and resume from their checkpoints."""
        self.db.ensure_schema()
        return [_job(row) for row in self.db.query(
            f"SELECT {_JOB_COLUMNS} FROM finetune_jobs WHERE status IN ('queued', 'running') ORDER BY created_at_ms, id")]

    def events(self, job_id: str, *, after_id: int = 0) -> list[JobEvent]:
        """The job's log lines in order (only those after ``after_id``, to follow a log)."""
        self.get(job_id)
        rows = self.db.query(
            "SELECT id, job_id, created_at_ms, level, message FROM finetune_job_events "
            "WHERE job_id = :id AND id > :after ORDER BY id", {"id": job_id, "after": int(after_id)},
        )
        return [JobEvent(i, j, from_millis(t), level, message) for i, j, t, level, message in rows]

    def metrics(self, job_id: str, split: str | None = None) -> list[JobMetric]:
        """The job's metrics by step (``split`` ``train`` or ``eval`` for only those)."""
        self.get(job_id)
        sql = "SELECT step, epoch, split, values_json, created_at_ms FROM finetune_job_metrics WHERE job_id = :id"
        sql += (" AND split = :split" if split else "") + " ORDER BY step, id"
        rows = self.db.query(sql, {"id": job_id, "split": split})
        return [JobMetric(step, epoch, s, json.loads(values), from_millis(t)) for step, epoch, s, values, t in rows]

    # --- writes ----------------------------------------------------------------

    def _update(self, connection: Any, job_id: str, **values: Any) -> int:
        from sqlalchemy import update

        from hub.registry.schema import FinetuneJob

        return connection.execute(update(FinetuneJob).where(FinetuneJob.id == job_id).values(**values)).rowcount

    def create(self, *, base: str, output: str, task: str, data: dict[str, Any], config: dict[str, Any],
               created_by: str | None, message: str) -> Job:
        """Queue a new job (and its first event); return it."""
        from sqlalchemy import insert

        from hub.registry.schema import FinetuneJob, FinetuneJobEvent

        job_id = f"ftjob-{datetime.now():%Y%m%d}-{secrets.token_hex(4)}"
        stamp = now_ms()
        with self.db.writing() as connection:
            connection.execute(insert(FinetuneJob).values(
                id=job_id, status="queued", base_ref=base, output=output, task=task, data_json=json.dumps(data),
                config_json=json.dumps(config), created_by=created_by, created_at_ms=stamp, attempts=0,
                cancel_requested=False, step=0,
            ))
            connection.execute(insert(FinetuneJobEvent).values(job_id=job_id, created_at_ms=stamp, level="info", message=message))
        return self.get(job_id)

    def claim(self, worker: str, job_id: str | None = None) -> Job | None:
        """Atomically take the oldest queued job, or a running one whose worker stopped beating.

        Args:
            worker: who takes it.
            job_id: take only this job (``finetune run`` runs the job it just queued).

        Returns:
            The job, now ``running`` under ``worker`` with ``attempts`` counted, or None. Its
            ``(id, worker, attempts)`` is the claim every later write of the worker names.

        Raises:
            ConfigError: a bad ``FINETUNE_STALE_SECONDS`` (see :func:`timing`).
        """
        stamp = now_ms()
        stale = max(0, stamp - stale_after_ms())
        sql = (
            "SELECT id, status FROM finetune_jobs WHERE status = 'queued' "
            "OR (status = 'running' AND (heartbeat_at_ms IS NULL OR heartbeat_at_ms < :stale)) "
            "ORDER BY created_at_ms, id LIMIT 1"
        )
        if job_id is not None:
            sql = sql.replace("WHERE status", "WHERE id = :job AND (status", 1).replace(" ORDER BY", ") ORDER BY", 1)
        if self.db.dialect == "postgresql":
            sql += " FOR UPDATE SKIP LOCKED"
        from sqlalchemy import text

        with self.db.writing() as connection:
            row = connection.execute(text(sql), {"stale": stale, "job": job_id}).first()
            if row is None:
                return None
            job_id, status = row
            connection.execute(text(
                "UPDATE finetune_jobs SET status = 'running', worker = :worker, heartbeat_at_ms = :now, "
                "attempts = attempts + 1, started_at_ms = COALESCE(started_at_ms, :now) WHERE id = :id"
            ), {"worker": worker, "now": stamp, "id": job_id})
            message = f"claimed by worker {worker}" if status == "queued" else f"worker {worker} took over: the previous worker stopped sending heartbeats"
            self._event(connection, job_id, "info" if status == "queued" else "warning", message, stamp)
        return self.get(job_id)

    def _hold(self, connection: Any, job_id: str, worker: str, attempt: int) -> bool:
        """Lock the job's row (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds
        the database) and check that ``worker`` still holds attempt ``attempt`` of the running job.

        Returns:
            Whether cancellation was asked for.

        Raises:
            ClaimLostError: it does not.
        """
        from sqlalchemy import text

        sql = "SELECT status, worker, attempts, cancel_requested FROM finetune_jobs WHERE id = :id"
        if self.db.dialect == "postgresql":
            sql += " FOR UPDATE"
        row = connection.execute(text(sql), {"id": job_id}).first()
        if row is None or tuple(row[:3]) != ("running", worker, attempt):
            raise ClaimLostError(job_id, worker, attempt, None if row is None else tuple(row[:3]))
        return bool(row[3])

    def heartbeat(self, job_id: str, worker: str, *, attempt: int, step: int | None = None, total_steps: int | None = None) -> bool:
        """Refresh the job's heartbeat (and progress).

        Args:
            job_id, worker, attempt: the claim (:meth:`claim`'s job's ``id``, ``worker`` and ``attempts``).

        Returns:
            Whether cancellation was asked for.

        Raises:
            ClaimLostError: the claim no longer holds (another worker took the job over).
        """
        values: dict[str, Any] = {"heartbeat_at_ms": now_ms()}
        if step is not None:
            values["step"] = step
        if total_steps is not None:
            values["total_steps"] = total_steps
        with self.db.writing() as connection:
            cancel = self._hold(connection, job_id, worker, attempt)
            self._update(connection, job_id, **values)
        return cancel

    def record(self, job_id: str, worker: str, *, attempt: int, events: list[tuple[str, str]] = (),
               metrics: list[tuple[int, float, str, dict]] = (), step: int | None = None) -> None:
        """Append log lines ``(level, message)`` and metrics ``(step, epoch, split, values)``, and set the
        job's step, in one transaction.

        Args:
            job_id, worker, attempt: the claim (see :meth:`heartbeat`).

        Raises:
            ClaimLostError: the claim no longer holds; nothing was written.
        """
        from sqlalchemy import insert

        from hub.registry.schema import FinetuneJobMetric

        if not events and not metrics:
            return
        stamp = now_ms()
        with self.db.writing() as connection:
            self._hold(connection, job_id, worker, attempt)
            if step is not None:
                self._update(connection, job_id, step=step)
            for level, message in events:
                self._event(connection, job_id, level, message, stamp)
            if metrics:
                connection.execute(insert(FinetuneJobMetric), [
                    {"job_id": job_id, "step": step, "epoch": epoch, "split": split, "values_json": json.dumps(values), "created_at_ms": stamp}
                    for step, epoch, split, values in metrics
                ])

    def _event(self, connection: Any, job_id: str, level: str, message: str, stamp: int) -> None:
        from sqlalchemy import insert

        from hub.registry.schema import FinetuneJobEvent

        if level not in LEVELS:
            raise InvalidArgumentError(f"event level {level!r} is not one of {', '.join(LEVELS)}")
        connection.execute(insert(FinetuneJobEvent).values(job_id=job_id, created_at_ms=stamp, level=level, message=message))

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel the job (one indexed read)."""
        rows = self.db.query("SELECT cancel_requested FROM finetune_jobs WHERE id = :id", {"id": job_id})
        return bool(rows and rows[0][0])

    def save_checkpoint(self, job_id: str, worker: str, checkpoint: dict[str, Any], *, attempt: int) -> None:
        """Record the job's newest checkpoint (``{"digest", "step", ...}``).

        Args:
            job_id, worker, attempt: the claim (see :meth:`heartbeat`).

        Raises:
            ClaimLostError: the claim no longer holds; the job keeps the checkpoint it had.
        """
        with self.db.writing() as connection:
            self._hold(connection, job_id, worker, attempt)
            self._update(connection, job_id, checkpoint_json=json.dumps(checkpoint), step=checkpoint["step"])

    def fence(self, job_id: str, worker: str, *, attempt: int, output: str) -> Callable[[Any], None]:
        """The check a job's publish runs inside the transaction that reserves its version
        (``Hub.publish(..., _fence=...)``): the claim holds, and no other version of ``output``
        carries ``metadata["finetune_job"] == job_id``, so one job gives at most one version.

        Args:
            job_id, worker, attempt: the claim (see :meth:`heartbeat`).
            output: the job's output model.

        Returns:
            ``check(session)``, raising :class:`ClaimLostError` when the claim no longer holds and
            :class:`JobStateError` when the job already has a version; either rolls the version back.
        """
        from sqlalchemy import text

        def check(session: Any) -> None:
            self._hold(session, job_id, worker, attempt)
            refs = session.execute(text(
                "SELECT m.name, v.version FROM model_version_metadata d JOIN model_versions v ON v.id = d.version_id "
                "JOIN registered_models m ON m.id = v.model_id WHERE m.name = :name AND d.key = 'finetune_job' AND d.value_json = :job "
                "ORDER BY v.id"
            ), {"name": output, "job": json.dumps(job_id)}).all()
            if len(refs) > 1:
                raise JobStateError(f"job {job_id} already published {refs[0][0]}:{refs[0][1]}; a job publishes one version")

        return check

    def request_cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once, a running one at its worker's next step.

        Raises:
            JobNotFoundError: no such job.
            JobStateError: it has already finished.
        """
        from sqlalchemy import text

        stamp = now_ms()
        with self.db.writing() as connection:
            row = connection.execute(text("SELECT status FROM finetune_jobs WHERE id = :id"), {"id": job_id}).first()
            if row is None:
                raise job_not_found(job_id)
            if row[0] in FINISHED:
                raise JobStateError(f"job {job_id} has already {row[0]}; only queued or running jobs can be cancelled")
            if row[0] == "queued":
                self._update(connection, job_id, status="cancelled", cancel_requested=True, finished_at_ms=stamp)
                self._event(connection, job_id, "info", "cancelled before it started", stamp)
            else:
                self._update(connection, job_id, cancel_requested=True)
                self._event(connection, job_id, "info", "cancellation requested; the worker stops at its next step", stamp)
        return self.get(job_id)

    def finish(self, job_id: str, worker: str, status: str, *, attempt: int, result: str | None = None,
               error: tuple[str, str] | None = None, message: str | None = None) -> Job:
        """Move a running job to ``succeeded``, ``failed`` or ``cancelled``.

        Args:
            job_id, worker, attempt: the claim (see :meth:`heartbeat`).

        Raises:
            ClaimLostError: the claim no longer holds (the job is not running under this
                worker's attempt); nothing was written.
        """
        if status not in FINISHED:
            raise InvalidArgumentError(f"a job finishes as one of {', '.join(FINISHED)}, not {status!r}")
        stamp = now_ms()
        values: dict[str, Any] = {"status": status, "finished_at_ms": stamp, "result_ref": result}
        if error is not None:
            values["error_code"], values["error_message"] = error
        with self.db.writing() as connection:
            self._hold(connection, job_id, worker, attempt)
            self._update(connection, job_id, **values)
            level = "error" if status == "failed" else "info"
            self._event(connection, job_id, level, message or status, stamp)
        return self.get(job_id)
