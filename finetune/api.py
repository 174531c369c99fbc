"""The fine-tuning service's Python API: submit, run, watch and cancel jobs.

Every function works on a hub (``hub=``, default :func:`hub.default_hub`) and
its registry database, where the job queue lives beside the models. With
``HUB_ENDPOINT`` set and no ``hub=`` given, :func:`submit`, :func:`get_job`,
:func:`list_jobs`, :func:`cancel`, :func:`job_events` and :func:`job_metrics` ask
that hub server instead (:mod:`finetune.remote`), as ``HUB_TOKEN``'s user; its
workers run the jobs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.config import FinetuneConfig
from finetune.jobs import Job, JobEvent, JobMetric, JobStore
from hub.entities import ModelVersion
from hub.errors import ConfigError, FinetuneError, InvalidArgumentError, JobStateError
from hub.reference import validate_name
from hub.settings import current_user, endpoint

if TYPE_CHECKING:  # finetune.runner imports torch: reading and cancelling jobs do without it
    from finetune.runner import CheckedJob

__all__ = ["submit", "validate", "run", "get_job", "list_jobs", "cancel", "job_events", "job_metrics", "jobs_of"]

PathLike = str | os.PathLike[str]


def _remote(hub: Any) -> bool:
    """Whether a call goes to a hub server: no ``hub`` given and ``HUB_ENDPOINT`` set.

    Raises:
        InvalidArgumentError: ``HUB_ENDPOINT`` is not a URL.
    """
    return hub is None and endpoint() is not None


def _hub(hub: Any, what: str | None = None) -> Any:
    """``hub``, else the default hub; ``what`` (a job queue's user, such as a worker) refuses a hub server's.

    Raises:
        InvalidArgumentError: ``what`` is given, and ``HUB_ENDPOINT`` names a hub server.
    """
    if hub is not None:
        return hub
    if what is not None and _remote(hub):
        raise InvalidArgumentError(f"{what} needs the job queue in the hub's registry, and HUB_ENDPOINT names a hub "
                                   "server, which keeps it: submit the job there (`finetune submit`, finetune.submit) "
                                   "and its workers run it, or unset HUB_ENDPOINT to use a local hub")
    import hub as hub_package

    return hub_package.default_hub()


def jobs_of(hub: Any = None) -> JobStore:
    """The job queue in ``hub``'s registry database.

    Raises:
        InvalidArgumentError: no ``hub`` given, and ``HUB_ENDPOINT`` names a hub server (ask it instead).
    """
    return JobStore(_hub(hub, "the job queue").db)


def _config(config: FinetuneConfig | Mapping[str, Any] | PathLike | None, overrides: Mapping[str, Any] | None = None) -> FinetuneConfig:
    if config is None:
        result = FinetuneConfig()
    elif isinstance(config, FinetuneConfig):
        result = config
    elif isinstance(config, Mapping):
        result = FinetuneConfig.from_dict(dict(config))
    elif isinstance(config, str | os.PathLike):
        result = FinetuneConfig.from_file(config)
    else:
        raise ConfigError(f"config must be a FinetuneConfig, a dict or a YAML/JSON file, not {type(config).__name__}")
    return result.updated(**(overrides or {})) if overrides else result.validate()


def submit(base: str, data: PathLike, *, output: str, task: str = "classification",
           config: FinetuneConfig | Mapping[str, Any] | PathLike | None = None,
           validation_data: PathLike | None = None, hub: Any = None) -> Job:
    """Queue a fine-tuning job; a worker (``finetune worker``) runs it.

    Everything is checked first (base, task, config, every row of the data), so a
    bad submission raises and queues nothing.

    Args:
        base: the model to start from (``name``, ``name:VERSION``, ``name@ALIAS``); the job
            records the exact version.
        data: training data: CSV, JSONL, Parquet, a folder of images in class folders, or
            ``.npz``/``.safetensors`` with ``x`` and ``y``.
        output: the model name the result is published under (its next version).
        task: ``classification``, ``regression``, ``text-classification`` or ``continue``.
        config: a :class:`FinetuneConfig`, a dict of its fields, or a YAML/JSON file.
        validation_data: a validation file; without one, ``validation_fraction`` of the rows is held out.
        hub: the hub to use (default: ``hub.default_hub()``).

    Returns:
        The queued :class:`Job`.

    Raises:
        ModelNotFoundError: no such base. InvalidReferenceError: a bad output name.
        ConfigError: a bad setting or a task that does not fit the base.
        DataError: bad data (its subclasses name the file, row and column).
        AuthenticationError, PermissionDeniedError: with ``HUB_ENDPOINT``, the token may not
            read the base or write the output. RemoteError: the server could not be reached.
    """
    if _remote(hub):
        from finetune import remote

        return remote.submit(base, data, output=validate_name(output), task=task, config=_config(config).to_dict(),
                             validation_data=validation_data)
    return _queue(_hub(hub), base, data, output, task, config, validation_data)[0]


def _queue(hub: Any, base: str, data: PathLike, output: str, task: str, config: Any,
           validation_data: PathLike | None,
           place: Callable[[], tuple[PathLike, PathLike | None]] | None = None) -> tuple[Job, CheckedJob]:
    """Check everything, then queue the job; return it and its checked inputs.

    Args:
        place: for files that are checked where they arrived and then moved (a server's uploads):
            called once the checks pass, it returns the ``(data, validation_data)`` the job records.
    """
    from finetune.runner import check_job, data_record

    validate_name(output)
    settings = _config(config)
    checked = check_job(hub, base, task, data, validation_data, settings)
    if place is not None:
        data, validation_data = place()
    jobs = JobStore(hub.db)
    job = jobs.create(
        base=checked.base.ref, output=output, task=task, data=data_record(data, validation_data, checked, hub.home),
        config=settings.to_dict(), created_by=current_user(),
        message=f"queued: fine-tune {checked.base.ref} on {Path(data).name} ({task}) into {output}",
    )
    return job, checked


def validate(base: str, data: PathLike, *, task: str = "classification",
             config: FinetuneConfig | Mapping[str, Any] | PathLike | None = None,
             validation_data: PathLike | None = None, hub: Any = None) -> dict[str, Any]:
    """Check a job as :func:`submit` would, without queueing it (the web UI's "validate").

    Returns:
        ``{"base", "task", "train_rows", "validation_rows", "label_names", "data_classes",
        "base_classes", "features"}``: ``label_names`` are the fine-tuned model's classes (numbers
        as labels are class indices, so labels 5..9 make classes 0..9), ``data_classes`` those
        the rows hold, ``base_classes`` those the base predicts (None when it names none and has
        no output layer of a known size, and for regression, where the lists are empty).

    Raises:
        As :func:`submit`.
    """
    from finetune.runner import check_job
    from finetune.tasks import base_classes

    checked = check_job(_hub(hub), base, task, data, validation_data, _config(config))
    train, validation = checked.train_set, checked.validation_set
    names = list(train.label_names or [])
    present = sorted({*train.targets.tolist(), *validation.targets.tolist()}) if names else []
    predicted = base_classes(checked.base) if names else None
    return {"base": checked.base.ref, "task": checked.plan.kind, "train_rows": len(train),
            "validation_rows": len(validation), "label_names": names, "data_classes": [names[i] for i in present],
            "base_classes": list(predicted) if predicted is not None else None, "features": list(train.feature_names)}


def run(base: str, data: PathLike, *, output: str, task: str = "classification",
        config: FinetuneConfig | Mapping[str, Any] | PathLike | None = None,
        validation_data: PathLike | None = None, hub: Any = None, progress: Any = None,
        worker: str | None = None) -> ModelVersion:
    """Fine-tune in this process, as a job that is queued and run at once; see :func:`submit`.

    Args:
        progress: a ``tqdm``-like bar to update (the CLI passes one), or None.
        worker: the name the job records for who ran it (default ``host:pid``, as a worker's).

    Returns:
        The published :class:`~hub.ModelVersion`.

    Raises:
        As :func:`submit`; then whatever failed the job (it is recorded on the job too).
        ConfigError: also for a bad ``FINETUNE_STALE_SECONDS`` (nothing is queued).
        FinetuneError: the job was cancelled from elsewhere.
        ClaimLostError: a worker took the job over while this process was stopped.
    """
    from finetune.settings import timing
    from finetune.runner import run_job, worker_name

    timing()
    hub = _hub(hub, "finetune.run")
    job, checked = _queue(hub, base, data, output, task, config, validation_data)
    jobs = jobs_of(hub)
    worker = worker or worker_name()
    claimed = jobs.claim(worker, job.id)
    if claimed is None:
        raise JobStateError(f"job {job.id} was taken by a worker before this process could run it; follow it with `finetune logs {job.id}`")
    version = run_job(hub, jobs, claimed, worker, progress=progress, raise_errors=True, checked=checked)
    if version is None:
        raise FinetuneError(f"job {job.id} was cancelled; nothing was published")
    return version


def get_job(job_id: str, *, hub: Any = None) -> Job:
    """The job ``job_id``.

    Raises:
        JobNotFoundError: no such job (with ``HUB_ENDPOINT``: none the token's user may see).
    """
    if _remote(hub):
        from finetune import remote

        return remote.get_job(job_id)
    return jobs_of(hub).get(job_id)


def list_jobs(status: str | None = None, *, limit: int | None = None, hub: Any = None) -> list[Job]:
    """Jobs, newest first; ``status`` one of queued, running, succeeded, failed, cancelled.

    With ``HUB_ENDPOINT``, the jobs the token's user may see: their own, those into namespaces they
    write, and every job for an admin token (at most 1000; ``limit`` default 50).

    Raises:
        InvalidArgumentError: ``status`` is not a job state.
    """
    if _remote(hub):
        from finetune import remote

        return remote.list_jobs(status, limit=limit)
    return jobs_of(hub).list(status, limit=limit)


def cancel(job_id: str, *, hub: Any = None) -> Job:
    """Cancel a job: a queued one at once, a running one at the end of its current step
    (after a checkpoint; nothing is published).

    Raises:
        JobNotFoundError: no such job. JobStateError: it has already finished.
        PermissionDeniedError: with ``HUB_ENDPOINT``, the token's user neither submitted the job nor
            writes its output's namespace (or the token has read scope only).
    """
    if _remote(hub):
        from finetune import remote

        return remote.cancel(job_id)
    return jobs_of(hub).request_cancel(job_id)


def job_events(job_id: str, *, after_id: int = 0, hub: Any = None) -> list[JobEvent]:
    """The job's log lines, oldest first (only those after ``after_id``).

    Raises:
        JobNotFoundError: no such job.
    """
    if _remote(hub):
        from finetune import remote

        return remote.job_events(job_id, after_id=after_id)
    return jobs_of(hub).events(job_id, after_id=after_id)


def job_metrics(job_id: str, *, split: str | None = None, hub: Any = None) -> list[JobMetric]:
    """The job's metrics by step: ``train`` (loss, learning_rate, samples_per_s) and ``eval`` rows.

    Raises:
        JobNotFoundError: no such job.
    """
    if _remote(hub):
        from finetune import remote

        return remote.job_metrics(job_id, split=split)
    return jobs_of(hub).metrics(job_id, split)
