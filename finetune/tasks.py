"""What each fine-tuning task does to a base model: its data, its head, its loss and its metrics.

``classification``       numbers or images in, class scores out; a new output layer
                         when the number of classes differs from the base's.
``regression``           numbers in, one value (or several) out; mean squared error.
``text-classification``  a text encoder and its tokenizer, pooled output + a new
                         classification layer (a transformers ``AutoModelForSequenceClassification``).
``continue``             the base's own task and head, trained on more data.

What a base can be fine-tuned for, its head and how it gets a new one are its model family's
(:mod:`hub.families`): this module asks the family and never looks at an architecture's name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hub.entities import ModelVersion
from hub.errors import ConfigError, ShapeMismatchError
from hub.families import ModelFamily, family_for, list_families, model_spec_of
from hub.inputs import InputSpec

__all__ = ["TaskPlan", "plan_task", "build_model", "head_module", "head_parameter_names", "base_classes", "adaptable_layers",
           "lora_targets", "evaluate", "Batches"]

TEXT_TASK = "text-classification"
# The layers peft's LoRA adapts that carry most of a model's weights (peft also adapts
# embeddings and multi-head attention, named explicitly in ``lora_targets``).
LORA_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class TaskPlan:
    """How a job reads its data and shapes its model, decided from the base version alone."""

    task: str                      # as asked: classification, regression, text-classification, continue
    kind: str                      # what is trained: classification, regression or text-classification
    input_shape: tuple[int, ...] | None
    label_names: tuple[str, ...] | None = None   # fixed by the base (``continue``)
    num_outputs: int | None = None               # the base head's size, kept (``continue``)
    base_input: InputSpec = InputSpec()          # what the base takes (recorded or inferred): image range, ...

    @property
    def data_task(self) -> str:
        return self.kind

    @property
    def pixel_range(self) -> tuple[float, float]:
        """The values black and white pixels of an image folder become: the base's input range (default 0 to 1)."""
        return self.base_input.value_range if self.base_input.kind == "image" and self.base_input.value_range else (0.0, 1.0)

    def output_input(self, feature_names: Sequence[str] = ()) -> InputSpec:
        """The input facts of the version a job publishes: the base's (the job keeps its input layer),
        with the training table's feature columns as names for a numbers input."""
        spec = self.base_input
        if spec.kind is None:
            return spec
        names = tuple(feature_names) if spec.kind == "numbers" and spec.shape == (len(feature_names),) else spec.feature_names
        return dataclasses.replace(spec, feature_names=names, recorded=True)


def _supporting(task: str) -> str:
    """The families that fine-tune for ``task``, as words: ``"mlp, convnet and transformers"``."""
    names = [family.name for family in list_families() if task in family.finetune_tasks]
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else "no"


def plan_task(task: str, base: ModelVersion) -> TaskPlan:
    """Decide how ``task`` applies to ``base``, by what its family knows of it (:func:`hub.families.model_spec_of`).

    Raises:
        ConfigError: the task is unknown or does not fit the base's family.
    """
    from finetune.config import TASKS

    if task not in TASKS:
        raise ConfigError(f"task {task!r} is unknown; use one of {', '.join(TASKS)}")
    spec = model_spec_of(base)
    if task == TEXT_TASK and task not in spec.finetune_tasks:
        raise ConfigError(f"text-classification needs a {_supporting(TEXT_TASK)} base model; {base.ref} is {base.architecture!r}")
    if not spec.finetune_tasks:
        raise ConfigError(f"{base.ref} has architecture {base.architecture!r}; fine-tuning supports {_supporting('continue')} models")
    if task not in spec.finetune_tasks:
        first, *others = spec.finetune_tasks
        alternatives = f" (or {', '.join(map(repr, others))})" if others else ""
        raise ConfigError(f"{base.ref} is a {spec.family} model: fine-tune it with task {first!r}{alternatives}")
    if task != "continue":
        return TaskPlan(task, task, None if task == TEXT_TASK else spec.input.shape, base_input=spec.input)
    if TEXT_TASK in spec.finetune_tasks:
        kind = TEXT_TASK
    else:
        kind = "regression" if (base.task or "").endswith("regression") else "classification"
    return TaskPlan(task, kind, None if kind == TEXT_TASK else spec.input.shape, None if kind == "regression" else spec.labels,
                    spec.head_size, spec.input)


