"""Arrays: ``x`` (features) and ``y`` (labels or targets) in ``.npz`` (never unpickled) or ``.safetensors``."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetune.data.common import Dataset, Request, Where, check_min_rows, closest, fit_input_shape, quoted, sha256_of_file
from finetune.data.labels import class_indices
from hub.errors import ColumnNotFoundError, EmptyDataError, InvalidValueError, ShapeMismatchError, UnreadableDataError

__all__ = ["ARRAY_READERS", "Arrays", "dataset_from_arrays"]


@dataclass(frozen=True)
class Arrays:
    """Arrays ``x`` (features) and ``y`` (labels or targets) from an .npz or .safetensors file."""

    x: torch.Tensor
    y: torch.Tensor | np.ndarray  # a numpy array only for string labels
    sha256: str


def _read_npz(location: Path, source: str) -> Arrays:
    try:
        archive = np.load(location, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UnreadableDataError(f"is not a readable .npz archive ({error}); save it with "
                                  "numpy.savez(path, x=features, y=labels)", file=source) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UnreadableDataError("holds a single array, not an .npz archive; save it with "
                                  "numpy.savez(path, x=features, y=labels)", file=source)
    with archive:
        _require_arrays(archive.files, source)
        x, y = (_npz_array(archive, name, source) for name in ("x", "y"))
    return Arrays(_feature_tensor(x, source), _label_array(y, source), sha256_of_file(location))


def _npz_array(archive: Any, name: str, source: str) -> np.ndarray:
    try:
        return archive[name]
    except ValueError:
        raise UnreadableDataError(f"array {name!r} holds Python objects, which load only by unpickling (never done here, "
                                  "as it can run code); save it as numbers or strings, e.g. y.astype(str)",
                                  file=source, column=name) from None


def _feature_tensor(x: np.ndarray, source: str) -> torch.Tensor:
    if x.dtype.kind not in "biuf":
        raise InvalidValueError(f"x holds {x.dtype} values; features must be numbers", file=source, column="x")
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


def _label_array(y: np.ndarray, source: str) -> torch.Tensor | np.ndarray:
    if y.dtype.kind in "US":
        return y.astype(str)
    if y.dtype.kind in "biu":
        return torch.from_numpy(y.astype(np.int64))
    if y.dtype.kind == "f":
        return torch.from_numpy(y.astype(np.float64))
    raise InvalidValueError(f"y holds {y.dtype} values; use numbers or strings", file=source, column="y")


def _read_safetensors(location: Path, source: str) -> Arrays:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(location)
    except (SafetensorError, OSError, ValueError) as error:
        raise UnreadableDataError(f"is not a readable safetensors file ({error}); save it with "
                                  "safetensors.torch.save_file({'x': features, 'y': labels}, path)", file=source) from None
    _require_arrays(list(tensors), source)
    x, y = tensors["x"], tensors["y"]
    for name, tensor in (("x", x), ("y", y)):
        if tensor.is_complex():
            raise InvalidValueError(f"{name} holds complex numbers; use real numbers", file=source, column=name)
    return Arrays(x.to(torch.float32), y if y.is_floating_point() else y.to(torch.int64), sha256_of_file(location))


ARRAY_READERS = {".npz": _read_npz, ".safetensors": _read_safetensors}


def _require_arrays(names: Sequence[str], source: str) -> None:
    for name in ("x", "y"):
        if name not in names:
            match = closest(name, [n for n in names if n not in ("x", "y")])
            hint = f" (did you mean {match!r}?)" if match else ""
            raise ColumnNotFoundError(f"there is no array {name!r}{hint}; the file holds {quoted(sorted(names)) or 'nothing'}. "
                                      "Save the features as 'x' and the labels or targets as 'y'",
                                      file=source, column=name)


def dataset_from_arrays(arrays: Arrays, request: Request) -> Dataset:
    if request.task == "text-classification":
        raise UnreadableDataError("text tasks read texts from a table; use a .csv, .jsonl or .parquet file "
                                  "with a text column", file=request.source)
    x = _rows_of(arrays.x, request.source)
    if arrays.y.ndim == 0 or len(arrays.y) != len(x):
        raise ShapeMismatchError(f"x has {len(x)} rows but y has shape {tuple(arrays.y.shape)}; give one label "
                                 "or target per row of x", file=request.source, column="y")
    _check_finite_rows(x, Where(request.source, "x"))
    targets, label_names = _array_targets(arrays.y, request)
    check_min_rows(len(targets), request)
    shape = tuple(x.shape[1:])
    inputs = fit_input_shape(x, request, f"each sample of x has shape {shape}, {math.prod(shape)} values")
    return Dataset(inputs, targets, label_names, request.source, arrays.sha256)


def _rows_of(x: torch.Tensor, source: str) -> torch.Tensor:
    if x.ndim == 0 or len(x) == 0:
        raise EmptyDataError("x holds no rows; save at least one sample", file=source, column="x")
    return x.reshape(-1, 1) if x.ndim == 1 else x


def _check_finite_rows(values: torch.Tensor, where: Where) -> None:
    finite_rows = torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
    if not bool(finite_rows.all()):
        index = int((~finite_rows).nonzero()[0])
        raise InvalidValueError("holds a NaN or infinite value; replace it with a finite number or drop the row",
                                **where.at(index))


def _array_targets(y: torch.Tensor | np.ndarray, request: Request) -> tuple[torch.Tensor, tuple[str, ...] | None]:
    where = Where(request.source, "y")
    if request.is_classification:
        if y.ndim != 1:
            raise ShapeMismatchError(f"y has shape {tuple(y.shape)}; class labels must be one per row, shape [n]",
                                     file=request.source, column="y")
        return class_indices(y.tolist(), where, request)
    if isinstance(y, np.ndarray) or y.ndim > 2:
        raise InvalidValueError("regression targets must be numbers of shape [n] or [n, k]", **where.whole())
    targets = y.to(torch.float32)
    _check_finite_rows(targets, where)
    return targets, None
