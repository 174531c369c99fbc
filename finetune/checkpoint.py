"""Resumable training checkpoints, kept in the hub's content-addressed blob store.

A checkpoint is a plain record, as in nanoGPT: the model's weights, the
optimizer's state, the step, the early-stopping bookkeeping and the RNG states,
enough to resume and end with the same weights as an uninterrupted run. Tensors
go into one safetensors blob, everything else into a JSON blob; nothing is
pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch

from hub.storage import BlobStore
from hub.errors import IntegrityError
from hub.safetensors_io import iter_safetensors_bytes

__all__ = ["TrainingState", "save_checkpoint", "load_checkpoint"]

FORMAT = "modelhub.checkpoint/1"


@dataclass
class TrainingState:
    """Where training stands, besides the model and optimizer."""

    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    eval_history: list[dict[str, float]] = field(default_factory=list)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and JSON."""
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], record: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            index, key = name.removeprefix("optimizer.").split(".", 1)
            state.setdefault(int(index), {})[key] = tensor
    for name, value in record["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": record["param_groups"]}


def save_checkpoint(blobs: BlobStore, model: torch.nn.Module, optimizer: torch.optim.Optimizer, training: TrainingState) -> dict[str, Any]:
    """Store a checkpoint; return its record for the job (``{"digest", "step", "blobs"}``)."""
    optimizer_tensors, optimizer_record = _flatten_optimizer(optimizer.state_dict())
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update(optimizer_tensors)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = rng
    tensors = _untie(tensors)
    chunks, _ = iter_safetensors_bytes(tensors)
    tensor_digest, _ = blobs.write(chunks)
    record = {"format": FORMAT, "tensors": tensor_digest, "optimizer": optimizer_record, "training": training.__dict__}
    digest, _ = blobs.put_bytes(json.dumps(record, sort_keys=True).encode())
    return {"digest": digest, "step": training.step, "blobs": [digest, tensor_digest]}


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensors that share storage (tied weights) are copied, so each is saved on its own."""
    seen: set[int] = set()
    result = {}
    for name, tensor in tensors.items():
        pointer = tensor.untyped_storage().data_ptr() if tensor.numel() else id(tensor)
        result[name] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return result


def load_checkpoint(blobs: BlobStore, checkpoint: dict[str, Any], model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> TrainingState:
    """Restore model, optimizer and RNG from a checkpoint record; return the training state.

    Raises:
        IntegrityError: the checkpoint's blobs are missing or not a checkpoint.
    """
    from safetensors.torch import load, load_file

    try:
        record = json.loads(blobs.read_bytes(checkpoint["digest"]))
        if record.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        local = blobs.local_path(record["tensors"])
        tensors = load_file(local) if local is not None else load(blobs.read_bytes(record["tensors"]))
    except (OSError, ValueError, KeyError, IntegrityError) as exc:
        raise IntegrityError(f"checkpoint {checkpoint.get('digest')} can't be read ({exc}); the job must start over") from None
    device = next(iter(model.state_dict().values())).device
    model_state = {k.removeprefix("model."): v.to(device) for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state)
    # The saved settings come back with the state (fused or foreach, as the run that saved it trained), and
    # torch moves each state tensor to its parameter's device (the step counters too, for the fused kernel).
    optimizer.load_state_dict(_unflatten_optimizer(tensors, record["optimizer"]))
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return TrainingState(**record["training"])
