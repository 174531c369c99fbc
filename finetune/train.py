"""The training loop, top to bottom in nanoGPT's order.

Per optimizer step: set the learning rate; forward and backward over the
micro-batches that make one step; clip; step; zero the gradients. Every
``log_every`` steps and at each epoch's end: read the losses of the steps since
the last report (one device synchronisation), refuse a loss that is not a
number, and report each step. Whether to stop is asked every step (a callback;
every ``log_every`` steps under data parallelism, where asking is a collective).
At each epoch's end: evaluate and decide on early stopping. Every
``checkpoint_every`` steps, and when asked to stop: checkpoint (the losses are
read first, so no checkpoint holds weights trained on a NaN). Reporting,
checkpoints and cancellation are callbacks, so the loop knows nothing of jobs.

AdamW is torch's fused kernel wherever torch has one for the parameters' device
and dtype (:func:`adamw_kernel`): on CPU it is ~6x faster a step than ``foreach``.

Data order is a pure function of the seed, the epoch and (text, ``group_by_length``)
the rows' lengths, and the RNG state is in
every checkpoint, so a run resumed from a checkpoint ends with the same weights as
one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from finetune.checkpoint import TrainingState
from finetune.config import FinetuneConfig
from finetune.tasks import Batches, evaluate
from hub.errors import TrainingError

__all__ = ["Callbacks", "TrainResult", "Cancelled", "train", "learning_rate_at", "steps_per_epoch", "adamw_kernel",
           "FUSED_ADAMW_DEVICES"]

# Device types with a fused AdamW kernel in torch (2.13: ``torch.optim.AdamW(fused=True)``) for floating-point parameters.
FUSED_ADAMW_DEVICES = frozenset({"cpu", "cuda", "mps", "xpu", "hpu"})


class Cancelled(Exception):
    """Raised out of the loop when a callback asks to stop (after the checkpoint is saved)."""


class Callbacks:
    """Hooks the loop calls; the defaults do nothing. Subclass to report, checkpoint or cancel."""

    def on_start(self, total_steps: int, start_step: int) -> None: ...

    def on_step(self, step: int, epoch: float, loss: float, learning_rate: float, samples_per_s: float) -> None:
        """Called for every step, in order, at the report that follows it (every ``log_every`` steps)."""

    def on_eval(self, step: int, epoch: float, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainingState) -> None: ...

    def should_stop(self) -> bool:
        """True to stop now (cancel); asked after every step (every ``log_every`` steps under data parallelism): keep it cheap."""
        return False


@dataclass(frozen=True)
class TrainResult:
    """How training ended."""

    steps: int
    total_steps: int
    metrics: dict[str, float]          # the last evaluation
    stopped_early: bool
    seconds: float


def steps_per_epoch(rows: int, config: FinetuneConfig, world_size: int = 1) -> int:
    """Optimizer steps in one pass over ``rows`` rows (split over ``world_size`` processes)."""
    micro_batches = math.ceil(math.ceil(rows / world_size) / config.batch_size)
    return math.ceil(micro_batches / config.grad_accum_steps)


def learning_rate_at(step: int, total_steps: int, peak: float, config: FinetuneConfig) -> float:
    """Linear warmup to ``peak``, then linear or cosine decay to 0, or constant."""
    warmup = int(config.warmup_ratio * total_steps)
    if step < warmup:
        return peak * (step + 1) / warmup
    if config.scheduler == "constant":
        return peak
    progress = (step - warmup) / max(1, total_steps - warmup)
    if config.scheduler == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * progress))
    return peak * (1 - progress)


def adamw_kernel(parameters: Iterable[torch.Tensor]) -> dict[str, bool]:
    """AdamW's implementation for ``parameters``: fused where torch has a fused kernel for every one's
    device and dtype, else ``foreach`` (one kernel launch per operation over all tensors).

    Args:
        parameters: the tensors to optimise.

    Returns:
        ``{"fused": True}`` or ``{"foreach": True}``, keyword arguments for ``torch.optim.AdamW``.
    """
    fused = all(p.device.type in FUSED_ADAMW_DEVICES and p.is_floating_point() for p in parameters)
    return {"fused": True} if fused else {"foreach": True}


def _epoch_order(rows: int, epoch: int, seed: int, rank: int, world_size: int, *, lengths: torch.Tensor | None = None,
                 step_rows: int = 1) -> torch.Tensor:
    """The epoch's shuffled row order, this process's share of it.

    With ``lengths``, rows of similar length go together, as transformers' ``LengthGroupedSampler``
    does: the shuffled rows are sorted longest first within groups of up to 50 steps' rows
    (``step_rows`` each, every process's share included), cut into steps, and the steps shuffled.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(rows, generator=generator)
    if lengths is not None:
        group = step_rows * max(1, min(rows // (step_rows * 4), 50))
        order = torch.cat([chunk[torch.argsort(lengths[chunk], descending=True, stable=True)] for chunk in order.split(group)])
        steps = list(order.split(step_rows))
        last = [steps.pop()] if len(steps[-1]) < step_rows else []  # a short last step stays last
        order = torch.cat([steps[i] for i in torch.randperm(len(steps), generator=generator).tolist()] + last)
    return order[rank::world_size]


def train(
    model: nn.Module,
    batches: Batches,
    train_set: Any,
    validation_set: Any,
    config: FinetuneConfig,
    *,
    learning_rate: float,
    callbacks: Callbacks | None = None,
    resume: Any = None,
) -> TrainResult:
    """Train ``model`` in place.

    Args:
        model: the model, already on ``batches.device``, parameters to train with ``requires_grad``;
            wrapped in ``DistributedDataParallel`` when training in several processes.
        batches: turns rows into inputs and outputs into a loss (see :mod:`finetune.tasks`).
        train_set, validation_set: :class:`finetune.data.Dataset` objects.
        config: the settings.
        learning_rate: the peak learning rate.
        callbacks: progress, checkpoints, cancellation.
        resume: ``fn(model, optimizer) -> TrainingState`` restoring a checkpoint, or None to start fresh.

    Returns:
        A :class:`TrainResult`.

    Raises:
        Cancelled: a callback asked to stop (a checkpoint was saved first).
        TrainingError: nothing to train, or the loss stopped being a number.
    """
    callbacks = callbacks or Callbacks()
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world_size = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
    plain_model = model.module if hasattr(model, "module") else model
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise TrainingError("no parameter is left to train; check `train` (all, head or name prefixes)")
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=config.weight_decay, **adamw_kernel(trainable))
    state = resume(plain_model, optimizer) if resume is not None else TrainingState()
    per_epoch = steps_per_epoch(len(train_set), config, world_size)
    total_steps = config.epochs * per_epoch
    device_type = batches.device.type
    autocast = torch.autocast(device_type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext()
    metrics: dict[str, float] = dict(state.eval_history[-1]) if state.eval_history else {}
    callbacks.on_start(total_steps, state.step)
    started = last_checkpoint = window_started = time.perf_counter()
    unreported: list[_Step] = []
    _train_mode(model)

    lengths = batches.lengths(train_set) if config.group_by_length else None
    lengths = torch.as_tensor(lengths) if lengths is not None else None
    step_rows = config.grad_accum_steps * config.batch_size * world_size
    order, order_epoch = None, -1
    while state.step < total_steps and not state.stopped_early:
        # 1. Where we are: this step's rows and its learning rate.
        epoch, position = divmod(state.step, per_epoch)
        if epoch != order_epoch:
            order, order_epoch = _epoch_order(len(train_set), epoch, config.seed, rank, world_size, lengths=lengths,
                                              step_rows=step_rows), epoch
        first = position * config.grad_accum_steps * config.batch_size
        rows = order[first : first + config.grad_accum_steps * config.batch_size]
        lr = learning_rate_at(state.step, total_steps, learning_rate, config)
        for group in optimizer.param_groups:
            group["lr"] = lr

        # 2. Forward and backward over the micro-batches; the loss is the mean over the step's rows.
        micro_batches = [rows[start : start + config.batch_size] for start in range(0, len(rows), config.batch_size)]
        step_loss = 0.0
        for index, indices in enumerate(micro_batches):
            share = len(indices) / len(rows)
            sync = model.no_sync() if distributed and index < len(micro_batches) - 1 else contextlib.nullcontext()
            with sync:
                with autocast:
                    loss = batches.loss(batches.forward(model, batches.inputs(train_set, indices)), batches.targets(train_set, indices))
                (loss if share == 1 else loss * share).backward()
            step_loss = loss.detach() if share == 1 else step_loss + loss.detach() * share

        # 3. Clip, step, zero.
        if config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(trainable, config.max_grad_norm, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        unreported.append(_Step(state.step, step_loss, lr, len(rows) * world_size))

        # 4. Ask whether to stop: every step in one process (a callback, no device synchronisation), every
        #    log_every steps under several (they agree through a collective, on the same steps). Report every
        #    log_every steps, at an epoch's end and before a checkpoint: the losses are read there, in one
        #    device synchronisation, not every step.
        epoch_end = state.step % per_epoch == 0
        report = epoch_end or state.step % config.log_every == 0
        stop = (report or not distributed) and _agree(callbacks.should_stop(), distributed, batches.device)
        due = bool((config.checkpoint_every and state.step % config.checkpoint_every == 0) or (
            config.checkpoint_seconds and time.perf_counter() - last_checkpoint >= config.checkpoint_seconds))
        if report or due or stop:
            _report(unreported, callbacks, per_epoch, time.perf_counter() - window_started, learning_rate)
            unreported = []

        # 5. At an epoch's end: evaluate, and stop early when the validation loss stopped improving.
        if epoch_end:
            metrics = evaluate(plain_model, batches, validation_set, config.batch_size)  # every process, same numbers
            state.eval_history.append(metrics)
            _train_mode(model)
            callbacks.on_eval(state.step, state.step / per_epoch, metrics)
            if state.best_metric is None or metrics["loss"] < state.best_metric:
                state.best_metric, state.best_step, state.evals_without_improvement = metrics["loss"], state.step, 0
            else:
                state.evals_without_improvement += 1
                patience = config.early_stopping_patience
                state.stopped_early = patience is not None and state.evals_without_improvement >= patience

        # 6. Checkpoint now and then (every checkpoint_every steps, or checkpoint_seconds), and before stopping on request.
        if stop or (due and state.step < total_steps):
            callbacks.on_checkpoint(plain_model, optimizer, state)
            last_checkpoint = time.perf_counter()
        if stop:
            raise Cancelled(f"stopped at step {state.step} of {total_steps}")
        if not unreported:
            window_started = time.perf_counter()  # throughput counts training only, not evaluations and checkpoints

    return TrainResult(state.step, total_steps, metrics, state.stopped_early, time.perf_counter() - started)


@dataclass(frozen=True)
class _Step:
    """A finished step whose loss is not read yet (it stays on the device until the next report)."""

    step: int
    loss: torch.Tensor
    learning_rate: float
    samples: int


def _report(steps: list[_Step], callbacks: Callbacks, per_epoch: int, seconds: float, peak: float) -> None:
    """Read the losses of ``steps`` in one synchronisation and report each step, in order.

    Raises:
        TrainingError: a loss is not a number (the steps before it are reported first).
    """
    losses = torch.stack([s.loss for s in steps]).tolist()
    samples_per_s = sum(s.samples for s in steps) / seconds if seconds > 0 else 0.0
    for done, loss in zip(steps, losses):
        if not math.isfinite(loss):
            raise TrainingError(f"the training loss became {loss} at step {done.step}; lower the learning rate (now {peak:g})")
        callbacks.on_step(done.step, done.step / per_epoch, loss, done.learning_rate, samples_per_s)


def _train_mode(model: nn.Module) -> None:
    """Training mode, except normalisation layers whose weights are frozen: they keep their running statistics."""
    model.train()
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and own and not any(p.requires_grad for p in own):
            module.eval()


def _agree(flag: bool, distributed: bool, device: torch.device) -> bool:
    """Rank 0's answer, for every process (only rank 0 talks to the job queue)."""
    if not distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.broadcast(value, src=0)
    return bool(value.item())
