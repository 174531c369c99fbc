"""Data-parallel fine-tuning under ``torchrun``: ``finetune run --nproc N``.

:func:`launch` starts ``torchrun`` (``python -m torch.distributed.run``) with this
module as the program, and hands every process the job to run as a :class:`JobRequest`:
JSON in ``FINETUNE_JOB_REQUEST`` (the base, data files, task, output name and every
setting, already checked), never a command line to parse again. torchrun's own
multi-node arguments pass through ``--torchrun`` (``finetune run --nproc 1 --torchrun
'--nnodes 2 --node-rank N ...'`` on each node runs one job over both). In every process
:func:`main` joins the process group (gloo on CPU, nccl on CUDA). The job's global rank 0
checks and queues the job, claims it and tells the others its id; every rank loads the
data and the model and trains its share of each batch under ``DistributedDataParallel``;
rank 0 alone reports, checkpoints and publishes, once; the other ranks write nothing.

Shutdown is explicit: a barrier, ``destroy_process_group``, and then the process
ends with ``os._exit`` once its output is flushed, because gloo has been seen to
abort in its destructors at interpreter exit after training had finished.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from finetune.config import FinetuneConfig
from finetune.settings import JOB_REQUEST_VARIABLE, job_request, local_rank
from hub.errors import ConfigError

__all__ = ["JobRequest", "launch", "main"]

_JOB_ID_BYTES = 64


@dataclass(frozen=True)
class JobRequest:
    """What ``finetune run`` was asked to do, checked: what every torchrun process is handed.

    Args:
        base: the model to start from (``name``, ``name:VERSION``, ``name@ALIAS``).
        data: the training data file or folder.
        output: the model name to publish the result under.
        task: the task (see :func:`finetune.submit`).
        config: every setting.
        validation_data: a validation file, or None to hold out ``validation_fraction`` of the rows.
    """

    base: str
    data: str
    output: str
    task: str
    config: FinetuneConfig
    validation_data: str | None = None

    def to_json(self) -> str:
        """The request as JSON (the config as its dict of settings)."""
        return json.dumps({**dataclasses.asdict(self), "config": self.config.to_dict()})

    @classmethod
    def from_json(cls, text: str) -> JobRequest:
        """The request :meth:`to_json` wrote.

        Raises:
            ConfigError: it is not such a request (not JSON, a field missing, a bad setting).
        """
        try:
            values: dict[str, Any] = json.loads(text)
            return cls(**{**values, "config": FinetuneConfig.from_dict(values["config"])})
        except ConfigError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{JOB_REQUEST_VARIABLE} does not hold a job request ({type(exc).__name__}: {exc}); "
                              "start data-parallel runs with `finetune run --nproc N`") from None


def launch(request: JobRequest, nproc: int, torchrun_args: str = "") -> int:
    """Run ``request`` in ``nproc`` processes under torchrun; return its exit status.

    Args:
        request: the job, checked.
        nproc: processes on this node.
        torchrun_args: more torchrun arguments (``--nnodes 2 --node-rank 0 --master-addr HOST``);
            without ``--nnodes`` or ``--rdzv...`` the run is ``--standalone``.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               *shlex.split(torchrun_args), "-m", "finetune.distributed"]
    if "--nnodes" not in torchrun_args and "--rdzv" not in torchrun_args:
        command[3:3] = ["--standalone"]
    # The request travels in the environment: torchrun passes it to every process it starts.
    return subprocess.call(command, env={**os.environ, JOB_REQUEST_VARIABLE: request.to_json()})


def _requested() -> JobRequest:
    """The request :func:`launch` handed this process.

    Raises:
        ConfigError: there is none, or it is not a job request.
    """
    text = job_request()
    if text is None:
        raise ConfigError(f"{JOB_REQUEST_VARIABLE} is not set; start data-parallel runs with `finetune run --nproc N`")
    return JobRequest.from_json(text)


def _share_job_id(job_id: str, device: object) -> str:
    """Rank 0's job id (empty when it failed), for every rank; sent as bytes, never pickled."""
    import torch
    import torch.distributed as dist

    data = torch.zeros(_JOB_ID_BYTES, dtype=torch.uint8, device=device)
    encoded = job_id.encode()[:_JOB_ID_BYTES]
    data[: len(encoded)] = torch.tensor(list(encoded), dtype=torch.uint8)
    dist.broadcast(data, src=0)
    return bytes(data.cpu().tolist()).rstrip(b"\0").decode()


def main(request: JobRequest | None = None) -> int:
    """One torchrun process: train a rank's share; rank 0 queues, reports and publishes.

    Args:
        request: the job (default: the one :func:`launch` put in ``FINETUNE_JOB_REQUEST``).

    Returns:
        The exit status: 0 when the job was published (rank 0) or its share trained.
    """
    import torch
    import torch.distributed as dist

    import finetune
    from finetune.api import _hub, jobs_of
    from finetune.jobs import ClaimLostError
    from finetune.runner import run_job, run_rank, worker_name
    from finetune.settings import timing
    from finetune.train import Cancelled
    from hub.errors import HubError, JobStateError

    try:
        request = request or _requested()
    except HubError as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 1
    rank_on_node = local_rank()
    cuda = torch.cuda.is_available() and request.config.device in ("auto", "cuda")
    if cuda:
        torch.cuda.set_device(rank_on_node)
    device = torch.device("cuda", rank_on_node) if cuda else torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    rank = dist.get_rank()
    status = 0
    try:
        job, worker = None, worker_name()
        hub, jobs = _hub(None), jobs_of(None)
        if rank == 0:
            try:
                timing()
                config = request.config.updated(nproc=dist.get_world_size(), device=str(device))
                queued = finetune.submit(request.base, request.data, output=request.output, task=request.task,
                                         config=config, validation_data=request.validation_data)
                job = jobs.claim(worker, queued.id)
                if job is None:
                    raise JobStateError(f"job {queued.id} was taken by a worker before this run could claim it; "
                                        f"follow it with `finetune logs {queued.id}`")
            except HubError as exc:
                print(f"finetune: error: {exc}", file=sys.stderr)
                status = 1
        job_id = _share_job_id(job.id if job is not None else "", device)
        if not job_id:
            return status or 1
        if rank == 0:
            try:
                version = run_job(hub, jobs, job, worker, raise_errors=False)
            except ClaimLostError as exc:
                print(f"finetune: error: {exc}; abandoning", file=sys.stderr)
                version, status = None, 1
            if version is not None:
                print(f"published {version.ref} (parent {version.parent}) with {dist.get_world_size()} processes: "
                      + ", ".join(f"{k} {v:.4f}" for k, v in version.metrics.items()))
            elif status == 0:
                final = jobs.get(job_id)
                print(f"finetune: error: job {job_id} {final.status}: {(final.error or {}).get('message', '')}", file=sys.stderr)
                status = 1
        else:
            try:
                run_rank(hub, jobs.get(job_id), device)
            except Cancelled:
                status = 1  # rank 0 stopped training (cancelled, or its claim lost) and says why
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return status


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
