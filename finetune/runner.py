"""Running one fine-tuning job: check its data, build its model, train, publish the result.

:func:`check_job` is everything that can be checked before a job is queued (the
base, the config, every data file), so a bad submission writes nothing.
:func:`run_job` runs a claimed job under a worker: it reports progress, metrics
and events to the job queue, checkpoints into the hub's store, stops when the
job is cancelled, and publishes the trained model as the next version of the
job's output with its parent, metrics and a model card, in the name of the
job's user (who submitted it), not the worker's. Every one of those writes
names the worker's claim (see :mod:`finetune.jobs`); once one is refused
(another worker took the job over), the worker stops training, writes nothing
more for the job and raises :class:`~finetune.jobs.ClaimLostError`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetune.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from finetune.config import FinetuneConfig
from finetune.data import DataSpec, Dataset, load_dataset, split_dataset
from finetune.jobs import ClaimLostError, Job, JobStore, data_path, timing
from finetune.tasks import Batches, TaskPlan, build_model, check_targets, head_module, head_parameter_names, lora_targets, plan_task
from finetune.train import Callbacks, Cancelled, train
from hub.entities import ModelVersion
from hub.errors import ConfigError, HubError
from hub.settings import acting_as

__all__ = ["CheckedJob", "check_job", "data_record", "data_path", "run_job", "run_rank", "worker_name"]

CANCEL_POLL_SECONDS = 0.2
FLUSH_SECONDS = 1.0


def worker_name() -> str:
    """``host:pid``: who runs a job, as the job queue records it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class CheckedJob:
    """A job's inputs, checked: the exact base version, its task plan and the loaded data."""

    base: ModelVersion
    plan: TaskPlan
    config: FinetuneConfig
    train_set: Dataset
    validation_set: Dataset
    validation_file: bool


def check_job(hub: Any, base: str, task: str, data: str | os.PathLike[str], validation_data: str | os.PathLike[str] | None,
              config: FinetuneConfig) -> CheckedJob:
    """Check a job's base, task, config and data; load the data.

    Raises:
        ModelNotFoundError (and other lookups): the base does not exist.
        ConfigError: a bad setting, or a task that does not fit the base.
        DataError: a data file can't be used (its subclasses say why, where).
    """
    config.validate()
    version = hub.info(base)
    plan = plan_task(task, version)
    spec = DataSpec(label_column=config.label_column, text_column=config.text_column,
                    feature_columns=tuple(config.feature_columns) if config.feature_columns else None)
    common = {"task": plan.data_task, "spec": spec, "input_shape": plan.input_shape, "num_labels": plan.num_outputs,
              "pixel_range": plan.pixel_range}
    train_set = load_dataset(data, label_names=plan.label_names, min_rows=config.batch_size, **common)
    if validation_data is not None:
        validation_set = load_dataset(validation_data, label_names=train_set.label_names, **common)
    else:
        train_set, validation_set = split_dataset(train_set, fraction=config.validation_fraction, seed=config.seed,
                                                  stratify=plan.kind != "regression")
    check_targets(plan, train_set)
    return CheckedJob(version, plan, config, train_set, validation_set, validation_data is not None)


