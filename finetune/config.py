"""``FinetuneConfig``: every fine-tuning setting, with documented defaults, in one dataclass.

It loads from and saves to YAML or JSON, and :meth:`FinetuneConfig.validate`
turns a bad value into a :class:`~hub.errors.ConfigError` that names the field
and the allowed range before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.errors import ConfigError
from hub.limits import loads

__all__ = ["FinetuneConfig", "TASKS", "SCHEDULERS", "DEFAULT_LEARNING_RATES", "full_learning_rate", "default_learning_rates"]

TASKS = ("classification", "regression", "text-classification", "continue")
SCHEDULERS = ("linear", "cosine", "constant")
# AdamW's peak rate when the config sets none, by what is trained: (rate, why). A full
# fine-tune of a pretrained transformer moves every weight a little (5e-5); LoRA adapters start
# from zero and a head alone is one layer, and both need far more. Measured in 3 epochs:
# all-MiniLM-L6-v2, 4 topics of 400 sentences, rank-8 adapters: accuracy 0.34 at 5e-5, 0.91 at
# 3e-4, 1.00 at 1e-3 and 2e-3 (validation loss 0.15 and 0.03); its head alone: 0.20 at 5e-5, 1.00
# at 1e-3 and 1e-2 (validation loss 1.30 and 0.71). The demo's digits-0to4 convnet on digits
# 5-9, rank-4 adapters: 0.84 at 1e-3, 0.93 at 2e-3; its head alone: 0.71 at 1e-3, 0.95 at 1e-2.
# Training every weight: 1.00 (MiniLM, 5e-5) and 0.95 (the convnet, 1e-3).
# For all the weights, the base's family says (ModelFamily.full_learning_rate: 5e-5 for
# transformers, 1e-3 for mlp and convnet); see default_learning_rates.
DEFAULT_LEARNING_RATES = {
    "lora": (2e-3, "the default for LoRA adapters"),
    "head": (1e-2, "the default for training the head alone"),
}


def full_learning_rate(architecture: str | None) -> tuple[float, str]:
    """``(rate, why)`` for training all the weights of a model of ``architecture``: its family's
    (:attr:`hub.families.ModelFamily.full_learning_rate`), or the general default for one that is
    none or unknown here."""
    from hub.errors import ArchitectureNotFoundError
    from hub.families import ModelFamily, family_for

    try:
        return family_for(architecture).full_learning_rate if architecture else ModelFamily.full_learning_rate
    except ArchitectureNotFoundError:
        return ModelFamily.full_learning_rate


def default_learning_rates() -> dict[str, tuple[float, str]]:
    """Every default learning rate by what is trained: ``lora``, ``head`` and ``all-<architecture>``
    for each registered family."""
    from hub.families import list_families

    return {**DEFAULT_LEARNING_RATES, **{f"all-{family.name}": family.full_learning_rate for family in list_families()}}


@dataclass
class FinetuneConfig:
    """How to fine-tune. Defaults suit a small model on a table of a few thousand rows.

    Attributes:
        epochs: passes over the training data.
        batch_size: rows per forward pass (per process under ``nproc``).
        learning_rate: AdamW's peak rate; None picks one by what is trained (see
            :meth:`chosen_learning_rate`): 2e-3 for LoRA adapters, 1e-2 for the head alone, and
            for all the weights 5e-5 (transformers) or 1e-3 (mlp, convnet).
        weight_decay: AdamW's decoupled weight decay.
        scheduler: ``linear`` (decay to 0), ``cosine`` (to 0) or ``constant``, after warmup.
        warmup_ratio: fraction of all steps spent warming the rate up from 0.
        max_grad_norm: clip gradients to this norm; None to not clip.
        grad_accum_steps: micro-batches whose gradients add up to one optimizer step.
        bf16: run forward passes under bfloat16 autocast.
        seed: seeds weights of a new head, data order, dropout and the validation split.
        validation_fraction: share of rows held out for validation when no validation file is given.
        early_stopping_patience: stop after this many evaluations without improvement; None never stops early.
        train: ``"all"``, ``"head"`` (only the output layer) or a list of parameter-name prefixes to train.
        lora_rank: train LoRA adapters of this rank (through ``peft``) instead of full weights; None is off.
        lora_alpha: LoRA scaling numerator.
        lora_dropout: dropout on the LoRA path.
        lora_targets: module names to adapt (linear and convolution layers: ``nn.Linear``,
            ``nn.Conv1d``, ``nn.Conv2d``, ``nn.Conv3d``); None adapts every one of them but the head.
        lora_merge: merge the adapters into the weights when publishing.
        checkpoint_every: save a resumable checkpoint every this many steps (0: by time only).
        checkpoint_seconds: also save one when this many seconds passed since the last (0: by steps only).
            With both 0, only a cancel saves one.
        log_every: read the training loss (a device synchronisation) and check for a cancel every this
            many steps, and at each epoch's end; every step's loss is still recorded.
        group_by_length: text tasks: make each batch of rows of similar length, so a batch padded to
            its longest row carries little padding (transformers' ``group_by_length``): the epoch's
            shuffled rows are sorted by length within groups of up to 50 steps' rows, cut into
            batches, and the batches shuffled. False keeps plain shuffled batches.
        label_column, text_column, feature_columns: which table columns are what.
        max_length: longest token sequence for text tasks.
        device: ``auto`` (cuda, then mps, then cpu) or an explicit device.
        nproc: data-parallel processes (under ``torchrun``); 1 trains in this process.
    """

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float | None = None
    weight_decay: float = 0.01
    scheduler: str = "linear"
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    grad_accum_steps: int = 1
    bf16: bool = False
    seed: int = 0
    validation_fraction: float = 0.2
    early_stopping_patience: int | None = None
    train: str | list[str] = "all"
    lora_rank: int | None = None
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: list[str] | None = None
    lora_merge: bool = True
    checkpoint_every: int = 0
    checkpoint_seconds: float = 60.0
    log_every: int = 10
    group_by_length: bool = True
    label_column: str = "label"
    text_column: str | None = None
    feature_columns: list[str] | None = None
    max_length: int = 128
    device: str = "auto"
    nproc: int = 1

    def validate(self) -> FinetuneConfig:
        """Check every value; return self.

        Raises:
            ConfigError: naming the field, its value and what is allowed.
        """
        _positive_int(self, "epochs", "batch_size", "grad_accum_steps", "max_length", "nproc", "log_every")
        _non_negative_int(self, "checkpoint_every", "seed")
        if self.learning_rate is not None and not (_finite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning_rate must be a positive number, got {self.learning_rate!r}").about("learning_rate")
        if not (_finite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}").about("weight_decay")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler {self.scheduler!r} is unknown; use one of {', '.join(SCHEDULERS)}").about("scheduler")
        if not (_finite(self.checkpoint_seconds) and self.checkpoint_seconds >= 0):
            raise ConfigError(f"checkpoint_seconds must be >= 0, got {self.checkpoint_seconds!r}").about("checkpoint_seconds")
        if not (_finite(self.warmup_ratio) and 0 <= self.warmup_ratio < 1):
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}").about("warmup_ratio")
        if self.max_grad_norm is not None and not (_finite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ConfigError(f"max_grad_norm must be positive or None, got {self.max_grad_norm!r}").about("max_grad_norm")
        if not (_finite(self.validation_fraction) and 0 < self.validation_fraction < 1):
            raise ConfigError(f"validation_fraction must be between 0 and 1, got {self.validation_fraction!r}").about(
                "validation_fraction")
        if self.early_stopping_patience is not None:
            _positive_int(self, "early_stopping_patience")
        if self.lora_rank is not None:
            _positive_int(self, "lora_rank")
        if not (_finite(self.lora_alpha) and self.lora_alpha > 0) or not (_finite(self.lora_dropout) and 0 <= self.lora_dropout < 1):
            raise ConfigError(f"lora_alpha must be positive and lora_dropout in [0, 1), got {self.lora_alpha!r}, {self.lora_dropout!r}").about(
                "lora_alpha", "lora_dropout")
        for name in ("bf16", "lora_merge", "group_by_length"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}").about(name)
        if self.lora_targets is not None and not (isinstance(self.lora_targets, list) and self.lora_targets
                                                  and all(isinstance(name, str) and name for name in self.lora_targets)):
            raise ConfigError(f"lora_targets must be a non-empty list of module names (or None for every linear and "
                              f"convolution layer but the head), got {self.lora_targets!r}").about("lora_targets")
        if isinstance(self.train, str):
            if self.train not in ("all", "head"):
                raise ConfigError(f"train must be 'all', 'head' or a list of parameter-name prefixes, got {self.train!r}").about("train")
        elif not (isinstance(self.train, list) and self.train and all(isinstance(p, str) and p for p in self.train)):
            raise ConfigError(f"train must be 'all', 'head' or a non-empty list of parameter-name prefixes, got {self.train!r}").about(
                "train")
        for name in ("label_column", "device"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty string, got {getattr(self, name)!r}").about(name)
        return self

    def chosen_learning_rate(self, architecture: str | None) -> tuple[float, str]:
        """The peak learning rate to train with, and why it is that one.

        ``learning_rate`` when it is set; otherwise the default for what is trained
        (:data:`DEFAULT_LEARNING_RATES`): LoRA adapters (``lora_rank``), the head alone
        (``train="head"``), or all the weights (``train="all"``, or some layers named by prefix,
        which are trained in full), the last by ``architecture``'s family (:func:`full_learning_rate`).

        Args:
            architecture: the base model's architecture (``transformers``, ``mlp``, ``convnet``, ...).

        Returns:
            ``(rate, reason)``, the reason one line for the job's events, e.g. ``"learning rate
            0.002: the default for LoRA adapters; set learning_rate (--learning-rate) to change it"``.
        """
        if self.learning_rate is not None:
            return self.learning_rate, f"learning rate {self.learning_rate:g}: set in the job's config"
        if self.lora_rank is not None:
            rate, why = DEFAULT_LEARNING_RATES["lora"]
        elif self.train == "head":
            rate, why = DEFAULT_LEARNING_RATES["head"]
        else:
            rate, why = full_learning_rate(architecture)
        return rate, f"learning rate {rate:g}: {why}; set learning_rate (--learning-rate) to change it"

    # --- dict and file forms --------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain JSON values (what a job records)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneConfig:
        """Build and validate a config from a dict; unknown keys are refused with the closest match.

        Raises:
            ConfigError: an unknown key, a value of the wrong type, or a value out of range.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"a fine-tune config must be a mapping of settings, not {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known settings: {', '.join(known)}"
                raise ConfigError(f"unknown setting {key!r}{hint}")
        converted = {key: _convert(cls, key, value) for key, value in values.items()}
        return cls(**converted).validate()

    def updated(self, **changes: Any) -> FinetuneConfig:
        """A copy with ``changes`` applied (None values ignored), validated."""
        return type(self).from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})

    @classmethod
    def from_file(cls, path: str | Path) -> FinetuneConfig:
        """Read a ``.yaml``/``.yml`` or ``.json`` file.

        Raises:
            ConfigError: unreadable file, bad syntax, or bad settings.
        """
        import yaml

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            values = loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:  # ValueError: also JSON nested too deep
            raise ConfigError(f"can't read fine-tune config {path}: {exc}") from None
        except RecursionError:  # PyYAML recurses once per level of nesting: [[[[...
            raise ConfigError(f"can't read fine-tune config {path}: it nests lists or mappings too deep for the YAML "
                              "reader; a config is a flat mapping of settings") from None
        return cls.from_dict(values or {})

    def to_file(self, path: str | Path) -> None:
        """Write as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        import yaml

        path = Path(path)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False) if path.suffix.lower() in (".yaml", ".yml") else json.dumps(self.to_dict(), indent=2)
        path.write_text(text, encoding="utf-8")


def _finite(value: Any) -> bool:
    try:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def _positive_int(config: FinetuneConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}").about(name)


def _non_negative_int(config: FinetuneConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}").about(name)


_FLOATS = {"learning_rate", "weight_decay", "warmup_ratio", "max_grad_norm", "validation_fraction", "lora_alpha", "lora_dropout",
           "checkpoint_seconds"}


def _convert(cls: type, key: str, value: Any) -> Any:
    """Accept the obvious spellings from YAML or a command line: ints for floats, tuples for lists."""
    if key in _FLOATS and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # not shown: Python can't print a whole number of over 4,300 digits
            digits = int(abs(value).bit_length() * math.log10(2)) + 1
            raise ConfigError(f"{key} is a whole number of about {digits:,} digits, too large for a float; "
                              "give a number like 1e-3").about(key) from None
    if isinstance(value, tuple):
        return list(value)
    if key in _FLOATS and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}").about(key) from None
    return value
