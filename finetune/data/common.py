"""What every kind of training data shares: the :class:`Dataset` a reader returns, the
:class:`DataSpec` that says which table columns are what, what a read was asked for
(:class:`Request`), where a value came from for an error message (:class:`Where`), and the
checks every format makes (rows enough for a batch, inputs that fit the model).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hub.errors import ShapeMismatchError, TooFewRowsError, UnreadableDataError

__all__ = ["CHUNK_BYTES", "FEATURES", "DataSpec", "Dataset", "Request", "Where", "sha256_of_file", "check_min_rows",
           "fit_input_shape", "quoted", "closest"]


CHUNK_BYTES = 1 << 20
FEATURES = {"feature_columns": "DataSpec(feature_columns=...)"}  # how messages name the setting (HubError.about)


@dataclass(frozen=True)
class DataSpec:
    """How to read a table: which columns are what.

    Attributes:
        label_column: the column holding class labels or regression targets.
        text_column: the column holding texts, for text tasks; None reads ``"text"``.
        feature_columns: the numeric input columns, in order; None takes every column
            except the label column (and ``text_column`` when it is set).
    """

    label_column: str = "label"
    text_column: str | None = None
    feature_columns: tuple[str, ...] | None = None


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Checked training data, ready for a DataLoader.

    Attributes:
        inputs: float32 ``[n, *input_shape]`` for numbers and images; a tuple of texts for text tasks.
        targets: int64 ``[n]`` class indices (classification), float32 ``[n]`` or ``[n, k]`` (regression).
        label_names: class index -> name for classification; None for regression.
        source: the path as given.
        sha256: the file's sha256 (a folder: see :func:`file_sha256`).
        feature_names: the table columns used as inputs, in order (empty for arrays and images).
    """

    inputs: torch.Tensor | tuple[str, ...]
    targets: torch.Tensor
    label_names: tuple[str, ...] | None
    source: str
    sha256: str
    feature_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        if isinstance(self.inputs, tuple):
            inputs = f"{len(self.inputs)} texts"
        else:
            inputs = f"inputs {tuple(self.inputs.shape)}"
        classes = f", {len(self.label_names)} classes" if self.label_names is not None else ""
        return f"Dataset({self.source!r}, {len(self)} rows, {inputs}{classes}, sha256={self.sha256[:12]}...)"

    def subset(self, indices: Sequence[int] | torch.Tensor) -> Dataset:
        """The rows at ``indices``, in that order.

        Args:
            indices: row positions (0-based).

        Returns:
            A Dataset with the same source, sha256, label_names and feature_names.

        Raises:
            IndexError: an index is out of range.
        """
        positions = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if isinstance(self.inputs, tuple):
            inputs = tuple(self.inputs[i] for i in positions.tolist())
        else:
            inputs = self.inputs[positions]
        return dataclasses.replace(self, inputs=inputs, targets=self.targets[positions])


@dataclass(frozen=True)
class Request:
    """What :func:`load_dataset` was asked for, checked."""

    source: str
    task: str
    spec: DataSpec
    input_shape: tuple[int, ...] | None
    label_names: tuple[str, ...] | None
    num_labels: int | None
    min_rows: int
    pixel_range: tuple[float, float] = (0.0, 1.0)

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"


@dataclass(frozen=True)
class Where:
    """Where the values being checked come from, for error messages."""

    file: str
    column: str | None = None
    row_numbers: Sequence[int] | None = None  # None: position + 1
    files: Sequence[str] | None = None  # images: each row is a file

    def at(self, index: int) -> dict[str, Any]:
        """Error keywords (file, row, column) for the value at ``index``."""
        if self.files is not None:
            return {"file": self.files[index]}
        row = self.row_numbers[index] if self.row_numbers is not None else index + 1
        return {"file": self.file, "row": row, "column": self.column}

    def whole(self) -> dict[str, Any]:
        """Error keywords for the whole column."""
        return {"file": self.file, "column": None if self.files is not None else self.column}


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in chunks.

    Raises:
        UnreadableDataError: the file does not exist.
    """
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as stream:
            for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise UnreadableDataError("does not exist; check the path", file=os.fspath(path)) from None
    return digest.hexdigest()


def check_min_rows(count: int, request: Request) -> None:
    if count < request.min_rows:
        raise TooFewRowsError(f"has {count} rows, fewer than one batch of {request.min_rows}; lower the batch size "
                              f"to {count} or less, or add rows", file=request.source).about(batch_size="the batch size")


def fit_input_shape(inputs: torch.Tensor, request: Request, what: str) -> torch.Tensor:
    """``inputs`` reshaped to ``[n, *input_shape]`` (unchanged without an input_shape)."""
    if request.input_shape is None:
        return inputs
    needed = math.prod(request.input_shape)
    if math.prod(inputs.shape[1:]) != needed:
        raise ShapeMismatchError(f"{what}, but the model's input_shape {request.input_shape} needs {needed} values "
                                 "per row; pick the features that fit (DataSpec(feature_columns=...)) or check the "
                                 "model's input size", file=request.source).about(**FEATURES)
    return inputs.reshape(len(inputs), *request.input_shape)


def quoted(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


def closest(name: str, candidates: Sequence[str]) -> str | None:
    by_lowercase = {candidate.lower(): candidate for candidate in candidates}
    match = difflib.get_close_matches(name.lower(), list(by_lowercase), n=1)
    return by_lowercase[match[0]] if match else None
