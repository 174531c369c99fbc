"""Labels into class indices: whole numbers 0, 1, 2, ... are indices, anything else a class
name; checked against a fixed class mapping (the base model's, or the training set's for a
validation file) and the size of an output head that is kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch

from finetune.data.common import Request, Where, quoted
from hub.errors import InvalidValueError, LabelError

__all__ = ["class_indices"]


_MAX_CLASSES = 100_000  # a numeric label beyond this is a typo, not a class index
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def class_indices(labels: Sequence[Any], where: Where, request: Request, *, names_only: bool = False
                   ) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Class indices and label names for ``labels``: whole numbers >= 0 are indices, anything else is a name.

    Args:
        labels: raw labels, one per row.
        where: where they come from, for error messages.
        request: label_names (a fixed mapping) and num_labels (a kept head's size).
        names_only: treat every label as a name (image folder names).

    Returns:
        int64 indices and the label names.

    Raises:
        InvalidValueError: a label is missing.
        LabelError: a label the mapping or head can't hold, or only one class without a fixed mapping.
    """
    missing = next((i for i, label in enumerate(labels) if label is None or (isinstance(label, str) and not label.strip())), None)
    if missing is not None:
        raise InvalidValueError("the label is missing; fill it in or drop the row", **where.at(missing))
    if not names_only and all(map(_is_number, labels)):
        indices, names = _numeric_labels(labels, where, request.label_names)
    else:
        indices, names = _named_labels(labels, where, request.label_names)
    if request.label_names is None:
        _check_two_classes(indices, names, where)
    if request.num_labels is not None:
        _check_head_size(indices, names, where, request.num_labels)
    return indices, names


def _is_number(label: Any) -> bool:
    if isinstance(label, bool):
        return False
    if isinstance(label, (int, float)):
        return True
    return isinstance(label, str) and _NUMBER.fullmatch(label.strip()) is not None


def _numeric_labels(labels: Sequence[Any], where: Where, label_names: tuple[str, ...] | None
                    ) -> tuple[torch.Tensor, tuple[str, ...]]:
    values = torch.tensor([_float_or_inf(label) for label in labels], dtype=torch.float64)
    valid = torch.isfinite(values) & (values >= 0) & (values == values.floor())
    if not bool(valid.all()):
        index = int((~valid).nonzero()[0])
        raise LabelError(f"label {labels[index]!r} is not a class index; numeric labels must be whole numbers "
                         "0, 1, 2, ... (or use class names)", **where.at(index))
    limit = len(label_names) if label_names is not None else _MAX_CLASSES
    beyond = (values >= limit).nonzero()
    if len(beyond):
        index = int(beyond[0])
        if label_names is None:
            raise LabelError(f"label {labels[index]!r} would make more than {_MAX_CLASSES} classes; numeric labels are "
                             "class indices 0, 1, 2, ..., so fix the label or use class names", **where.at(index))
        raise LabelError(f"label {labels[index]!r} is out of range: there are {len(label_names)} classes "
                         f"({quoted(label_names)}), so labels must be 0..{len(label_names) - 1}; fix the label "
                         "or use the class names", **where.at(index))
    indices = values.long()
    if label_names is None:
        return indices, tuple(str(i) for i in range(int(indices.max()) + 1))
    return indices, label_names


def _float_or_inf(number: Any) -> float:
    try:
        return float(number)
    except OverflowError:  # an int beyond float range
        return math.inf


def _named_labels(labels: Sequence[Any], where: Where, label_names: tuple[str, ...] | None
                  ) -> tuple[torch.Tensor, tuple[str, ...]]:
    names_of_rows = [label.strip() if isinstance(label, str) else str(label) for label in labels]
    names = label_names if label_names is not None else tuple(sorted(set(names_of_rows)))
    position = {name: index for index, name in enumerate(names)}
    unknown = next((i for i, name in enumerate(names_of_rows) if name not in position), None)
    if unknown is not None:
        raise LabelError(f"label {names_of_rows[unknown]!r} is not one of the {len(names)} known labels "
                         f"({quoted(names)}); fix the label, or train a new output head for the new class",
                         **where.at(unknown))
    return torch.tensor([position[name] for name in names_of_rows], dtype=torch.long), names


def _check_two_classes(indices: torch.Tensor, names: tuple[str, ...], where: Where) -> None:
    present = torch.unique(indices)
    if len(present) < 2:
        raise LabelError(f"every row has the label {names[int(present[0])]!r}; a classifier needs at least two classes, "
                         "so add rows of another class", **where.whole())


def _check_head_size(indices: torch.Tensor, names: tuple[str, ...], where: Where, num_labels: int) -> None:
    outside = (indices >= num_labels).nonzero()
    if len(outside):
        index = int(outside[0])
        position = int(indices[index])
        raise LabelError(f"label {names[position]!r} is class {position}, but the model's output head has "
                         f"{num_labels} classes (0..{num_labels - 1}); fix the label, or fine-tune with a new "
                         f"output head for {len(names)} classes", **where.at(index))