def data_record(data: str | os.PathLike[str], validation_data: str | os.PathLike[str] | None, checked: CheckedJob,
                home: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What a job records of its data: paths, sha256 and row counts.

    A file inside the hub's ``home`` (an upload, the demo's sample data) is recorded relative to it,
    so the hub reads the same when its folder moves or is mounted elsewhere; any other as an absolute
    path. :func:`data_path` turns a recorded path back into a file.
    """
    record = {"train": _recorded_path(data, home), "train_sha256": checked.train_set.sha256,
              "train_rows": len(checked.train_set) + (0 if checked.validation_file else len(checked.validation_set))}
    if validation_data is not None:
        record.update(validation=_recorded_path(validation_data, home), validation_sha256=checked.validation_set.sha256,
                      validation_rows=len(checked.validation_set))
    return record


def _recorded_path(path: str | os.PathLike[str], home: str | os.PathLike[str] | None) -> str:
    absolute = Path(path).absolute()
    if home is not None and absolute.is_relative_to(Path(home).absolute()):
        return absolute.relative_to(Path(home).absolute()).as_posix()
    return str(absolute)


class JobReporter(Callbacks):
    """Sends a running job's progress to the job queue: metrics, events, heartbeats, checkpoints, cancel.

    Metrics are buffered and written once a second; a thread keeps the heartbeat
    going even through long steps (every ``FINETUNE_HEARTBEAT_SECONDS``); cancellation
    is polled every 0.2 s, so a cancel takes effect at the end of the step that sees it.
    Every write names the claim ``(job.id, worker, job.attempts)``; the first one refused
    sets :attr:`lost` and the rest are skipped, and :meth:`should_stop` then stops training.
    """

    def __init__(self, hub: Any, jobs: JobStore, job: Job, worker: str, progress: Any = None) -> None:
        self.hub, self.jobs, self.job, self.worker, self.progress = hub, jobs, job, worker, progress
        self.metrics: list[tuple[int, float, str, dict]] = []
        self.events: list[tuple[str, str]] = []
        self.step, self.total_steps = job.step, job.total_steps
        self.cancelled = False
        self.lost: ClaimLostError | None = None
        self._claim = {"job_id": job.id, "worker": worker, "attempt": job.attempts}
        self._heartbeat_seconds = timing().heartbeat_seconds
        self._last_flush = self._last_poll = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.id}", daemon=True)
        self._thread.start()

    def _claimed(self, write: Any, **values: Any) -> Any:
        """``write(**claim, **values)`` while the claim holds; None once it is lost."""
        if self.lost is not None:
            return None
        try:
            return write(**self._claim, **values)
        except ClaimLostError as exc:
            self.lost = exc
            return None

    def fence(self) -> Any:
        """The claim check for the transaction that publishes the job's version."""
        return self.jobs.fence(**self._claim, output=self.job.output)

    def finish(self, status: str, **values: Any) -> Job:
        """End the job as ``status``.

        Raises:
            ClaimLostError: the claim was lost, now or before.
        """
        if self.lost is not None:
            raise self.lost
        return self.jobs.finish(self.job.id, self.worker, status, attempt=self.job.attempts, **values)

    def _beat(self) -> None:
        while self.lost is None and not self._stop.wait(self._heartbeat_seconds):
            try:
                self.cancelled |= bool(self._claimed(self.jobs.heartbeat, step=self.step, total_steps=self.total_steps))
            except HubError:
                pass  # a database hiccup: the next beat tries again

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()

    def log(self, message: str, level: str = "info") -> None:
        """Queue a log line; it is written with the next flush (within a second while training)."""
        self.events.append((level, message))

    def flush(self) -> None:
        events, metrics, self.events, self.metrics = self.events, self.metrics, [], []
        self._claimed(self.jobs.record, events=events, metrics=metrics, step=self.step)
        self._last_flush = time.monotonic()

    def on_start(self, total_steps: int, start_step: int) -> None:
        self.total_steps, self.step = total_steps, start_step
        self.cancelled |= bool(self._claimed(self.jobs.heartbeat, step=start_step, total_steps=total_steps))
        if self.progress is not None:
            self.progress.reset(total=total_steps)
            self.progress.update(start_step)

    def on_step(self, step: int, epoch: float, loss: float, learning_rate: float, samples_per_s: float) -> None:
        self.step = step
        self.metrics.append((step, epoch, "train", {"loss": loss, "learning_rate": learning_rate, "samples_per_s": samples_per_s}))
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def on_eval(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        self.metrics.append((step, epoch, "eval", metrics))
        self.log(f"epoch {epoch:.2f} (step {step}): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        self.flush()

    def on_checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainingState) -> None:
        if self.lost is not None:
            return
        with self.hub.blobs.in_use():  # a gc running now must not take the blobs before the job records them
            record = save_checkpoint(self.hub.blobs, model, optimizer, state)
            self._claimed(self.jobs.save_checkpoint, checkpoint=record)
        self.log(f"checkpoint at step {state.step}")
        self.flush()

    def should_stop(self) -> bool:
        if not (self.cancelled or self.lost) and time.monotonic() - self._last_poll >= CANCEL_POLL_SECONDS:
            self.cancelled = self.jobs.cancel_requested(self.job.id)
            self._last_poll = time.monotonic()
        return self.cancelled or self.lost is not None


def _choose_trainable(model: nn.Module, config: FinetuneConfig, fresh: list[str]) -> nn.Module:
    """Freeze what ``config.train`` leaves out, or wrap the model in LoRA adapters; return the model to train."""
    head = head_parameter_names(model)
    if config.lora_rank is not None:
        return _with_lora(model, config)
    if config.train == "all":
        return model
    keep = set(head) | {name for name in fresh if name in dict(model.named_parameters())} if config.train == "head" else set()
    prefixes = () if config.train == "head" else tuple(config.train)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in keep or name.startswith(prefixes))
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"train {config.train!r} matches no parameter; parameter names start with e.g. "
                          f"{sorted({n.split('.')[0] for n, _ in model.named_parameters()})}").about("train")
    return model


def _with_lora(model: nn.Module, config: FinetuneConfig) -> nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("LoRA needs the peft package: pip install 'modelhub[lora]'") from None
    targets = lora_targets(model, config.lora_targets)
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, modules_to_save=[head_module(model)])
    return get_peft_model(model, lora)