def _family_of(model: nn.Module) -> ModelFamily:
    """The family of a module built by ``hub.create`` (the default one for any other module)."""
    built = getattr(model, "hub_architecture", None)
    return family_for(built.name) if built is not None else ModelFamily()


def head_module(model: nn.Module) -> str:
    """The name of the model's output layer, as its family knows it.

    Raises:
        ConfigError: the model has none (a base model without a head).
    """
    head = _family_of(model).head_module(model)
    if head is None:
        raise ConfigError(f"{type(model).__name__} has no output layer to fine-tune")
    return head


def head_parameter_names(model: nn.Module) -> list[str]:
    """Parameters of the output layer."""
    head = head_module(model)
    return [name for name, _ in model.named_parameters() if name.startswith(head + ".")]


def adaptable_layers(model: nn.Module) -> dict[str, str]:
    """The layers LoRA adapts by default: module name -> layer type, in the model's order, the head included."""
    return {name: type(module).__name__ for name, module in model.named_modules() if isinstance(module, LORA_LAYERS)}


def lora_targets(model: nn.Module, targets: Sequence[str] | None) -> list[str]:
    """The module names to put LoRA adapters on: ``targets`` as given (each checked), or every
    linear and convolution layer but the head (which is trained in full).

    Args:
        model: the model to adapt, its new head included.
        targets: module names (``lora_targets``), whole or their last parts as peft matches them
            (``query`` names every ``...attention.self.query``), or None for the default.

    Returns:
        Module names for ``peft.LoraConfig(target_modules=...)``.

    Raises:
        ConfigError: a name that is no module of the model, or no layer to adapt besides the head;
            the message lists the layers that can be adapted and how to name them.
    """
    head = head_module(model)
    layers = adaptable_layers(model)
    others = [name for name in layers if name != head]
    shown = ", ".join(f"{name} ({kind})" for name, kind in list(layers.items())[:12]) + (" ..." if len(layers) > 12 else "")
    how = (f"the layers LoRA can adapt are {shown or 'none'} ({head} is the head, trained in full); "
           "name the ones to adapt with lora_targets (--lora-targets NAME,NAME)")
    if targets is None:
        if not others:
            raise ConfigError(f"LoRA found no linear or convolution layer to adapt besides the head in {type(model).__name__}; {how}, "
                              "or train without LoRA (train: all or head)")
        return others
    modules = [name for name, _ in model.named_modules()]
    unknown = [target for target in targets if not any(name == target or name.endswith(f".{target}") for name in modules)]
    if unknown:
        raise ConfigError(f"lora_targets names {', '.join(map(repr, unknown))}, which {type(model).__name__} does not have; {how}")
    return list(targets)


def base_classes(base: ModelVersion) -> tuple[str, ...] | None:
    """The classes the base model predicts: its label names, or the indices of its head's outputs
    (a classifier without names); None for a regressor or when unknown."""
    if (base.task or "").endswith("regression"):
        return None
    spec = model_spec_of(base)
    if spec.labels:
        return spec.labels
    return tuple(str(i) for i in range(spec.head_size)) if spec.head_size else None


def _copy_matching(model: nn.Module, base_state: dict[str, torch.Tensor]) -> list[str]:
    """Copy the base's tensors into ``model`` where names and shapes match.

    Returns:
        Names of the model's tensors that were not copied (new head, new pooler, ...).
    """
    own = model.state_dict()
    copied = {name: tensor for name, tensor in base_state.items() if name in own and own[name].shape == tensor.shape}
    model.load_state_dict(copied, strict=False)
    return sorted(set(own) - set(copied))


def build_model(hub: Any, plan: TaskPlan, base: ModelVersion, label_names: Sequence[str] | None, num_targets: int, seed: int) -> tuple[nn.Module, list[str]]:
    """The model to train: the base's weights, with an output layer sized for the data (its
    family's :meth:`~hub.families.ModelFamily.with_head`).

    Args:
        hub: the :class:`hub.Hub` holding the base.
        label_names: class names (classification), None for regression.
        num_targets: values per row to predict (regression).
        seed: seeds the new output layer's initial weights.

    Returns:
        ``(model, names of tensors not taken from the base)``.
    """
    import hub as hub_package

    torch.manual_seed(seed)
    base_state = hub.load_state_dict(base.ref, device="cpu")
    family = family_for(base.architecture)
    if plan.kind == "regression":
        architecture, config = family.with_head(base.config, task=plan.kind, num_outputs=plan.num_outputs or num_targets)
    else:
        architecture, config = family.with_head(base.config, task=plan.kind, labels=list(label_names or []),
                                                num_outputs=plan.num_outputs)
    model = hub_package.create(architecture, **config)
    fresh = _copy_matching(model, family.map_checkpoint(model, base_state))
    return model, fresh


