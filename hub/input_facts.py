"""The facts of a model's input (:class:`InputSpec`): what they are, how a record of them is
checked, and how recorded facts combine with those a model family infers.

A leaf module: :mod:`hub.families` infers facts with it and :mod:`hub.inputs` checks and
reads them for versions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hub.entities import _Record
from hub.errors import InvalidArgumentError

__all__ = ["InputSpec", "KINDS", "METADATA_KEY", "TOKENIZER_FILES", "parse_input", "merged_input"]

KINDS = ("image", "numbers", "text")
METADATA_KEY = "input"  # where a version's metadata keeps its input facts
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
_FIELDS = ("kind", "shape", "value_range", "background", "feature_names", "standardizes")
MAX_FEATURE_NAME = 256


@dataclass(frozen=True)
class InputSpec(_Record):
    """What one input of a model is, and how raw data becomes it.

    Attributes:
        kind: ``"image"``, ``"numbers"`` (a row of features) or ``"text"``; None when unknown.
        shape: one input's shape without the batch: ``(features,)`` or ``(channels, height,
            width)``; None for text or when unknown.
        value_range: ``(low, high)``: for an image, the values a black and a white pixel take
            (``(0, 16)`` for scikit-learn's digits, ``(0, 1)`` for most image models); None
            when unknown or unbounded.
        background: for an image, the value an empty pixel takes (``0`` for the digits: light
            strokes on a dark ground), so a drawing of dark strokes on white can be inverted
            to match; None when unknown.
        feature_names: for numbers, each value's name, in order (``("sepal length (cm)", ...)``).
        standardizes: the model standardises its inputs itself (an ``mlp`` with
            ``standardize``): feed raw values.
        recorded: whether the version records these facts; False when they were inferred
            from its architecture and config.
    """

    kind: str | None = None
    shape: tuple[int, ...] | None = None
    value_range: tuple[float, float] | None = None
    background: float | None = None
    feature_names: tuple[str, ...] = ()
    standardizes: bool = False
    recorded: bool = False

    def to_metadata(self) -> dict[str, Any]:
        """The JSON object a version records (what :func:`check_input` accepts): the known facts only."""
        record: dict[str, Any] = {"kind": self.kind}
        if self.shape is not None:
            record["shape"] = list(self.shape)
        if self.value_range is not None:
            record["value_range"] = list(self.value_range)
        if self.background is not None:
            record["background"] = self.background
        if self.feature_names:
            record["feature_names"] = list(self.feature_names)
        if self.standardizes:
            record["standardizes"] = True
        return {key: value for key, value in record.items() if value is not None}


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgumentError(f"input {what} must be a finite number, got {value!r}")
    return float(value)


def parse_input(record: Mapping[str, Any]) -> InputSpec:
    """The :class:`InputSpec` a JSON object of input facts describes (``recorded`` True).

    Raises:
        InvalidArgumentError: an unknown key, a malformed value, or facts that contradict each other.
    """
    unknown = sorted(set(record) - set(_FIELDS))
    if unknown:
        raise InvalidArgumentError(f"input has unknown key(s) {unknown}; it takes {', '.join(_FIELDS)}")
    kind = record.get("kind")
    if kind is not None and kind not in KINDS:
        raise InvalidArgumentError(f"input kind must be one of {', '.join(KINDS)}, got {kind!r}")
    shape = record.get("shape")
    if shape is not None:
        if isinstance(shape, str | bytes) or not isinstance(shape, Sequence) or not shape or not all(
                type(n) is int and n > 0 for n in shape):
            raise InvalidArgumentError(f"input shape must be a list of positive whole numbers, e.g. [1, 8, 8]; got {shape!r}")
        shape = tuple(shape)
    value_range = record.get("value_range")
    if value_range is not None:
        if isinstance(value_range, str | bytes) or not isinstance(value_range, Sequence) or len(value_range) != 2:
            raise InvalidArgumentError(f"input value_range must be [low, high], e.g. [0, 16]; got {value_range!r}")
        value_range = (_number(value_range[0], "value_range"), _number(value_range[1], "value_range"))
        if not value_range[0] < value_range[1]:
            raise InvalidArgumentError(f"input value_range must be [low, high] with low < high; got {list(value_range)}")
    background = record.get("background")
    if background is not None:
        background = _number(background, "background")
    names = record.get("feature_names", ())
    if isinstance(names, str | bytes) or not isinstance(names, Sequence) or not all(
            isinstance(n, str) and 0 < len(n) <= MAX_FEATURE_NAME for n in names):
        raise InvalidArgumentError(f"input feature_names must be a list of names of 1 to {MAX_FEATURE_NAME} characters")
    standardizes = record.get("standardizes", False)
    if not isinstance(standardizes, bool):
        raise InvalidArgumentError(f"input standardizes must be true or false, got {standardizes!r}")
    if kind == "text" and shape is not None:
        raise InvalidArgumentError("a text input has no shape; leave shape out")
    if names and kind not in (None, "numbers"):
        raise InvalidArgumentError(f"feature_names are for numbers, not a {kind} input")
    if names and shape is not None and (len(shape) != 1 or shape[0] != len(names)):
        raise InvalidArgumentError(f"input names {len(names)} features but its shape is {list(shape)}")
    return InputSpec(kind, shape, value_range, background, tuple(names), standardizes, recorded=True)


def merged_input(record: Any, inferred: InputSpec) -> InputSpec:
    """Recorded input facts, each fact they leave out taken from ``inferred`` (the family's).

    Args:
        record: a version's ``input`` metadata; one that is not a dict, or is malformed
            (written by hand into the store), is ignored.
        inferred: what the model's family says of its input.
    """
    if not isinstance(record, Mapping):
        return inferred
    try:
        spec = parse_input(record)
    except InvalidArgumentError:
        return inferred
    return replace(spec, kind=spec.kind or inferred.kind, shape=spec.shape or inferred.shape,
                   value_range=spec.value_range or (inferred.value_range if (spec.kind or inferred.kind) == inferred.kind else None),
                   standardizes=spec.standardizes or inferred.standardizes)
