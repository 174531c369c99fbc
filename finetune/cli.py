"""The ``finetune`` command line: submit, run, work, watch and cancel fine-tuning jobs.

Errors print one line and exit 1; usage mistakes exit 2.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from finetune.config import TASKS
from hub.cli import OneLineParser, add_command, flag_of, format_table, print_json, run_parser

__all__ = ["main", "build_parser"]

# Command-line flags that set FinetuneConfig fields (flag name -> field), beside --config FILE.
CONFIG_FLAGS = {
    "epochs": int, "batch_size": int, "learning_rate": float, "weight_decay": float, "scheduler": str,
    "warmup_ratio": float, "max_grad_norm": float, "grad_accum_steps": int, "seed": int,
    "validation_fraction": float, "early_stopping_patience": int, "lora_rank": int, "lora_alpha": float,
    "checkpoint_every": int, "checkpoint_seconds": float, "label_column": str, "text_column": str, "max_length": int, "device": str,
}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name) is not None}
    if args.train is not None:
        values["train"] = args.train if args.train in ("all", "head") else [p for p in args.train.split(",") if p]
    if args.feature_columns is not None:
        values["feature_columns"] = [c for c in args.feature_columns.split(",") if c]
    if args.lora_targets is not None:
        values["lora_targets"] = [m for m in args.lora_targets.split(",") if m]
    if args.bf16:
        values["bf16"] = True
    if getattr(args, "nproc", None) is not None:
        values["nproc"] = args.nproc
    return values


def _config(args: argparse.Namespace) -> Any:
    from finetune.api import _config

    return _config(args.config, _overrides(args))


def _seconds(text: str) -> float:
    """A number of seconds, 0 or more (an argument type)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def setting_name(args: argparse.Namespace, setting: str) -> str | None:
    """How an error names a fine-tuning setting here: its flag (``--label-column``) where the flag
    gave it or the ``--config`` file did not, ``label_column in FILE`` where that file set it, and
    ``lora_alpha in a --config file`` for a setting no flag sets."""
    flag = flag_of(args, setting)
    config = getattr(args, "config", None)
    if config is not None and getattr(args, setting, None) in (None, False) and setting in _file_settings(config):
        return f"{setting} in {config}"
    if flag is not None:
        return flag
    from finetune.config import FinetuneConfig

    return f"{setting} in a --config file" if setting in FinetuneConfig.__dataclass_fields__ else None


def _file_settings(path: str) -> set[str]:
    """The settings a --config file sets (none where it can't be read: that is its own error)."""
    from pathlib import Path

    try:
        import yaml

        values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - unreadable, bad syntax, too deep: FinetuneConfig.from_file says which
        return set()
    return {str(key) for key in values} if isinstance(values, dict) else set()


def _status_line(job: Any) -> str:
    progress = f"{job.step}/{job.total_steps} steps" if job.total_steps else "not started"
    ending = f" -> {job.result}" if job.result else (f"  {job.error['code']}: {job.error['message']}" if job.error else "")
    return f"{job.id}  {job.status:<9}  {job.base} -> {job.output}  {progress}{ending}"


def _server() -> str | None:
    """The hub server the job commands ask (``HUB_ENDPOINT``), or None for a local hub (and for a bad
    ``HUB_ENDPOINT``: the command's own call then says what is wrong with it)."""
    from hub.errors import HubError
    from hub.settings import endpoint

    try:
        return endpoint()
    except HubError:
        return "HUB_ENDPOINT"


def _registry() -> str | None:
    """What a job command needs here: the registry of a local hub; nothing when a hub server keeps the jobs."""
    return None if _server() is not None else "registry"


