"""What a model family is: the interface (:class:`ModelFamily`) and what it tells about a model
(:class:`ModelSpec`), after timm's ``PretrainedCfg`` and ``pretrained_filter_fn``.

A family knows everything about one kind of model: how its config is checked and the module
built (for real or with parameters on the meta device), how a checkpoint's names map onto the
module, what is left to do after loading, what the model takes as input, which module is its
head, how to give it a new head for a fine-tuning task, and which files a download carries.
Callers ask the family; nothing else branches on an architecture's name.

:class:`BuilderFamily` is the family of a plain builder, ``fn(**config) -> nn.Module``
(``@hub.register_architecture``); its defaults suit any ``nn.Module``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from hub.entities import _Record
from hub.errors import ArchitectureError, InvalidArgumentError
from hub.input_facts import InputSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hub.entities import ModelVersion

__all__ = ["ArchitectureSpec", "ModelSpec", "ModelFamily", "BuilderFamily", "labels_of", "empty_parameters"]

T = TypeVar("T")
_lock = threading.RLock()


@dataclass(frozen=True)
class ArchitectureSpec:
    """What a module was built from: an architecture name and its config."""

    name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class ModelSpec(_Record):
    """What a model's family knows about one model, from its architecture and config.

    Attributes:
        family: the family's name (``"mlp"``, ``"transformers"``); ``""`` when no family knows
            the architecture.
        architecture: the architecture it is built with.
        input: what one input is (:class:`hub.InputSpec`).
        head: the name of the output module (``"classifier"``, ``"layers.4"``); None when it
            has none or it is unknown.
        head_size: the number of outputs of the head (classes, values); None when unknown.
        labels: the names of the classes, by output index; None when it names none.
        task: what the model does, e.g. ``"classification"``, ``"text-classification"``,
            ``"feature-extraction"`` (embeddings); None when unknown.
        finetune_tasks: the ``finetune`` tasks it can be fine-tuned for; empty for none.
        vocab_size: the size of a text model's vocabulary (token ids run below it).
    """

    family: str
    architecture: str | None
    input: InputSpec = InputSpec()
    head: str | None = None
    head_size: int | None = None
    labels: tuple[str, ...] | None = None
    task: str | None = None
    finetune_tasks: tuple[str, ...] = ()
    vocab_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict, the input's facts as a dict."""
        return {**super().to_dict(), "input": self.input.to_dict()}

    @property
    def takes_text(self) -> bool:
        """Whether the model's input is text (token ids from a tokenizer)."""
        return self.input.kind == "text"

    def example_inputs(self, batch_size: int = 2, sequence_length: int = 8, *, seed: int = 0) -> Any:
        """Inputs the built model accepts, the same for the same arguments (a seeded generator).

        Args:
            batch_size: inputs in the batch.
            sequence_length: tokens per text input.
            seed: seeds the values.

        Returns:
            A tensor ``[batch_size, *input.shape]`` within the input's value range, or for text a
            dict of ``input_ids`` (below ``vocab_size``) and ``attention_mask``.

        Raises:
            InvalidArgumentError: the spec does not say what the input is (no shape, or a text
                model without a vocabulary size); publish it with ``input=``.
        """
        import torch

        generator = torch.Generator().manual_seed(seed)
        if self.takes_text:
            if not self.vocab_size:
                raise InvalidArgumentError(f"{self.architecture!r}: a text model without vocab_size in its config; can't make token ids")
            ids = torch.randint(0, self.vocab_size, (batch_size, sequence_length), generator=generator)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if self.input.shape is None:
            raise InvalidArgumentError(f"the input of {self.architecture!r} has no known shape; publish the model with "
                                       "input={'kind': ..., 'shape': [...]} to record it")
        low, high = self.input.value_range or (0.0, 1.0)
        return torch.rand((batch_size, *self.input.shape), generator=generator) * (high - low) + low


def labels_of(id2label: Any) -> tuple[str, ...] | None:
    """Class names by index from an ``id2label`` mapping (keys may be strings), or None."""
    if not isinstance(id2label, Mapping) or not id2label:
        return None
    try:
        return tuple(str(id2label[key]) for key in sorted(id2label, key=int))
    except (TypeError, ValueError):
        return None


_building_empty = threading.local()
_patched = False


def _install_empty_parameters_hook() -> None:
    """Wrap ``nn.Module.register_parameter`` once: inside :func:`empty_parameters`, on this thread
    only, every new parameter is moved to the meta device as it is registered."""
    global _patched
    with _lock:
        if _patched:
            return
        from torch import nn

        register = nn.Module.register_parameter

        def register_parameter(self: nn.Module, name: str, param: Any) -> None:
            register(self, name, param)
            if param is not None and not param.is_meta and getattr(_building_empty, "active", False):
                self._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        _patched = True


@contextlib.contextmanager
def empty_parameters() -> Iterator[None]:
    """Inside, on this thread, modules get their parameters on the meta device and their buffers real."""
    _install_empty_parameters_hook()
    _building_empty.active = True
    try:
        yield
    finally:
        _building_empty.active = False


