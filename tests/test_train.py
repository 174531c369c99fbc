"""The training loop (finetune/train.py) on a toy classifier: which AdamW kernel it builds, when it
reads the loss (every ``log_every`` steps) and asks whether to stop, that a NaN loss is never
checkpointed, and that a checkpoint of the fused optimizer resumes to the same weights."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from finetune.checkpoint import load_checkpoint, save_checkpoint
from finetune.config import FinetuneConfig
from finetune.train import Callbacks, Cancelled, adamw_kernel, train
from hub.errors import TrainingError
from hub.storage.filesystem import FileStore

pytestmark = pytest.mark.one_backend

ROWS, BATCH = 40, 4  # 10 steps an epoch


class Rows:
    """A table of 4 numbers a row and 2 classes, as the loop reads a dataset."""

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(ROWS, 4, generator=generator)
        self.targets = (self.inputs.sum(1) > 0).long()

    def __len__(self) -> int:
        return ROWS


class ToyBatches:
    """Rows in, cross entropy out; counts training forward passes; the loss turns NaN from step ``nan_from`` on."""

    def __init__(self, nan_from: int | None = None) -> None:
        self.device, self.plan = torch.device("cpu"), SimpleNamespace(kind="classification")
        self.forwards, self.nan_from = 0, nan_from

    def lengths(self, dataset: Rows) -> None:  # rows of numbers: no lengths to group by
        return None

    def inputs(self, dataset: Rows, indices: torch.Tensor) -> torch.Tensor:
        return dataset.inputs[indices]

    def targets(self, dataset: Rows, indices: torch.Tensor) -> torch.Tensor:
        return dataset.targets[indices]

    def forward(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        if model.training:
            self.forwards += 1
        outputs = model(inputs)
        return outputs * math.nan if model.training and self.nan_from is not None and self.forwards >= self.nan_from else outputs

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs.float(), targets)


class Recorder(Callbacks):
    """Records each call with the number of training forward passes done when it came."""

    def __init__(self, batches: ToyBatches, stop_at: int | None = None, blobs: FileStore | None = None) -> None:
        self.batches, self.stop_at, self.blobs = batches, stop_at, blobs
        self.steps: list[tuple[int, float, int]] = []    # (step, loss, forwards done when reported)
        self.asked: list[int] = []                       # forwards done at each should_stop
        self.checkpoints: list[dict] = []
        self.optimizers: list[torch.optim.Optimizer] = []

    def on_step(self, step: int, epoch: float, loss: float, learning_rate: float, samples_per_s: float) -> None:
        self.steps.append((step, loss, self.batches.forwards))

    def on_checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, state) -> None:
        self.optimizers.append(optimizer)
        self.checkpoints.append(save_checkpoint(self.blobs, model, optimizer, state) if self.blobs else {"step": state.step})

    def should_stop(self) -> bool:
        self.asked.append(self.batches.forwards)
        return self.stop_at is not None and self.batches.forwards >= self.stop_at


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def fit(config: dict, recorder: Recorder | None = None, *, model: nn.Module | None = None, resume=None) -> tuple[nn.Module, Recorder]:
    """Train a toy model (or ``model``) for ``config``, 10 steps an epoch, reporting to ``recorder``."""
    model = model or toy_model()
    recorder = recorder or Recorder(ToyBatches())
    settings = FinetuneConfig.from_dict({"batch_size": BATCH, "checkpoint_seconds": 0, **config})
    train(model, recorder.batches, Rows(), Rows(seed=1), settings, learning_rate=1e-2, callbacks=recorder, resume=resume)
    return model, recorder


def test_adamw_is_fused_where_torch_has_a_fused_kernel_for_the_device_and_dtype():
    assert adamw_kernel([torch.zeros(2), torch.zeros(3, dtype=torch.bfloat16)]) == {"fused": True}
    assert adamw_kernel([torch.zeros(2, device="meta")]) == {"foreach": True}  # no kernels at all on meta
    assert adamw_kernel([torch.zeros(2), torch.zeros(2, dtype=torch.int64)]) == {"foreach": True}  # one that can't be fused
    parameters = [nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2, dtype=torch.bfloat16))]
    for parameter in parameters:
        parameter.grad = torch.ones_like(parameter)
    optimizer = torch.optim.AdamW(parameters, lr=0.1, **adamw_kernel(parameters))
    optimizer.step()  # torch accepts the choice on this machine's CPU, float32 and bfloat16 alike
    assert optimizer.param_groups[0]["fused"] is True and all(bool((p < 1).all()) for p in parameters)

    _, recorder = fit({"epochs": 1, "checkpoint_every": 5})
    assert recorder.optimizers[0].param_groups[0]["fused"] is True  # what the loop builds on CPU


def test_the_loss_is_read_every_log_every_steps_and_at_each_epoch_s_end_and_the_stop_asked_every_step():
    _, every_step = fit({"epochs": 2, "log_every": 1})
    _, recorder = fit({"epochs": 2, "log_every": 4})
    # Every step is still reported, in order, with the same loss; but only at steps 4, 8, 10 (the epoch's end), 12, 16, 20
    assert [(s, loss) for s, loss, _ in recorder.steps] == [(s, loss) for s, loss, _ in every_step.steps]
    assert [s for s, _, _ in recorder.steps] == list(range(1, 21))
    assert [forwards for _, _, forwards in recorder.steps] == [4] * 4 + [8] * 4 + [10] * 2 + [12] * 2 + [16] * 4 + [20] * 4
    assert recorder.asked == list(range(1, 21))  # asking costs no device synchronisation in one process


def test_under_data_parallelism_the_stop_is_asked_at_the_reports_only(tmp_path):
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        _, recorder = fit({"epochs": 2, "log_every": 4})
    finally:
        torch.distributed.destroy_process_group()
    assert recorder.asked == [4, 8, 10, 12, 16, 20]  # a collective each time, on the same steps in every process
    assert [s for s, _, _ in recorder.steps] == list(range(1, 21))


def test_a_checkpoint_due_between_reports_reads_the_losses_first():
    _, recorder = fit({"epochs": 1, "log_every": 4, "checkpoint_every": 3})
    assert [c["step"] for c in recorder.checkpoints] == [3, 6, 9]
    assert [forwards for _, _, forwards in recorder.steps] == [3] * 3 + [4] + [6] * 2 + [8] * 2 + [9] + [10]


@pytest.mark.parametrize(("checkpoint_every", "checkpointed"), [(3, []), (2, [2])])
def test_a_nan_loss_stops_training_before_any_checkpoint_holds_it(checkpoint_every, checkpointed):
    recorder = Recorder(ToyBatches(nan_from=3))
    with pytest.raises(TrainingError, match=r"the training loss became nan at step 3; lower the learning rate \(now 0.01\)"):
        fit({"epochs": 1, "log_every": 5, "checkpoint_every": checkpoint_every}, recorder)
    assert [c["step"] for c in recorder.checkpoints] == checkpointed
    assert [s for s, _, _ in recorder.steps] == [1, 2]  # the finite steps before it are reported, then the error


def test_a_cancel_stops_at_once_with_a_checkpoint_and_the_fused_state_resumes_to_the_same_weights(tmp_path):
    blobs = FileStore(tmp_path / "blobs")
    config = {"epochs": 2, "log_every": 4}
    uninterrupted, _ = fit(config)
    stopped = Recorder(ToyBatches(), stop_at=6, blobs=blobs)
    with pytest.raises(Cancelled, match="stopped at step 6 of 20"):
        fit(config, stopped)
    (checkpoint,) = stopped.checkpoints
    assert checkpoint["step"] == 6 and stopped.optimizers[0].param_groups[0]["fused"] is True
    assert [(s, forwards) for s, _, forwards in stopped.steps] == [(1, 4), (2, 4), (3, 4), (4, 4), (5, 6), (6, 6)]  # read first

    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))  # other initial weights: all come from the checkpoint
    resumed, recorder = fit(config, model=fresh, resume=lambda m, o: load_checkpoint(blobs, checkpoint, m, o))
    assert [s for s, _, _ in recorder.steps] == list(range(7, 21))
    expected, got = uninterrupted.state_dict(), resumed.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def _padded(order: torch.Tensor, lengths: torch.Tensor, batch: int) -> int:
    """Tokens in the batches of ``order``, each padded to its longest row."""
    return sum(int(lengths[rows].max()) * len(rows) for rows in order.split(batch))


def test_grouping_by_length_keeps_every_row_once_and_pads_far_less():
    from finetune.train import _epoch_order

    lengths = torch.randint(4, 64, (1601,), generator=torch.Generator().manual_seed(1))
    grouped = _epoch_order(1601, 0, 0, 0, 1, lengths=lengths, step_rows=32)
    plain = _epoch_order(1601, 0, 0, 0, 1)
    assert sorted(grouped.tolist()) == list(range(1601))
    assert _padded(grouped, lengths, 32) < 0.75 * _padded(plain, lengths, 32)
    assert torch.equal(grouped, _epoch_order(1601, 0, 0, 0, 1, lengths=lengths, step_rows=32))  # resumable: a function of seed and epoch
    assert not torch.equal(grouped, _epoch_order(1601, 1, 0, 0, 1, lengths=lengths, step_rows=32))
    first_steps = [int(lengths[rows].max()) for rows in grouped.split(32)][:10]
    assert first_steps != sorted(first_steps, reverse=True)  # the batches are shuffled, not longest first


def test_grouped_rows_are_shared_between_processes_step_by_step():
    from finetune.train import _epoch_order

    lengths = torch.randint(4, 64, (4000,), generator=torch.Generator().manual_seed(2))
    shares = [_epoch_order(4000, 0, 3, rank, 2, lengths=lengths, step_rows=64) for rank in range(2)]
    assert sorted(torch.cat(shares).tolist()) == list(range(4000))
    spreads = []
    for step in range(len(shares[0]) // 32):  # a step's rows on each process come from the same length group
        both = torch.cat([share[step * 32:(step + 1) * 32] for share in shares])
        spreads.append(int(lengths[both].max()) - int(lengths[both].min()))
    assert sorted(spreads)[len(spreads) // 2] < 8 and max(spreads) < 40  # lengths span 4-63; shuffled steps span ~55


def test_group_by_length_must_be_true_or_false():
    from hub.errors import ConfigError

    with pytest.raises(ConfigError, match="group_by_length must be true or false"):
        FinetuneConfig(group_by_length="yes").validate()