# --- commands -------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    import finetune

    job = finetune.submit(args.base, args.data, output=args.output, task=args.task, config=_config(args), validation_data=args.validation)
    if args.json:
        print_json(job.to_dict())
    elif args.quiet:
        print(job.id)
    elif _server() is not None:
        print(f"queued {job.id} on {_server()}: {job.base} on {args.data} -> {job.output} "
              f"(the server's workers run it; follow it with `finetune logs --follow {job.id}`)")
    else:
        print(f"queued {job.id}: {job.base} on {args.data} -> {job.output} (run it with `finetune worker`)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from finetune.settings import timing

    config = _config(args)
    timing()  # refuse bad FINETUNE_STALE_SECONDS before any process starts or job is queued
    if config.nproc > 1 or args.torchrun:  # --torchrun alone: one process on each of several nodes
        from finetune.distributed import JobRequest, launch

        request = JobRequest(base=args.base, data=args.data, output=args.output, task=args.task, config=config,
                             validation_data=args.validation)
        return launch(request, config.nproc, args.torchrun)
    import finetune
    from tqdm import tqdm

    with tqdm(desc="fine-tuning", unit="step", disable=None, file=sys.stderr, dynamic_ncols=True) as bar:
        version = finetune.run(args.base, args.data, output=args.output, task=args.task, config=config,
                               validation_data=args.validation, progress=bar)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in version.metrics.items())
    print(f"published {version.ref} (parent {version.parent}): {metrics}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from finetune.settings import timing

    if args.wait and not args.once:  # a usage mistake: one line, exit 2, as the parser's own
        print("finetune: error: --wait goes with --once (without it a worker waits for jobs until stopped) "
              "(see `finetune worker --help`)", file=sys.stderr)
        return 2
    timing()  # a bad FINETUNE_STALE_SECONDS is refused before torch loads
    from finetune.worker import work

    import finetune

    ran: list[str] = []

    def announce(job: Any) -> None:
        if ran:
            print(_status_line(finetune.get_job(ran[-1])), flush=True)
        ran.append(job.id)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s  %(levelname)-7s  %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("finetune.worker")
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # one line each, whatever the root logger holds
    try:
        work(once=args.once, max_jobs=args.max_jobs, poll_seconds=args.poll, on_job=announce, wait=args.wait)
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved
    if ran:
        print(_status_line(finetune.get_job(ran[-1])))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import finetune

    job = finetune.get_job(args.job)
    if args.json:
        print_json(job.to_dict())
        return 0
    print(_status_line(job))
    if job.status == "succeeded":
        print(f'load it: hub.load("{job.result}")')
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import finetune

    jobs = finetune.list_jobs(args.status, limit=args.limit)
    if args.json:
        print_json([job.to_dict() for job in jobs])
        return 0
    rows = [[j.id, j.status, j.base, j.output, f"{j.progress:.0%}", j.result or (j.error or {}).get("code", ""),
             j.created_at.strftime("%Y-%m-%d %H:%M")] for j in jobs]
    print(format_table(rows, ["JOB", "STATUS", "BASE", "OUTPUT", "DONE", "RESULT", "CREATED"]) if rows else "no jobs")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    import finetune

    job = finetune.cancel(args.job)
    print(f"{job.id}: " + ("cancelled" if job.status == "cancelled" else "cancelling (the worker stops at its next step)"))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    import finetune

    last = 0
    while True:
        for event in finetune.job_events(args.job, after_id=last):
            print(f"{event.created_at:%H:%M:%S}  {event.level:<7}  {event.message}", flush=True)
            last = event.id
        if not args.follow or finetune.get_job(args.job).finished:
            return 0
        time.sleep(1.0)


def _add_job_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("base", help="model to start from: name, name:VERSION or name@ALIAS")
    sub.add_argument("data", help="training data: .csv, .jsonl, .parquet, .npz, .safetensors or a folder of class folders of images")
    sub.add_argument("--output", "-o", required=True, help="name to publish the result under (its next version)")
    sub.add_argument("--task", default="classification", choices=TASKS)
    sub.add_argument("--validation", help="a validation file (default: hold out --validation-fraction of the rows)")
    sub.add_argument("--config", help="a YAML or JSON file of settings (flags override it)")
    for name, kind in CONFIG_FLAGS.items():
        sub.add_argument("--" + name.replace("_", "-"), type=kind, help=argparse.SUPPRESS if name in ("lora_alpha", "max_grad_norm") else None)
    sub.add_argument("--train", help="all, head, or comma-separated parameter-name prefixes to train")
    sub.add_argument("--feature-columns", help="comma-separated feature columns (default: all but label and text)")
    sub.add_argument("--lora-targets", help="with --lora-rank: comma-separated module names to adapt "
                     "(default: every linear and convolution layer but the head)")
    sub.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    sub.add_argument("--json", action="store_true", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The ``finetune`` argument parser."""
    parser = OneLineParser(prog="finetune", description="Fine-tune hub models on your data; results are published to the hub.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True

    command = functools.partial(add_command, commands)

    sub = command("submit", cmd_submit, "Queue a fine-tuning job (checked first; a worker runs it).", needs=_registry())
    _add_job_arguments(sub)
    sub.add_argument("--quiet", "-q", action="store_true", help="print only the job id")
    sub = command("run", cmd_run, "Fine-tune now, in this process, with a progress bar.", needs="hub")
    _add_job_arguments(sub)
    sub.add_argument("--nproc", type=int, help="data-parallel processes under torchrun (default 1)")
    sub.add_argument("--torchrun", default="", help="more torchrun arguments, e.g. '--nnodes 2 --node-rank 0 --master-addr HOST'")
    sub = command("worker", cmd_worker, "Run queued jobs, one at a time.")
    sub.description = (
        "Run queued jobs, one at a time, logging on stderr when it starts, claims a job, and the job ends. "
        "With --once it runs the next job and exits; when there is none (after --wait SECONDS) it says why "
        "and exits 0: the jobs other workers run (a worker started by `hub demo` or `hub ui` takes queued "
        "jobs too: `finetune status JOB` shows which worker runs yours), or how the newest job ended.")
    sub.add_argument("--once", action="store_true",
                     help="run at most one job; when none is waiting, say why (e.g. another worker runs it) and exit 0")
    sub.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                     help="with --once: look for a job for up to SECONDS (default 0: look once)")
    sub.add_argument("--max-jobs", type=int, help="exit after this many jobs")
    sub.add_argument("--poll", type=float, default=2.0, help="seconds between looks at an empty queue")
    sub = command("status", cmd_status, "Show one job.", needs=_registry())
    sub.add_argument("job")
    sub.add_argument("--json", action="store_true")
    sub = command("list", cmd_list, "List jobs, newest first.", needs=_registry())
    sub.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    sub.add_argument("--limit", type=int, default=50)
    sub.add_argument("--json", action="store_true")
    sub = command("cancel", cmd_cancel, "Cancel a queued or running job.", needs=_registry())
    sub.add_argument("job")
    sub = command("logs", cmd_logs, "Print a job's events.", needs=_registry())
    sub.add_argument("job")
    sub.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    return run_parser(build_parser(), argv, setting_name)


if __name__ == "__main__":
    sys.exit(main())