class ModelFamily:
    """One kind of model: what modelhub needs to know to build, load, describe and fine-tune it.

    Subclasses implement :meth:`check_config` and :meth:`build`; every other method has a
    default that suits a plain ``nn.Module``.

    Attributes:
        name: the architecture name the family is registered under.
        full_learning_rate: ``(rate, why)``: fine-tuning's default learning rate for training all
            the weights, and the reason a job's events give for it.
        finetune_tasks: the ``finetune`` tasks its models can be fine-tuned for; none by default.
        example_config: a tiny config, for tests that build every registered family; None when
            the family has none.
    """

    name: str = ""
    full_learning_rate: tuple[float, str] = (1e-3, "the default for training all the weights of a model")
    finetune_tasks: tuple[str, ...] = ()
    example_config: dict[str, Any] | None = None

    def check_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The full config, defaults filled in, as JSON values (what a version stores).

        Raises:
            ArchitectureError: an unknown or missing key, or a value that is not JSON.
        """
        raise NotImplementedError

    def build(self, config: Mapping[str, Any], *, empty: bool = False) -> nn.Module:
        """The module for ``config`` (one :meth:`check_config` accepts), on the current default device.

        Args:
            empty: parameters on the meta device (no memory, no initialisation; stored weights
                replace them) and buffers the module computes for itself real.

        Raises:
            ArchitectureError: the builder refused the config.
        """
        raise NotImplementedError

    def map_checkpoint(self, module: nn.Module, state: dict[str, T]) -> dict[str, T]:
        """A checkpoint's entries (tensors, shapes, ...) under the module's names; as given by default."""
        return state

    def finish(self, module: nn.Module, device: torch.device) -> None:
        """What is left after the weights are loaded into ``module`` on ``device`` (tied weights,
        computed buffers); nothing by default."""

    def input_of(self, config: Mapping[str, Any], files: Sequence[str] = ()) -> InputSpec:
        """What ``config`` (and the version's file paths) say of the input; nothing by default."""
        return InputSpec()

    def spec(self, architecture: str | None, config: Mapping[str, Any], *, files: Sequence[str] = (),
             task: str | None = None) -> ModelSpec:
        """What the family knows of a model built from ``config``.

        Args:
            architecture: the name it is built with.
            config: its config (a malformed one gives a spec with the facts it lacks left out).
            files: the version's file paths (a tokenizer's say the model takes text).
            task: the version's task, when it has one.
        """
        labels = labels_of(config.get("id2label"))
        return ModelSpec(self.name, architecture, self.input_of(config, files), labels=labels,
                         head_size=len(labels) if labels else None, task=task or ("classification" if labels else None),
                         finetune_tasks=self.finetune_tasks)

    def head_module(self, module: nn.Module) -> str | None:
        """The name of ``module``'s output module: by default its last linear layer; None without one."""
        from torch import nn

        names = [name for name, layer in module.named_modules() if isinstance(layer, nn.Linear)]
        return names[-1] if names else None

    def with_head(self, config: Mapping[str, Any], *, task: str, labels: Sequence[str] | None = None,
                  num_outputs: int | None = None) -> tuple[str, dict[str, Any]]:
        """The architecture and config of the same model with a head for ``task``.

        Args:
            config: the model's config.
            task: what is trained (``classification``, ``regression``, ``text-classification``).
            labels: the class names (classification), by output index.
            num_outputs: the head's size when it is not ``len(labels)``.

        Raises:
            ArchitectureError: the family can't be given a new head.
        """
        raise ArchitectureError(f"architecture {self.name!r} can't be given a new head for {task}; "
                                "fine-tune a model of a family that can (see hub.list_families())")

    def download_files(self, version: ModelVersion) -> dict[str, bytes]:
        """Files a download or export of ``version`` carries that it may not store, by path; none by default."""
        return {}

    def carried_files(self, version: ModelVersion) -> list[str]:
        """Paths of ``version``'s files that a model fine-tuned from it takes along (its tokenizer); none by default."""
        return []


class BuilderFamily(ModelFamily):
    """The family of a builder function, ``fn(**config) -> nn.Module``: the config is checked
    against the function's signature."""

    def __init__(self, name: str, builder: Callable[..., nn.Module]) -> None:
        self.name, self.builder = name, builder

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {getattr(self.builder, '__qualname__', self.builder)!r})"

    def check_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        name = self.name
        if not isinstance(config, dict):
            raise ArchitectureError(f"config for {name!r} must be a dict, not {type(config).__name__}").about("config")
        try:
            json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ArchitectureError(f"config for {name!r} must hold only JSON values (numbers, strings, lists, dicts): {exc}").about(
                "config") from None
        try:
            bound = inspect.signature(self.builder).bind(**config)
        except TypeError as exc:
            params = ", ".join(inspect.signature(self.builder).parameters)
            raise ArchitectureError(f"config does not fit architecture {name!r}: {exc}; its parameters are: {params}").about(
                "config") from None
        bound.apply_defaults()
        return json.loads(json.dumps(bound.arguments))  # defaults filled in, tuples as lists: what is stored

    def build(self, config: Mapping[str, Any], *, empty: bool = False) -> nn.Module:
        try:
            if not empty:
                return self.builder(**config)
            with empty_parameters():
                return self.builder(**config)
        except (TypeError, ValueError) as exc:
            raise ArchitectureError(f"building {self.name!r} with {dict(config)} failed: {exc}") from exc