class Batches:
    """Turns rows of a dataset into model inputs on a device, and model outputs into a loss."""

    def __init__(self, plan: TaskPlan, device: torch.device, tokenizer: Any = None, max_length: int = 128) -> None:
        self.plan, self.device, self.tokenizer, self.max_length = plan, device, tokenizer, max_length

    def lengths(self, dataset: Any) -> list[int] | None:
        """Each row's length in tokens (truncated at ``max_length``) for a text task, else None."""
        if self.plan.kind != "text-classification":
            return None
        encoded = self.tokenizer(list(dataset.inputs), truncation=True, max_length=self.max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    def inputs(self, dataset: Any, indices: torch.Tensor) -> Any:
        if self.plan.kind == "text-classification":
            texts = [dataset.inputs[i] for i in indices.tolist()]
            encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            return {k: v.to(self.device) for k, v in encoded.items()}
        return dataset.inputs[indices].to(self.device, non_blocking=True)

    def targets(self, dataset: Any, indices: torch.Tensor) -> torch.Tensor:
        return dataset.targets[indices].to(self.device, non_blocking=True)

    def forward(self, model: nn.Module, inputs: Any) -> torch.Tensor:
        if isinstance(inputs, dict):
            return model(**inputs).logits
        return model(inputs)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs = outputs.float()
        if self.plan.kind == "regression":
            return nn.functional.mse_loss(outputs.reshape(targets.shape), targets)
        return nn.functional.cross_entropy(outputs, targets)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, dataset: Any, batch_size: int) -> dict[str, float]:
    """Validation metrics: loss and accuracy and macro F1 (classification) or MSE and MAE (regression).

    Text rows are batched by length (the metrics do not depend on the order), so little of a
    batch is padding. Leaves the model in eval mode."""
    model.eval()
    losses, predictions, targets = [], [], []
    lengths = batches.lengths(dataset)
    order = torch.argsort(torch.as_tensor(lengths), stable=True) if lengths else torch.arange(len(dataset))
    for start in range(0, len(dataset), batch_size):
        indices = order[start : start + batch_size]
        outputs = batches.forward(model, batches.inputs(dataset, indices)).float()
        target = batches.targets(dataset, indices)
        losses.append(batches.loss(outputs, target) * len(indices))
        predictions.append(outputs.argmax(1) if batches.plan.kind != "regression" else outputs.reshape(target.shape))
        targets.append(target)
    predicted, actual = torch.cat(predictions).cpu(), torch.cat(targets).cpu()
    metrics = {"loss": float(torch.stack(losses).sum() / len(dataset))}
    if batches.plan.kind == "regression":
        metrics["mse"] = float(((predicted - actual) ** 2).mean())
        metrics["mae"] = float((predicted - actual).abs().mean())
    else:
        metrics["accuracy"] = float((predicted == actual).float().mean())
        metrics["macro_f1"] = macro_f1(predicted, actual)
    return metrics


def macro_f1(predicted: torch.Tensor, actual: torch.Tensor) -> float:
    """Unweighted mean of each class's F1, over the classes that occur in either tensor."""
    scores = []
    for label in torch.unique(torch.cat([predicted, actual])).tolist():
        true_positive = int(((predicted == label) & (actual == label)).sum())
        false_positive = int(((predicted == label) & (actual != label)).sum())
        false_negative = int(((predicted != label) & (actual == label)).sum())
        denominator = 2 * true_positive + false_positive + false_negative
        scores.append(2 * true_positive / denominator if denominator else 0.0)
    return sum(scores) / len(scores) if scores else math.nan


def check_targets(plan: TaskPlan, dataset: Any) -> int:
    """Values per row to predict (regression), after checking the head can hold them."""
    if plan.kind != "regression":
        return 1
    width = 1 if dataset.targets.dim() == 1 else int(dataset.targets.shape[1])
    if plan.num_outputs is not None and plan.num_outputs != width:
        raise ShapeMismatchError(f"the base predicts {plan.num_outputs} value(s) per row but the data has {width}", file=dataset.source)
    return width
