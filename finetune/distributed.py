"""Data-parallel fine-tuning under ``torchrun``: ``finetune run --nproc N``.

:func:`launch` starts ``torchrun`` (``python -m torch.distributed.run``) with this
module as the program and the same command line; torchrun's own multi-node
arguments pass through ``--torchrun`` (``finetune run --nproc 1 --torchrun '--nnodes 2
--node-rank N ...'`` on each node runs one job over both). In every process :func:`main`
joins the process group (gloo on CPU, nccl on CUDA). The job's global rank 0 checks and
queues the job, claims it and tells the others its id; every rank loads the data and the
model and trains its share of each batch under ``DistributedDataParallel``; rank 0 alone
reports, checkpoints and publishes, once; the other ranks write nothing.

Shutdown is explicit: a barrier, ``destroy_process_group``, and then the process
ends with ``os._exit`` once its output is flushed, because gloo has been seen to
abort in its destructors at interpreter exit after training had finished.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["launch", "main"]

_JOB_ID_BYTES = 64
_ARGS_VARIABLE = "FINETUNE_RUN_ARGS"


def launch(argv: Sequence[str], nproc: int, torchrun_args: str = "") -> int:
    """Run ``finetune run ARGV`` in ``nproc`` processes under torchrun; return its exit status."""
    program = list(argv[1:] if argv and argv[0] == "run" else argv)  # the run subcommand's own arguments
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               *shlex.split(torchrun_args), "-m", "finetune.distributed"]
    if "--nnodes" not in torchrun_args and "--rdzv" not in torchrun_args:
        command[3:3] = ["--standalone"]
    # The arguments travel in the environment: torchrun's own parser would take --nproc, --output, ... for its options.
    return subprocess.call(command, env={**os.environ, _ARGS_VARIABLE: json.dumps(program)})


def _share_job_id(job_id: str, device: object) -> str:
    """Rank 0's job id (empty when it failed), for every rank; sent as bytes, never pickled."""
    import torch
    import torch.distributed as dist

    data = torch.zeros(_JOB_ID_BYTES, dtype=torch.uint8, device=device)
    encoded = job_id.encode()[:_JOB_ID_BYTES]
    data[: len(encoded)] = torch.tensor(list(encoded), dtype=torch.uint8)
    dist.broadcast(data, src=0)
    return bytes(data.cpu().tolist()).rstrip(b"\0").decode()


def main(argv: Sequence[str] | None = None) -> int:
    """One torchrun process: train a rank's share; rank 0 queues, reports and publishes."""
    import torch
    import torch.distributed as dist

    import finetune
    from finetune.api import _hub, jobs_of
    from finetune.cli import _config, build_parser
    from finetune.jobs import ClaimLostError, timing
    from finetune.runner import run_job, run_rank, worker_name
    from finetune.train import Cancelled
    from hub.errors import HubError, JobStateError

    program = json.loads(os.environ.get(_ARGS_VARIABLE, "[]")) if argv is None else list(argv)
    args = build_parser().parse_args(["run", *program])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and args.device in (None, "auto", "cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    rank = dist.get_rank()
    status = 0
    try:
        job, worker = None, worker_name()
        hub, jobs = _hub(None), jobs_of(None)
        if rank == 0:
            try:
                timing()
                config = _config(args).updated(nproc=dist.get_world_size(), device=str(device))
                queued = finetune.submit(args.base, args.data, output=args.output, task=args.task, config=config,
                                         validation_data=args.validation)
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
