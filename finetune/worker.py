"""A worker: claims queued jobs (or ones whose worker died) and runs them, one at a time.

A worker that finds it lost a job's claim (it was paused longer than
``FINETUNE_STALE_SECONDS`` and another worker took the job over) logs why,
abandons the job without writing anything more for it, and goes on with the next.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from finetune.api import _hub, jobs_of
from finetune.jobs import ClaimLostError, Job, timing
from finetune.runner import run_job, worker_name

__all__ = ["work"]

log = logging.getLogger(__name__)


def work(*, once: bool = False, max_jobs: int | None = None, poll_seconds: float = 2.0, hub: Any = None,
         stop: threading.Event | None = None, on_job: Callable[[Job], Any] | None = None, name: str | None = None) -> int:
    """Run jobs until told to stop.

    Args:
        once: run at most one job, and return at once when none is waiting.
        max_jobs: return after this many jobs.
        poll_seconds: how long to wait before looking again when the queue is empty.
        hub: the hub whose registry holds the queue (default: ``hub.default_hub()``).
        stop: an event that ends the loop (the web UI's background worker).
        on_job: called with each job as it is claimed (the CLI prints it).
        name: the worker's name in the job records (default ``host:pid``).

    Returns:
        The number of jobs run (an abandoned one counts).

    Raises:
        ConfigError: a bad ``FINETUNE_STALE_SECONDS`` or ``FINETUNE_HEARTBEAT_SECONDS``, before any job is claimed.
    """
    timing()
    hub = _hub(hub)
    jobs = jobs_of(hub)
    worker = name or worker_name()
    limit = 1 if once else max_jobs
    done = 0
    stop = stop or threading.Event()
    while not stop.is_set() and (limit is None or done < limit):
        job = jobs.claim(worker)
        if job is None:
            if once:
                break
            stop.wait(poll_seconds)
            continue
        if on_job is not None:
            on_job(job)
        try:
            run_job(hub, jobs, job, worker)
        except ClaimLostError as exc:
            log.warning("%s; abandoning", exc)
        done += 1
    return done
