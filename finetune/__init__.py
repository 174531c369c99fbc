"""Fine-tuning as a service: retrain hub models on your data, get a new version back.

    import finetune
    job = finetune.submit("acme/digits-cnn:1", "digits.csv", output="me/digits-ft")
    # ... `finetune worker` runs it ...
    finetune.get_job(job.id).status            # queued, running, succeeded, failed, cancelled
    version = finetune.run("acme/digits-cnn:1", "digits.csv", output="me/digits-ft")   # in this process

With ``HUB_ENDPOINT`` (and ``HUB_TOKEN``) set, ``submit``, ``get_job``, ``list_jobs``, ``cancel``,
``job_events`` and ``job_metrics`` ask that hub server (``hub serve``), whose workers run the jobs.

Names are imported on first use, so ``import finetune`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finetune.api import cancel, get_job, job_events, job_metrics, list_jobs, run, submit, validate
    from finetune.config import SCHEDULERS, TASKS, FinetuneConfig
    from finetune.jobs import STATUSES, ClaimLostError, Job, JobEvent, JobMetric
    from finetune.worker import work

_LAZY = {
    "submit": "finetune.api", "validate": "finetune.api", "run": "finetune.api", "get_job": "finetune.api", "list_jobs": "finetune.api",
    "cancel": "finetune.api", "job_events": "finetune.api", "job_metrics": "finetune.api",
    "work": "finetune.worker", "FinetuneConfig": "finetune.config", "TASKS": "finetune.config", "SCHEDULERS": "finetune.config",
    "STATUSES": "finetune.jobs",
    "Job": "finetune.jobs", "JobEvent": "finetune.jobs", "JobMetric": "finetune.jobs", "ClaimLostError": "finetune.jobs",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'finetune' has no attribute {name!r}")