def _published_by(hub: Any, job: Job) -> ModelVersion | None:
    """The version this job already published (a worker that died after publishing), if any."""
    try:
        versions = hub.list_versions(job.output)
    except HubError:
        return None
    return next((v for v in versions if v.metadata.get("finetune_job") == job.id), None)


def _card(job: Job, checked: CheckedJob, metrics: dict[str, float], seconds: float, steps: int, learning_rate: float) -> dict[str, Any]:
    config = checked.config.to_dict()
    config["learning_rate"] = learning_rate
    rows = [f"| {key} | `{value}` |" for key, value in config.items() if value is not None]
    metric_rows = [f"| {key} | {value:.4f} |" for key, value in metrics.items()]
    data = {key: f"`{value}`" + ("" if Path(value).is_absolute() else " in the hub's folder") if key in ("train", "validation") else value
            for key, value in job.data.items()}
    validation = (f"{data['validation']} (sha256 `{data['validation_sha256']}`, {data['validation_rows']} rows)"
                  if "validation" in data else f"{len(checked.validation_set)} rows held out of the training file (seed {checked.config.seed})")
    text = "\n".join([
        f"# {job.output}", "",
        f"Fine-tuned from `{checked.base.ref}` for **{checked.plan.kind}** by modelhub job `{job.id}`.", "",
        "## Data", "",
        f"- training: {data['train']} (sha256 `{data['train_sha256']}`, {data['train_rows']} rows; {len(checked.train_set)} used for training)",
        f"- validation: {validation}", "",
        "## Validation metrics", "", "| metric | value |", "|---|---|", *metric_rows, "",
        "## Hyperparameters", "", "| setting | value |", "|---|---|", *rows, "",
        f"Trained for {steps} steps in {seconds:.1f} s.", "",
        "## Use it", "", "```python", "import hub", f'model = hub.load("{job.output}")', "```",
    ])
    return {"base_model": checked.base.ref, "text": text}


def run_job(hub: Any, jobs: JobStore, job: Job, worker: str, *, progress: Any = None, raise_errors: bool = False,
            checked: CheckedJob | None = None) -> ModelVersion | None:
    """Run a claimed job to its end and record how it ended.

    Args:
        progress: a ``tqdm``-like bar to update, or None.
        raise_errors: after recording a failure, raise it again (``finetune.run``).
        checked: the job's inputs, when this process has just checked them (``finetune.run``).

    Returns:
        The published version, or None when the job was cancelled or failed.

    Raises:
        ClaimLostError: another worker took the job over (this one was silent longer than
            ``FINETUNE_STALE_SECONDS``); this worker stopped and wrote nothing more for it:
            no event, metric, checkpoint, version or final state.
    """
    reporter = JobReporter(hub, jobs, job, worker, progress)
    try:
        version = _run(hub, job, reporter, checked)
    except ClaimLostError as exc:  # the publish's fence refused it
        reporter.lost = reporter.lost or exc
        reporter.close()
        raise
    except (Cancelled, KeyboardInterrupt) as exc:
        reporter.close()
        if isinstance(exc, KeyboardInterrupt) and reporter.lost is not None:
            raise
        reporter.finish("cancelled", message=f"cancelled at step {reporter.step}; nothing was published")
        if isinstance(exc, KeyboardInterrupt):
            raise
        return None
    except Exception as exc:
        reporter.close()
        if isinstance(exc, HubError | OSError):
            code, message = (type(exc).__name__ if isinstance(exc, HubError) else "OSError"), str(exc)
        else:  # a bug: record it, and let a worker go on to the next job
            code, message = "InternalError", f"{type(exc).__name__}: {exc}"
        reporter.finish("failed", error=(code, message), message=f"failed: {message}")
        if raise_errors:
            raise
        return None
    reporter.close()
    reporter.finish("succeeded", result=version.ref, message="succeeded")
    return version


def _run(hub: Any, job: Job, reporter: JobReporter, checked: CheckedJob | None) -> ModelVersion:
    already = _published_by(hub, job)
    if already is not None:
        reporter.log(f"{already.ref} was already published by this job before its worker stopped")
        return already
    checked, model, result, learning_rate = _train(hub, job, reporter, checked=checked)
    # The version is the job's user's, not the worker's account's (a server's jobs are its tokens' users').
    with acting_as(job.created_by) if job.created_by else contextlib.nullcontext():
        return _publish(hub, job, checked, model, result, learning_rate, reporter)


class _SilentReporter(Callbacks):
    """The callbacks of ranks other than 0: they train, rank 0 reports."""

    def log(self, message: str, level: str = "info") -> None: ...


def run_rank(hub: Any, job: Job, device: torch.device) -> None:
    """Train one non-zero rank's share of a data-parallel job (rank 0 runs :func:`run_job`)."""
    _train(hub, job, _SilentReporter(), device)


