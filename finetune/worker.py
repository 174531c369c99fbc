"""A worker: claims queued jobs (or ones whose worker died) and runs them, one at a time.

It logs (``logging``, logger ``finetune.worker``; ``finetune worker`` prints it on stderr) one
line when it starts (its name, the registry, how often it polls), when it claims a job (id,
base, output, attempt), when the job ends (succeeded: the published version and how long
it took; failed: the error's code and message; cancelled) and when it stops.

A worker that finds it lost a job's claim (it was paused longer than
``FINETUNE_STALE_SECONDS`` and another worker took the job over) logs why,
abandons the job without writing anything more for it, and goes on with the next.

With ``once``, a worker that finds nothing to claim says why, as a warning: the jobs other
workers are running (a worker started by ``hub demo`` or ``hub ui`` may have taken the job
just submitted), or how the newest job ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from finetune.api import _hub, jobs_of
from finetune.jobs import ClaimLostError, Job, JobStore
from finetune.runner import run_job, worker_name
from finetune.settings import timing

__all__ = ["work"]

log = logging.getLogger(__name__)

SHOWN_JOBS = 5  # running jobs of other workers named in the "no job waiting" line


def work(*, once: bool = False, max_jobs: int | None = None, poll_seconds: float = 2.0, hub: Any = None,
         stop: threading.Event | None = None, on_job: Callable[[Job], Any] | None = None, name: str | None = None,
         wait: float = 0.0) -> int:
    """Run jobs until told to stop.

    Args:
        once: run at most one job; when none is waiting (after ``wait`` seconds), log why as a
            warning (the jobs other workers run, or how the newest job ended) and return.
        max_jobs: return after this many jobs.
        poll_seconds: how long to wait before looking again when the queue is empty.
        hub: the hub whose registry holds the queue (default: ``hub.default_hub()``).
        stop: an event that ends the loop (the web UI's background worker).
        on_job: called with each job as it is claimed (the CLI prints it).
        name: the worker's name in the job records (default ``host:pid``).
        wait: with ``once``, how many seconds to keep looking (every ``poll_seconds``) for a
            job to claim before giving up (default 0: look once).

    Returns:
        The number of jobs run (an abandoned one counts).

    Raises:
        ConfigError: a bad ``FINETUNE_STALE_SECONDS`` or ``FINETUNE_HEARTBEAT_SECONDS``, before any job is claimed.
    """
    timing()
    hub = _hub(hub, "a worker")
    jobs = jobs_of(hub)
    worker = name or worker_name()
    limit = 1 if once else max_jobs
    done = 0
    stop = stop or threading.Event()
    give_up = time.monotonic() + max(0.0, wait)
    plan = ("one job" + (f", waiting up to {wait:g} s for one" if wait > 0 else "")) if once else (
        f"at most {max_jobs} job(s)" if max_jobs is not None else "until stopped")
    log.info("worker %s started: registry %s, polling every %g s, %s", worker, hub.db.shown_url, poll_seconds, plan)
    while not stop.is_set() and (limit is None or done < limit):
        job = jobs.claim(worker)
        if job is None:
            if once:
                left = give_up - time.monotonic()
                if left <= 0:
                    log.warning("%s", _nothing_to_claim(jobs, worker))
                    break
                stop.wait(min(poll_seconds, left))
                continue
            stop.wait(poll_seconds)
            continue
        log.info("claimed %s: %s -> %s (%s), attempt %d", job.id, job.base, job.output, job.task, job.attempts)
        if on_job is not None:
            on_job(job)
        started = time.monotonic()
        try:
            run_job(hub, jobs, job, worker)
        except ClaimLostError as exc:
            log.warning("%s; abandoning", exc)
        else:
            _log_end(jobs.get(job.id), time.monotonic() - started)
        done += 1
    log.info("worker %s stopped after %d job(s)", worker, done)
    return done


def _log_end(job: Job, seconds: float) -> None:
    if job.status == "succeeded":
        log.info("%s succeeded in %.1f s: published %s", job.id, seconds, job.result)
    elif job.status == "failed":
        error = job.error or {"code": "?", "message": ""}
        log.error("%s failed after %.1f s: %s: %s", job.id, seconds, error["code"], error["message"])
    else:
        log.info("%s %s after %.1f s; nothing was published", job.id, job.status, seconds)


def _nothing_to_claim(jobs: JobStore, worker: str) -> str:
    """Why ``worker`` found no job: the jobs other workers are running, or how the newest job ended.

    Returns:
        One line, starting ``no job waiting``.
    """
    running = [job for job in jobs.list("running") if job.worker != worker]
    if running:
        shown = ", ".join(f"{job.id} (worker {job.worker})" for job in running[:SHOWN_JOBS])
        more = f" and {len(running) - SHOWN_JOBS} more" if len(running) > SHOWN_JOBS else ""
        return (f"no job waiting; {len(running)} job(s) running under other workers: {shown}{more}. "
                f"A worker started by `hub demo` or `hub ui` may have taken yours; `finetune status {running[0].id}` shows it")
    newest = jobs.list(limit=1)
    if newest and newest[0].finished and newest[0].worker and newest[0].worker != worker:
        job = newest[0]
        return (f"no job waiting; the newest job, {job.id}, {job.status} under worker {job.worker} "
                f"(`finetune status {job.id}` shows it)")
    return "no job waiting; `finetune submit` queues one"
