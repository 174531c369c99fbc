"""What each fine-tuning task does to a base model: its data, its head, its loss and its metrics.

``classification``       numbers or images in, class scores out; a new output layer
                         when the number of classes differs from the base's.
``regression``           numbers in, one value (or several) out; mean squared error.
``text-classification``  a transformers encoder and its tokenizer, pooled output + a
                         new classification layer (``AutoModelForSequenceClassification``).
``continue``             the base's own task and head, trained on more data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hub.entities import ModelVersion
from hub.errors import ConfigError, ShapeMismatchError
from hub.inputs import InputSpec, input_spec_of

__all__ = ["TaskPlan", "plan_task", "build_model", "head_parameter_names", "base_classes", "adaptable_layers", "lora_targets",
           "evaluate", "Batches"]

# The config key that sets the size of each built-in architecture's output layer.
HEAD_SIZE_KEYS = {"mlp": "out_features", "convnet": "num_classes"}
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
    hf_config: dict[str, Any] = field(default_factory=dict)
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


def _input_shape(version: ModelVersion) -> tuple[int, ...] | None:
    config = version.config
    if version.architecture == "mlp":
        return (int(config["in_features"]),)
    if version.architecture == "convnet":
        return (int(config["in_channels"]), int(config["image_size"]), int(config["image_size"]))
    return None


def _base_labels(version: ModelVersion) -> tuple[str, ...] | None:
    id2label = version.config.get("id2label") or version.config.get("hf_config", {}).get("id2label")
    if not id2label:
        return None
    return tuple(str(id2label[key]) for key in sorted(id2label, key=int))


def plan_task(task: str, base: ModelVersion) -> TaskPlan:
    """Decide how ``task`` applies to ``base``.

    Raises:
        ConfigError: the task is unknown or does not fit the base's architecture.
    """
    from finetune.config import TASKS

    if task not in TASKS:
        raise ConfigError(f"task {task!r} is unknown; use one of {', '.join(TASKS)}")
    transformers_base = base.architecture == "transformers"
    if task == "text-classification":
        if not transformers_base:
            raise ConfigError(f"text-classification needs a transformers base model; {base.ref} is {base.architecture!r}")
        return TaskPlan(task, "text-classification", None, hf_config=base.config["hf_config"], base_input=input_spec_of(base))
    if transformers_base and task != "continue":
        raise ConfigError(f"{base.ref} is a transformers model: fine-tune it with task 'text-classification' (or 'continue')")
    if base.architecture not in HEAD_SIZE_KEYS and not transformers_base:
        raise ConfigError(
            f"{base.ref} has architecture {base.architecture!r}; fine-tuning supports {', '.join(HEAD_SIZE_KEYS)} and transformers models"
        )
    base_input = input_spec_of(base)
    if task != "continue":
        return TaskPlan(task, task, _input_shape(base), base_input=base_input)
    labels = _base_labels(base)
    if transformers_base:
        hf = base.config["hf_config"]
        return TaskPlan(task, "text-classification", None, labels, len(labels) if labels else hf.get("num_labels"), hf, base_input)
    kind = "regression" if (base.task or "").endswith("regression") else "classification"
    size = int(base.config[HEAD_SIZE_KEYS[base.architecture]])
    return TaskPlan(task, kind, _input_shape(base), labels if kind == "classification" else None, size, base_input=base_input)


def _head_module(model: nn.Module) -> str:
    """The name of the output layer: the last linear layer in the module's order."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ConfigError(f"{type(model).__name__} has no linear output layer to fine-tune")
    return names[-1]


def head_parameter_names(model: nn.Module) -> list[str]:
    """Parameters of the output layer."""
    head = _head_module(model)
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
    head = _head_module(model)
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
    """The classes the base model predicts: its ``id2label`` names, or the indices of its output
    layer's outputs (a built-in classifier without names); None for a regressor or when unknown."""
    if (base.task or "").endswith("regression"):
        return None
    if labels := _base_labels(base):
        return labels
    size = base.config.get(HEAD_SIZE_KEYS.get(base.architecture or "", ""))
    return tuple(str(i) for i in range(int(size))) if isinstance(size, int) else None


def _copy_matching(model: nn.Module, base_state: dict[str, torch.Tensor], prefix: str = "") -> list[str]:
    """Copy the base's tensors into ``model`` where names (bare or under ``prefix``) and shapes match.

    Returns:
        Names of the model's tensors that were not copied (new head, new pooler, ...).
    """
    own = model.state_dict()
    copied = {}
    for name, tensor in base_state.items():
        for target in (name, f"{prefix}.{name}" if prefix else None):
            if target in own and own[target].shape == tensor.shape:
                copied[target] = tensor
                break
    model.load_state_dict(copied, strict=False)
    return sorted(set(own) - set(copied))


def build_model(hub: Any, plan: TaskPlan, base: ModelVersion, label_names: Sequence[str] | None, num_targets: int, seed: int) -> tuple[nn.Module, list[str]]:
    """The model to train: the base's weights, with an output layer sized for the data.

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
    if plan.kind == "text-classification":
        return _text_classifier(plan, base, label_names, base_state)
    config = dict(base.config)
    if plan.kind == "classification":
        labels = list(label_names or [])
        config[HEAD_SIZE_KEYS[base.architecture]] = plan.num_outputs or len(labels)
        config["id2label"] = {str(i): name for i, name in enumerate(labels)}
        config["label2id"] = {name: i for i, name in enumerate(labels)}
    else:
        config[HEAD_SIZE_KEYS[base.architecture]] = plan.num_outputs or num_targets
        config.pop("id2label", None), config.pop("label2id", None)
    model = hub_package.create(base.architecture, **config)
    fresh = _copy_matching(model, base_state)
    return model, fresh


def _text_classifier(plan: TaskPlan, base: ModelVersion, label_names: Sequence[str] | None,
                     base_state: dict[str, torch.Tensor]) -> tuple[nn.Module, list[str]]:
    import transformers

    import hub as hub_package

    config = transformers.AutoConfig.for_model(**plan.hf_config)
    labels = list(label_names or [])
    config.id2label = {i: name for i, name in enumerate(labels)}
    config.label2id = {name: i for i, name in enumerate(labels)}
    config.problem_type = "single_label_classification"
    auto_class = "AutoModelForSequenceClassification"
    model_class = transformers.AutoModelForSequenceClassification._model_mapping[type(config)]
    config.architectures = [model_class.__name__]
    model = hub_package.create("transformers", auto_class=auto_class, hf_config=config.to_dict())
    fresh = _copy_matching(model, base_state, getattr(model, "base_model_prefix", ""))
    return model, fresh


class Batches:
    """Turns rows of a dataset into model inputs on a device, and model outputs into a loss."""

    def __init__(self, plan: TaskPlan, device: torch.device, tokenizer: Any = None, max_length: int = 128) -> None:
        self.plan, self.device, self.tokenizer, self.max_length = plan, device, tokenizer, max_length

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

    Leaves the model in eval mode."""
    model.eval()
    losses, predictions, targets = [], [], []
    order = torch.arange(len(dataset))
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