def _train(hub: Any, job: Job, reporter: Any, device: torch.device | None = None,
           checked: CheckedJob | None = None) -> tuple[CheckedJob, nn.Module, Any, float]:
    """Check the data (unless ``checked``), build the model, train it (data-parallel when a process group is up)."""
    from hub.loader import resolve_device

    config = FinetuneConfig.from_dict(job.config)
    checked = checked or check_job(hub, job.base, job.task, data_path(hub.home, job.data["train"]),
                                   data_path(hub.home, job.data.get("validation")), config)
    if checked.train_set.sha256 != job.data["train_sha256"]:
        reporter.log(f"{job.data['train']} changed since the job was submitted (sha256 now {checked.train_set.sha256})", "warning")
    reporter.log(f"data: {len(checked.train_set)} training rows, {len(checked.validation_set)} validation rows"
                 + (f", {len(checked.train_set.label_names)} classes" if checked.train_set.label_names else ""))

    device = device or resolve_device(config.device)
    model, fresh = build_model(hub, checked.plan, checked.base, checked.train_set.label_names,
                               check_targets(checked.plan, checked.train_set), config.seed)
    model = _choose_trainable(model.to(device), config, fresh)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    reporter.log(f"model: {checked.base.ref} on {device}, {trainable:,} of {sum(p.numel() for p in model.parameters()):,} parameters trained"
                 + (f", new: {', '.join(fresh[:4])}" if fresh else ""))
    tokenizer = hub.load_tokenizer(checked.base.ref) if checked.plan.kind == "text-classification" else None
    batches = Batches(checked.plan, device, tokenizer, config.max_length)
    learning_rate, why = config.chosen_learning_rate(checked.base.architecture)
    reporter.log(why)
    resume = None
    if job.checkpoint:
        reporter.log(f"resuming from the checkpoint at step {job.checkpoint['step']}")
        resume = lambda m, o: load_checkpoint(hub.blobs, job.checkpoint, m, o)  # noqa: E731
    trained = model
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        reporter.log(f"data-parallel over {torch.distributed.get_world_size()} processes ({torch.distributed.get_backend()})")
    result = train(trained, batches, checked.train_set, checked.validation_set, config,
                   learning_rate=learning_rate, callbacks=reporter, resume=resume)
    if result.stopped_early:
        reporter.log(f"stopped early at step {result.steps} of {result.total_steps}: the validation loss stopped improving")
    return checked, model, result, learning_rate


def _tokenizer_files(hub: Any, checked: CheckedJob) -> dict[str, Path]:
    """The base's files its family says a fine-tune carries (a tokenizer), to travel with the result (same blobs: no bytes added)."""
    from hub.families import known_family

    base = checked.base
    return {path: hub.blobs.local_path(base.file(path).sha256) for path in known_family(base.architecture).carried_files(base)}


def _output_input(checked: CheckedJob) -> dict[str, Any] | None:
    """The input facts the job's version records: the base's, with the training table's feature names."""
    spec = checked.plan.output_input(checked.train_set.feature_names)
    return spec.to_metadata() if spec.kind is not None else None


def _publish(hub: Any, job: Job, checked: CheckedJob, model: nn.Module, result: Any, learning_rate: float, reporter: JobReporter) -> ModelVersion:
    metrics = {("val_loss" if key == "loss" else key): value for key, value in result.metrics.items()}
    metadata = {"finetune_job": job.id, "data": job.data, "steps": result.steps, "train_seconds": round(result.seconds, 3),
                "lora": None if checked.config.lora_rank is None else {"rank": checked.config.lora_rank, "merged": checked.config.lora_merge},
                "learning_rate": {"value": learning_rate, "why": checked.config.chosen_learning_rate(checked.base.architecture)[1]}}
    publish = partial(hub.publish, name=job.output, parent=checked.base.ref, files=_tokenizer_files(hub, checked), _fence=reporter.fence(),
                      task=checked.plan.kind, metrics=metrics, metadata=metadata, tags=["fine-tuned"], license=checked.base.license,
                      input=_output_input(checked), card=_card(job, checked, metrics, result.seconds, result.steps, learning_rate))
    if checked.config.lora_rank is not None and not checked.config.lora_merge:
        with tempfile.TemporaryDirectory(prefix="finetune-adapter-") as staging:
            model.cpu().save_pretrained(staging)  # PEFT's own layout: adapter_config.json + adapter_model.safetensors
            version = publish(source=staging)
    else:
        if checked.config.lora_rank is not None:
            model = model.merge_and_unload()
        version = publish(source=model.cpu().eval())
    reporter.log(f"published {version.ref} (parent {checked.base.ref}): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return version
