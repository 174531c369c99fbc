"""Fine-tuning jobs on a hub server (``HUB_ENDPOINT``, as ``HUB_TOKEN``'s user): what
:mod:`finetune.api` calls when the endpoint is set and no local hub is given.

The routes are :mod:`finetune.server`'s. Errors come back as the :mod:`hub.errors` class the
server raised (:func:`hub.remote.client.error_from`): a bad data file is the same
:class:`~hub.errors.DataError` a local submit raises, an unknown job a
:class:`~hub.errors.JobNotFoundError`. Each function takes ``client=``, a
:class:`hub.remote.client.Client` to ask instead of ``HUB_ENDPOINT``'s with ``HUB_TOKEN`` (the web
UI passes each session's, with the token its visitor signed in with).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from finetune.jobs import STATUSES, Job, JobEvent, JobMetric
from hub.errors import InvalidArgumentError, RemoteError, UnreadableDataError

__all__ = ["submit", "get_job", "list_jobs", "cancel", "job_events", "job_metrics"]

PathLike = str | os.PathLike[str]
MAX_LIST = 1000  # the most jobs the server lists at once

_clients: dict[tuple[str, str | None, bool], Any] = {}
_lock = threading.Lock()


def _client() -> Any:
    """The :class:`hub.remote.client.Client` for ``HUB_ENDPOINT`` and ``HUB_TOKEN`` as they are now."""
    from hub import settings
    from hub.remote.client import Client

    key = (settings.endpoint(), settings.token(), settings.offline())
    if key[0] is None:
        raise InvalidArgumentError("HUB_ENDPOINT is not set; set it to the hub server's URL, e.g. HUB_ENDPOINT=http://hub.example:8000")
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = Client(key[0], key[1], offline=key[2])
        return client


def _path(job_id: str) -> str:
    from urllib.parse import quote

    from hub.remote.client import API

    if not isinstance(job_id, str) or not job_id or "/" in job_id:
        raise InvalidArgumentError(f"{job_id!r} is not a job id (such as ftjob-20261201-0a1b2c3d); `finetune list` shows them")
    return f"{API}/jobs/{quote(job_id, safe='')}"


def _record(kind: type, record: Any, what: str) -> Any:
    try:
        return kind.from_dict(record)
    except ValueError as exc:
        raise RemoteError(f"{what}: the server's answer is not a {kind.__name__} ({exc}); check HUB_ENDPOINT") from None


def _records(kind: type, records: Any, what: str) -> list[Any]:
    if not isinstance(records, list):
        raise RemoteError(f"{what}: the server's answer is not a list; check HUB_ENDPOINT")
    return [_record(kind, record, what) for record in records]


def _data_file(path: PathLike) -> Path:
    file = Path(path)
    if file.is_dir():
        raise InvalidArgumentError(f"{file}: a folder can't be sent to a hub server with a job; send one file "
                                   "(CSV, JSONL, Parquet, .npz or .safetensors)")
    if not file.is_file():
        raise UnreadableDataError("does not exist; check the path", file=os.fspath(path))
    return file


def submit(base: str, data: PathLike, *, output: str, task: str = "classification", config: dict[str, Any] | None = None,
           validation_data: PathLike | None = None, client: Any = None) -> Job:
    """Queue a job on the server, sending its data file(s) (streamed); see :func:`finetune.submit`.

    Returns:
        The queued job, as the server records it (``created_by`` is the token's user).

    Raises:
        What the server's checks raise (DataError, ConfigError, ModelNotFoundError, ...);
        AuthenticationError: no token or a bad one. PermissionDeniedError: the token may not write
        ``output``. InvalidArgumentError: a file over the server's limit, or a folder.
        RemoteError: the server could not be reached.
    """
    from hub.remote.client import API

    sent = {"data": _data_file(data), **({"validation": _data_file(validation_data)} if validation_data is not None else {})}
    request = json.dumps({"base": base, "output": output, "task": task, "config": config})
    client = client or _client()
    what = f"submitting {sent['data'].name}"
    with contextlib.ExitStack() as stack:  # the files are read as they are sent, never whole in memory
        files = [(field, (path.name, stack.enter_context(open(path, "rb")), "application/octet-stream")) for field, path in sent.items()]
        record = client.json("POST", f"{API}/jobs", what=what, expect=(201,), data={"request": request}, files=files)
    return _record(Job, record, what)


def get_job(job_id: str, *, client: Any = None) -> Job:
    """The job ``job_id`` (see :func:`finetune.get_job`).

    Raises:
        JobNotFoundError: no such job, or one the token's user may not see.
    """
    what = f"reading job {job_id}"
    return _record(Job, (client or _client()).json("GET", _path(job_id), what=what), what)


def list_jobs(status: str | None = None, *, limit: int | None = None, client: Any = None) -> list[Job]:
    """The jobs the token's user may see, newest first (at most 1000; default 50).

    Raises:
        InvalidArgumentError: ``status`` is not a job state, or ``limit`` is not 1 to 1000.
    """
    from hub.remote.client import API

    if status is not None and status not in STATUSES:
        raise InvalidArgumentError(f"status {status!r} is not a job state; use one of {', '.join(STATUSES)}")
    limit = 50 if limit is None else limit
    if not 1 <= limit <= MAX_LIST:
        raise InvalidArgumentError(f"limit {limit} is out of range: a hub server lists 1 to {MAX_LIST} jobs at once")
    params: dict[str, Any] = {"limit": limit, **({"state": status} if status else {})}
    return _records(Job, (client or _client()).json("GET", f"{API}/jobs", params=params, what="listing jobs"), "listing jobs")


def cancel(job_id: str, *, client: Any = None) -> Job:
    """Cancel a job (see :func:`finetune.cancel`).

    Raises:
        JobNotFoundError, JobStateError (it has finished), PermissionDeniedError.
    """
    what = f"cancelling job {job_id}"
    return _record(Job, (client or _client()).json("POST", f"{_path(job_id)}/cancel", what=what), what)


def job_events(job_id: str, *, after_id: int = 0, client: Any = None) -> list[JobEvent]:
    """The job's log lines after event ``after_id`` (see :func:`finetune.job_events`)."""
    what = f"reading the events of job {job_id}"
    return _records(JobEvent, (client or _client()).json("GET", f"{_path(job_id)}/events", params={"after": int(after_id)}, what=what), what)


def job_metrics(job_id: str, *, split: str | None = None, client: Any = None) -> list[JobMetric]:
    """The job's metrics by step (see :func:`finetune.job_metrics`)."""
    params, what = ({"split": split} if split else {}), f"reading the metrics of job {job_id}"
    return _records(JobMetric, (client or _client()).json("GET", f"{_path(job_id)}/metrics", params=params, what=what), what)
