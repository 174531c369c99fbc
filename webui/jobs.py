"""Fine-tuning jobs as a page's visitor may see and change them: :mod:`finetune`'s API on the local
hub, with the visitor's rules (:class:`webui.auth.Visitor`); against a hub server, its job routes
(:mod:`finetune.remote`) with the session's own client and token (never ``HUB_TOKEN``'s, which a UI
shared by several people must not send), where the server applies the rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import finetune
from finetune import Job, JobEvent, JobMetric
from finetune import remote
from webui.auth import REMOTE, SIGN_IN, Visitor

__all__ = ["submit", "validate", "list_jobs", "get_job", "cancel", "job_events", "job_metrics"]


def submit(visitor: Visitor, base: str, data: Path, *, output: str, task: str, config: dict[str, Any],
           validation_data: Path | None = None) -> Job:
    """Queue a job as ``visitor``: who may read ``base`` and write ``output``.

    Raises:
        AuthenticationError, PermissionDeniedError: they may not; else what :func:`finetune.submit` raises.
    """
    visitor.check_read(base)
    with visitor.writing(output, f"submitting a job into {output!r}"):
        if visitor.mode == REMOTE:
            from finetune.config import FinetuneConfig

            return remote.submit(base, data, output=output, task=task, validation_data=validation_data,
                                 config=FinetuneConfig.from_dict(dict(config)).validate().to_dict(), client=visitor.hub.client)
        return finetune.submit(base, data, output=output, task=task, config=config, validation_data=validation_data,
                               hub=visitor.hub)


def validate(visitor: Visitor, base: str, data: Path, *, task: str, config: dict[str, Any],
             validation_data: Path | None = None) -> dict[str, Any]:
    """:func:`finetune.validate` on the session's hub, of a base ``visitor`` may read."""
    visitor.check_read(base)
    return finetune.validate(base, data, task=task, config=config, validation_data=validation_data, hub=visitor.hub)


def list_jobs(visitor: Visitor, status: str | None = None, *, limit: int = 50) -> list[Job]:
    """The jobs ``visitor`` may see, newest first (at most ``limit``; a hub server lists at most 1000)."""
    if visitor.mode == REMOTE:
        if not visitor.signed_in:
            return []
        return remote.list_jobs(status, limit=min(limit, remote.MAX_LIST), client=visitor.hub.client)
    if visitor.mode != SIGN_IN:
        return finetune.list_jobs(status, limit=limit, hub=visitor.hub)
    shown: list[Job] = []
    offset, page = 0, max(limit, 100)
    while len(shown) < limit:  # the rules apply to each job: read on until the page is full
        found = finetune.list_jobs(status, limit=page + offset, hub=visitor.hub)[offset:]
        shown += visitor.visible_jobs(found)
        if len(found) < page or not visitor.signed_in:
            break
        offset += page
    return shown[:limit]


def get_job(visitor: Visitor, job_id: str) -> Job:
    """The job ``job_id``, if ``visitor`` may see it.

    Raises:
        JobNotFoundError: no such job, or one they may not see. AuthenticationError: nobody signed in.
    """
    if visitor.mode == REMOTE:
        return remote.get_job(job_id, client=visitor.hub.client)
    return visitor.check_job(finetune.get_job(job_id, hub=visitor.hub))


def cancel(visitor: Visitor, job: Job) -> Job:
    """Cancel ``job`` as ``visitor``.

    Raises:
        AuthenticationError, PermissionDeniedError: they may not. JobStateError: it has finished.
    """
    with visitor.cancelling(job):
        if visitor.mode == REMOTE:
            return remote.cancel(job.id, client=visitor.hub.client)
        return finetune.cancel(job.id, hub=visitor.hub)


def job_events(visitor: Visitor, job_id: str) -> list[JobEvent]:
    """The job's log lines, oldest first (of a job :func:`get_job` showed ``visitor``)."""
    if visitor.mode == REMOTE:
        return remote.job_events(job_id, client=visitor.hub.client)
    return finetune.job_events(job_id, hub=visitor.hub)


def job_metrics(visitor: Visitor, job_id: str, *, split: str | None = None) -> list[JobMetric]:
    """The job's metrics by step (of a job :func:`get_job` showed ``visitor``)."""
    if visitor.mode == REMOTE:
        return remote.job_metrics(job_id, split=split, client=visitor.hub.client)
    return finetune.job_metrics(job_id, split=split, hub=visitor.hub)
