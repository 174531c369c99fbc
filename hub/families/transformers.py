"""The ``transformers`` family: Hugging Face ``transformers`` models, and everything modelhub
knows of them.

A version's config is ``{"auto_class": "AutoModel...", "hf_config": <config.json>}``. Built
from its config alone (``trust_remote_code=False``: never code shipped with a model), on the
meta device when empty (transformers skips its initialisation there; the buffers are computed
after loading, as ``from_pretrained`` does). A checkpoint saved with or without the base
model's prefix loads either way; the input is text (a tokenizer, or a ``vocab_size``) or
images (``num_channels`` and ``image_size``); a download carries ``config.json``.

Needs ``pip install 'modelhub[transformers]'`` to build; describing a version does not
import transformers.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hub.errors import ArchitectureError, UnsafeFormatError
from hub.families.base import BuilderFamily, ModelSpec, labels_of
from hub.input_facts import TOKENIZER_FILES, InputSpec

# Every file a tokenizer may be saved as (``save_pretrained``), carried by the models fine-tuned from one.
CARRIED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                           "merges.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hub.entities import ModelVersion

__all__ = ["TransformersFamily", "transformers_model", "available", "load_tokenizer", "compute_buffers", "TINY_BERT"]

T = TypeVar("T")
SEQUENCE_CLASSIFIER = "AutoModelForSequenceClassification"
# What a model built with each auto class does (pipeline task names).
TASKS = {
    "AutoModel": "feature-extraction", SEQUENCE_CLASSIFIER: "text-classification",
    "AutoModelForTokenClassification": "token-classification", "AutoModelForQuestionAnswering": "question-answering",
    "AutoModelForMultipleChoice": "multiple-choice", "AutoModelForMaskedLM": "fill-mask",
    "AutoModelForCausalLM": "text-generation", "AutoModelForSeq2SeqLM": "text2text-generation",
    "AutoModelForImageClassification": "image-classification",
}
TINY_BERT = {"model_type": "bert", "vocab_size": 32, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 16, "max_position_embeddings": 16}


def available() -> bool:
    """Whether the transformers package is installed (without importing it)."""
    return importlib.util.find_spec("transformers") is not None


def transformers_model(auto_class: str, hf_config: dict) -> nn.Module:
    """A Hugging Face ``transformers`` model: ``auto_class`` (``AutoModel``, ``AutoModelForSequenceClassification``,
    ...) built from its ``config.json`` contents. Needs ``pip install 'modelhub[transformers]'``."""
    try:
        import transformers
    except ImportError:
        raise ValueError("this model needs the transformers package: pip install 'modelhub[transformers]'") from None
    if not auto_class.startswith("Auto") or not hasattr(transformers, auto_class):
        raise ValueError(f"{auto_class!r} is not a transformers auto class such as AutoModel")
    if "model_type" not in hf_config:
        raise ValueError("hf_config has no model_type; it must be the model's config.json")
    try:  # never the model's own code: a config.json's auto_map names Python files shipped with the model
        config = transformers.AutoConfig.for_model(**hf_config)
        return getattr(transformers, auto_class).from_config(config, trust_remote_code=False)
    except ValueError as exc:
        if not hf_config.get("auto_map"):
            raise
        raise ValueError(
            f"{auto_class} for model type {hf_config['model_type']!r} is only in the custom code its config.json names "
            f"in auto_map, and modelhub never runs code shipped with a model; use a model type and auto class that "
            f"transformers has ({str(exc)[:200]})"
        ) from None


def load_tokenizer(folder: Path, ref: str) -> Any:
    """The tokenizer in ``folder`` (a version's tokenizer files, copied out).

    Args:
        folder: holds ``tokenizer.json``, ``tokenizer_config.json``, ``vocab.txt``, ...
        ref: the version's reference, for messages.

    Returns:
        ``transformers.AutoTokenizer`` when transformers is installed, else a
        ``tokenizers.Tokenizer`` from ``tokenizer.json``.

    Raises:
        UnsafeFormatError: the tokenizer can't be loaded without running code shipped with the
            model (which modelhub never does).
    """
    try:
        from transformers import AutoTokenizer
    except ImportError:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(folder / "tokenizer.json"))
    try:  # never the model's own code (tokenizer_config.json's auto_map): transformers would ask on stdin
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (ValueError, OSError) as exc:
        raise UnsafeFormatError(
            f"{ref}: its tokenizer can't be loaded ({str(exc)[:300]}); modelhub never runs code shipped "
            "with a model, so a tokenizer must be one transformers has (tokenizer.json or a known tokenizer_class)"
        ) from None


def _base_name(module: Any) -> str:
    """The name of a transformers model's base model inside it (``"bert"``), or ``""`` for a base model."""
    prefix = getattr(module, "base_model_prefix", "")
    return prefix if prefix and getattr(module, prefix, None) is not None and getattr(module, prefix) is not module else ""


@functools.lru_cache(maxsize=32)
def _head_of(config_json: str) -> tuple[str | None, int | None]:
    """The head's name and size of the model a config builds (on the meta device, once per config)."""
    import torch

    config = json.loads(config_json)
    with torch.device("meta"):
        module = transformers_model(**config)
    head = TransformersFamily().head_module(module)
    size = getattr(module.get_submodule(head), "out_features", None) if head else None
    return head, size if isinstance(size, int) else None


class TransformersFamily(BuilderFamily):
    """Hugging Face transformers models, built from ``auto_class`` and ``hf_config``."""

    name = "transformers"
    full_learning_rate = (5e-5, "the default for training all the weights of a transformers model")
    finetune_tasks = ("text-classification", "continue")
    example_config = {"auto_class": SEQUENCE_CLASSIFIER,
                      "hf_config": {**TINY_BERT, "architectures": ["BertForSequenceClassification"],
                                    "id2label": {"0": "negative", "1": "positive"}, "label2id": {"negative": 0, "positive": 1}}}

    def __init__(self) -> None:
        super().__init__(self.name, transformers_model)

    def build(self, config: Mapping[str, Any], *, empty: bool = False) -> nn.Module:
        if not empty:
            return super().build(config)
        import torch

        with torch.device("meta"):  # transformers skips its weight init on meta; finish() computes the buffers
            return super().build(config)

    def map_checkpoint(self, module: nn.Module, state: dict[str, T]) -> dict[str, T]:
        """Fit a checkpoint's names to the model, as ``from_pretrained`` does.

        A checkpoint saved from a model with a head (``BertForPreTraining``: ``bert.encoder...``,
        ``cls.predictions...``) loads into its base model (``BertModel``: ``encoder...``): the
        base's prefix (``model.base_model_prefix``) is dropped, and the head's entries are left
        out; a base model's checkpoint gets the prefix a model with a head expects.

        Returns:
            The entries under the model's names; ``state`` itself when they need no mapping.
        """
        prefix = getattr(module, "base_model_prefix", "")
        under = f"{prefix}."
        if not prefix or not state:
            return state
        has_prefix = any(name.startswith(under) for name in state)
        wants_prefix = prefix in module._modules  # a model with a head holds its base under the prefix (no state_dict walk)
        if has_prefix and not wants_prefix:
            return {name[len(under):]: value for name, value in state.items() if name.startswith(under)}
        if wants_prefix and not has_prefix:
            return {under + name: value for name, value in state.items()}
        return state

    def finish(self, module: nn.Module, device: torch.device) -> None:
        """Tie the weights a checkpoint holds once (``tie_weights``) and compute the buffers it lacks."""
        if callable(getattr(module, "tie_weights", None)):
            module.tie_weights()
        compute_buffers(module, device)

    def input_of(self, config: Mapping[str, Any], files: Sequence[str] = ()) -> InputSpec:
        hf = config.get("hf_config") or {}
        if not isinstance(hf, Mapping):
            return InputSpec()
        if any(path in TOKENIZER_FILES for path in files) or "vocab_size" in hf and "num_channels" not in hf:
            return InputSpec("text")
        if isinstance(hf.get("image_size"), int) and isinstance(hf.get("num_channels"), int):
            return InputSpec("image", (hf["num_channels"], hf["image_size"], hf["image_size"]))
        return InputSpec()

    def spec(self, architecture: str | None, config: Mapping[str, Any], *, files: Sequence[str] = (),
             task: str | None = None) -> ModelSpec:
        hf = config.get("hf_config") if isinstance(config.get("hf_config"), Mapping) else {}
        auto_class = config.get("auto_class")
        labels = labels_of(hf.get("id2label"))
        head, size = None, None
        if auto_class != "AutoModel" and available():
            try:
                head, size = _head_of(json.dumps(dict(config), sort_keys=True))
            except (ValueError, TypeError, KeyError, ImportError, RuntimeError):
                pass
        if size is None and auto_class == SEQUENCE_CLASSIFIER:
            size = len(labels) if labels else hf.get("num_labels")
        vocab = hf.get("vocab_size")
        return ModelSpec(self.name, architecture, self.input_of(config, files), head=head, head_size=size, labels=labels,
                         task=TASKS.get(auto_class) or task, finetune_tasks=self.finetune_tasks,
                         vocab_size=vocab if isinstance(vocab, int) else None)

    def head_module(self, module: nn.Module) -> str | None:
        """The last top-level module with parameters outside the base model (``classifier``,
        ``score``); None for a base model, which has no head."""
        base = _base_name(module)
        if not base:
            return None
        heads = [name for name, child in module.named_children() if name != base and next(child.parameters(), None) is not None]
        return heads[-1] if heads else None

    def with_head(self, config: Mapping[str, Any], *, task: str, labels: Sequence[str] | None = None,
                  num_outputs: int | None = None) -> tuple[str, dict[str, Any]]:
        """``AutoModelForSequenceClassification`` of the same model, its ``id2label``,
        ``label2id``, ``problem_type`` and ``architectures`` set (``text-classification``)."""
        if task != "text-classification":
            raise ArchitectureError(f"a transformers model gets a new head for text-classification only, not {task}")
        import transformers

        hf = transformers.AutoConfig.for_model(**config["hf_config"])
        labels = list(labels or [])
        if labels or not num_outputs:
            hf.id2label = {i: name for i, name in enumerate(labels)}
            hf.label2id = {name: i for i, name in enumerate(labels)}
        else:
            hf.num_labels = num_outputs
        hf.problem_type = "single_label_classification"
        hf.architectures = [transformers.AutoModelForSequenceClassification._model_mapping[type(hf)].__name__]
        return self.name, {"auto_class": SEQUENCE_CLASSIFIER, "hf_config": hf.to_dict()}

    def carried_files(self, version: ModelVersion) -> list[str]:
        """The tokenizer's files: a fine-tune of a text model reads text the same way."""
        return [entry.path for entry in version.files if entry.path in CARRIED_TOKENIZER_FILES]

    def download_files(self, version: ModelVersion) -> dict[str, bytes]:
        """``config.json`` from the version's ``hf_config``, when the version stores none."""
        if any(entry.path == "config.json" for entry in version.files):
            return {}
        return {"config.json": json.dumps(version.config["hf_config"], indent=2, sort_keys=True).encode()}


def compute_buffers(model: Any, device: Any) -> None:
    """Give a transformers model built on the meta device its computed buffers, after its weights.

    As ``from_pretrained`` does: the loaded tensors are marked initialised, the
    buffers the checkpoint does not hold get real (empty) storage on ``device``,
    and the model's own ``_init_weights`` fills them, called only on the
    submodules that own such a buffer (a whole ``initialize_weights`` pass
    costs milliseconds); it skips every tensor marked initialised, so no
    loaded weight changes.
    """
    import torch

    for tensor in [*model.parameters(), *model.buffers()]:
        if not tensor.is_meta:
            tensor._is_hf_initialized = True
    owners = {}
    for owner in model.modules():
        for name, buffer in owner._buffers.items():
            if buffer is not None and buffer.is_meta:
                owner._buffers[name] = torch.empty_like(buffer, device=device)
                owners[id(owner)] = owner
    init_one = getattr(model, "_init_weights", None)
    with torch.no_grad():
        if callable(init_one):
            for owner in owners.values():
                init_one(owner)
        elif owners and callable(getattr(model, "initialize_weights", None)):
            model.initialize_weights()
