"""The families modelhub ships: ``mlp`` (rows of numbers) and ``convnet`` (small images), and
the list of every built-in family, ``transformers`` included.

Their networks (:mod:`hub.families.networks`) are imported when a module is first built or a
config checked, so describing a version does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hub.families.base import BuilderFamily, ModelFamily, ModelSpec, labels_of
from hub.families.transformers import TransformersFamily
from hub.input_facts import InputSpec

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MLPFamily", "ConvNetFamily", "BUILTIN_FAMILIES"]

_LEARNING_RATE = (1e-3, "the default for training all the weights of an mlp or convnet")


class _ClassifierFamily(BuilderFamily):
    """A built-in network whose head is one linear layer, sized by one config key."""

    size_key: str = ""
    full_learning_rate = _LEARNING_RATE
    finetune_tasks = ("classification", "regression", "continue")

    def __init__(self) -> None:  # the builder is looked up when it is needed (it imports torch)
        pass

    @property
    def builder(self) -> Callable[..., nn.Module]:  # type: ignore[override]
        from hub.families import networks

        return getattr(networks, self.name)

    def head_name(self, config: Mapping[str, Any]) -> str:
        """The name of the head, from the config alone."""
        raise NotImplementedError

    def head_module(self, module: nn.Module) -> str | None:
        return self.head_name(module.hub_architecture.config) if hasattr(module, "hub_architecture") else super().head_module(module)

    def spec(self, architecture: str | None, config: Mapping[str, Any], *, files: Sequence[str] = (),
             task: str | None = None) -> ModelSpec:
        labels = labels_of(config.get("id2label"))
        size = config.get(self.size_key)
        try:
            head = self.head_name(config)
        except (KeyError, TypeError, ValueError):
            head = None
        return ModelSpec(self.name, architecture, self.input_of(config, files), head=head,
                         head_size=size if isinstance(size, int) else None, labels=labels,
                         task=task or ("classification" if labels else None), finetune_tasks=self.finetune_tasks)

    def with_head(self, config: Mapping[str, Any], *, task: str, labels: Sequence[str] | None = None,
                  num_outputs: int | None = None) -> tuple[str, dict[str, Any]]:
        config = dict(config)
        if task == "classification":
            labels = list(labels or [])
            config[self.size_key] = num_outputs or len(labels)
            config["id2label"] = {str(i): name for i, name in enumerate(labels)}
            config["label2id"] = {name: i for i, name in enumerate(labels)}
        else:
            config[self.size_key] = num_outputs
            config.pop("id2label", None), config.pop("label2id", None)
        return self.name, config


class MLPFamily(_ClassifierFamily):
    """``mlp``: a row of ``in_features`` numbers in, ``out_features`` out; the head is the last
    linear layer, ``layers.N``."""

    name = "mlp"
    size_key = "out_features"
    example_config = {"in_features": 6, "hidden": [5, 4], "out_features": 3, "activation": "gelu", "dropout": 0.1,
                      "id2label": {"0": "a", "1": "b", "2": "c"}}

    def head_name(self, config: Mapping[str, Any]) -> str:
        per_hidden = 3 if config.get("dropout") else 2  # Linear, activation (, Dropout)
        return f"layers.{len(config.get('hidden', (64,))) * per_hidden}"

    def input_of(self, config: Mapping[str, Any], files: Sequence[str] = ()) -> InputSpec:
        try:
            return InputSpec("numbers", (int(config["in_features"]),), standardizes=bool(config.get("standardize")))
        except (KeyError, TypeError, ValueError):
            return InputSpec()


class ConvNetFamily(_ClassifierFamily):
    """``convnet``: ``in_channels`` x ``image_size`` x ``image_size`` images (values 0 to 1) in,
    ``num_classes`` scores out; the head is ``classifier``."""

    name = "convnet"
    size_key = "num_classes"
    example_config = {"in_channels": 1, "image_size": 8, "channels": [4, 8], "num_classes": 10}

    def head_name(self, config: Mapping[str, Any]) -> str:
        return "classifier"

    def input_of(self, config: Mapping[str, Any], files: Sequence[str] = ()) -> InputSpec:
        try:
            size = int(config["image_size"])
            return InputSpec("image", (int(config["in_channels"]), size, size), value_range=(0.0, 1.0))
        except (KeyError, TypeError, ValueError):
            return InputSpec()


BUILTIN_FAMILIES: tuple[ModelFamily, ...] = (MLPFamily(), ConvNetFamily(), TransformersFamily())
