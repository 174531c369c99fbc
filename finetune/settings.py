"""The ``finetune`` package's settings, read from the environment in this module alone.

``FINETUNE_STALE_SECONDS``      how old a running job's heartbeat may get before another worker
                                takes the job over (default 60).
``FINETUNE_HEARTBEAT_SECONDS``  how often a working worker says it is alive (default a third of
                                the stale limit, at most 5).
``FINETUNE_JOB_REQUEST``        set by ``finetune run --nproc N`` for the processes torchrun starts:
                                the checked job request, as JSON (see :mod:`finetune.distributed`).
``LOCAL_RANK``                  set by torchrun: a process's rank on its node (default 0).
``FINETUNE_MAX_UPLOAD_MB``      the largest data file a hub server takes with a job
                                (``POST /api/v1/jobs``), in MiB (default 1024); bigger is refused (413).

A bad value is a :class:`~hub.errors.ConfigError` naming the variable, its value and what to set.
The hub's own variables (``HUB_HOME``, ``HUB_REGISTRY_URL``, ``HUB_USER``) are read by
:mod:`hub.settings`.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from hub.errors import ConfigError
from hub.settings import as_float, as_int

__all__ = ["Timing", "timing", "stale_after_ms", "DEFAULT_STALE_SECONDS", "MAX_HEARTBEAT_SECONDS",
           "JOB_REQUEST_VARIABLE", "job_request", "local_rank", "DEFAULT_MAX_UPLOAD_MB", "max_upload_bytes"]

DEFAULT_STALE_SECONDS = 60.0
MAX_HEARTBEAT_SECONDS = 5.0
JOB_REQUEST_VARIABLE = "FINETUNE_JOB_REQUEST"
DEFAULT_MAX_UPLOAD_MB = 1024


class Timing(NamedTuple):
    """How long a silent worker keeps its job, and how often a working one says it is alive."""

    stale_seconds: float
    heartbeat_seconds: float


def _seconds(variable: str, default: float) -> float:
    return as_float(variable, default, what="number of seconds", error=ConfigError)


def timing() -> Timing:
    """The workers' timing, checked: ``FINETUNE_STALE_SECONDS`` (default 60), how old a running
    job's heartbeat may get before another worker takes the job over, and
    ``FINETUNE_HEARTBEAT_SECONDS``, how often a worker beats (default a third of the stale
    limit, at most 5).

    Returns:
        ``Timing(stale_seconds, heartbeat_seconds)``.

    Raises:
        ConfigError: a value is not a positive, finite number, or the stale limit is not longer
            than the heartbeat interval (healthy workers would lose their jobs to each other).
    """
    stale = _seconds("FINETUNE_STALE_SECONDS", DEFAULT_STALE_SECONDS)
    heartbeat = _seconds("FINETUNE_HEARTBEAT_SECONDS", min(MAX_HEARTBEAT_SECONDS, stale / 3))
    if stale <= heartbeat:
        raise ConfigError(
            f"FINETUNE_STALE_SECONDS={stale:g} is not longer than the heartbeat interval (FINETUNE_HEARTBEAT_SECONDS={heartbeat:g}): "
            f"other workers would take over the jobs of healthy ones; set FINETUNE_STALE_SECONDS above {heartbeat:g} "
            f"(default {DEFAULT_STALE_SECONDS:g}) or FINETUNE_HEARTBEAT_SECONDS below {stale:g}"
        )
    return Timing(stale, heartbeat)


def stale_after_ms() -> int:
    """How old a running job's heartbeat may get before another worker takes the job over, in ms
    (``FINETUNE_STALE_SECONDS``).

    Raises:
        ConfigError: a bad setting (see :func:`timing`).
    """
    return int(timing().stale_seconds * 1000)


def job_request() -> str | None:
    """``$FINETUNE_JOB_REQUEST``: the JSON job request ``finetune run --nproc N`` hands its
    torchrun processes, or None outside them."""
    return os.environ.get(JOB_REQUEST_VARIABLE)


def local_rank() -> int:
    """This process's rank on its node, ``$LOCAL_RANK`` (set by torchrun; default 0).

    Raises:
        ConfigError: it is not a whole number, 0 or more.
    """
    return as_int("LOCAL_RANK", 0, positive=False, error=ConfigError)


def max_upload_bytes() -> int:
    """The largest data file a hub server takes with a submitted job, in bytes
    (``FINETUNE_MAX_UPLOAD_MB`` MiB, default 1024).

    Raises:
        ConfigError: it is not a positive whole number.
    """
    return as_int("FINETUNE_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB, what="whole number of MiB", error=ConfigError) * 2**20
