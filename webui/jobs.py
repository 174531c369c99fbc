"""Fine-tuning jobs as a page's visitor may see and change them: :mod:`finetune`'s API on the local
hub, with the visitor's rules (:class:`webui.auth.Visitor`); against a hub server, its job routes
with the session's own token (``finetune.remote`` sends ``HUB_TOKEN``'s, which a UI shared by
several people must not), where the server applies the rules.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import finetune
from finetune import Job, JobEvent, JobMetric
from hub.errors import InvalidArgumentError, RemoteError
from webui.auth import REMOTE, SIGN_IN, Visitor

__all__ = ["submit", "validate", "list_jobs", "get_job", "cancel", "job_events", "job_metrics"]

API = "/api/v1"
MAX_LIST = 1000  # the most jobs a hub server lists at once


def _path(job_id: str) -> str:
    from urllib.parse import quote

    if not isinstance(job_id, str) or not job_id or "/" in job_id:
        raise InvalidArgumentError(f"{job_id!r} is not a job id (such as ftjob-20261201-0a1b2c3d)")
    return f"{API}/jobs/{quote(job_id, safe='')}"


def _records(kind: type, answer: Any, what: str) -> list[Any]:
    if not isinstance(answer, list):
        raise RemoteError(f"{what}: the server's answer is not a list; check HUB_ENDPOINT")
    return [_record(kind, item, what) for item in answer]


def _record(kind: type, answer: Any, what: str) -> Any:
    try:
        return kind.from_dict(answer)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RemoteError(f"{what}: the server's answer is not a {kind.__name__} ({exc}); check HUB_ENDPOINT") from None


def _sent(path: os.PathLike[str] | str) -> Path:
    file = Path(path)
    if file.is_dir():
        raise InvalidArgumentError(f"{file.name}: an image folder can't be sent to a hub server with a job; upload one "
                                   "table file (CSV, JSONL, Parquet)")
    return file


def submit(visitor: Visitor, base: str, data: Path, *, output: str, task: str, config: dict[str, Any],
           validation_data: Path | None = None) -> Job:
    """Queue a job as ``visitor``: who may read ``base`` and write ``output``.

    Raises:
        AuthenticationError, PermissionDeniedError: they may not; else what :func:`finetune.submit` raises.
    """
    visitor.check_read(base)
    with visitor.writing(output, f"submitting a job into {output!r}"):
        if visitor.mode != REMOTE:
            return finetune.submit(base, data, output=output, task=task, config=config, validation_data=validation_data,
                                   hub=visitor.hub)
        from finetune.config import FinetuneConfig

        sent = {"data": _sent(data), **({"validation": _sent(validation_data)} if validation_data is not None else {})}
        request = json.dumps({"base": base, "output": output, "task": task, "config": FinetuneConfig.from_dict(dict(config)).validate().to_dict()})
        what = f"submitting {sent['data'].name}"
        with contextlib.ExitStack() as stack:
            files = [(field, (path.name, stack.enter_context(open(path, "rb")), "application/octet-stream"))
                     for field, path in sent.items()]
            answer = visitor.hub.client.json("POST", f"{API}/jobs", what=what, expect=(201,), data={"request": request},
                                             files=files)
        return _record(Job, answer, what)


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
        params = {"limit": min(limit, MAX_LIST), **({"state": status} if status else {})}
        return _records(Job, visitor.hub.client.json("GET", f"{API}/jobs", params=params, what="listing jobs"), "listing jobs")
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
        what = f"reading job {job_id}"
        return _record(Job, visitor.hub.client.json("GET", _path(job_id), what=what), what)
    return visitor.check_job(finetune.get_job(job_id, hub=visitor.hub))


def cancel(visitor: Visitor, job: Job) -> Job:
    """Cancel ``job`` as ``visitor``.

    Raises:
        AuthenticationError, PermissionDeniedError: they may not. JobStateError: it has finished.
    """
    with visitor.cancelling(job):
        if visitor.mode == REMOTE:
            what = f"cancelling job {job.id}"
            return _record(Job, visitor.hub.client.json("POST", f"{_path(job.id)}/cancel", what=what), what)
        return finetune.cancel(job.id, hub=visitor.hub)


def job_events(visitor: Visitor, job_id: str) -> list[JobEvent]:
    """The job's log lines, oldest first (of a job :func:`get_job` showed ``visitor``)."""
    if visitor.mode == REMOTE:
        what = f"reading the events of job {job_id}"
        return _records(JobEvent, visitor.hub.client.json("GET", f"{_path(job_id)}/events", what=what), what)
    return finetune.job_events(job_id, hub=visitor.hub)


def job_metrics(visitor: Visitor, job_id: str, *, split: str | None = None) -> list[JobMetric]:
    """The job's metrics by step (of a job :func:`get_job` showed ``visitor``)."""
    if visitor.mode == REMOTE:
        what = f"reading the metrics of job {job_id}"
        params = {"split": split} if split else {}
        return _records(JobMetric, visitor.hub.client.json("GET", f"{_path(job_id)}/metrics", params=params, what=what), what)
    return finetune.job_metrics(job_id, split=split, hub=visitor.hub)
