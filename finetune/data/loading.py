"""Reading training data of any kind: :func:`load_dataset` picks the reader by what the path is
(a folder of images, or a file by its suffix) and checks what it was asked for; :func:`file_sha256`
names the data a job read.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

from finetune.config import TASKS
from finetune.data.arrays import ARRAY_READERS, dataset_from_arrays
from finetune.data.common import DataSpec, Dataset, Request, quoted, sha256_of_file
from finetune.data.images import dataset_from_image_folder, folder_sha256
from finetune.data.tables import TABLE_READERS, dataset_from_table
from hub.errors import ConfigError, UnreadableDataError

__all__ = ["load_dataset", "file_sha256"]

# What the data can be read for: the fine-tuning tasks but "continue", which reads the base's own task's data.
_TASKS = tuple(task for task in TASKS if task != "continue")
_SUPPORTED = "a .csv, .jsonl, .ndjson, .parquet, .npz or .safetensors file, or a folder of images in class subfolders"


def load_dataset(
    path: str | os.PathLike[str],
    *,
    task: str,
    spec: DataSpec = DataSpec(),
    input_shape: tuple[int, ...] | None = None,
    label_names: Sequence[str] | None = None,
    num_labels: int | None = None,
    min_rows: int = 1,
    pixel_range: tuple[float, float] = (0.0, 1.0),
) -> Dataset:
    """Read a data file or image folder and check it for training.

    Args:
        path: a .csv, .jsonl, .ndjson, .parquet, .npz or .safetensors file, or a folder of
            images in class subfolders (format by suffix, case-insensitive).
        task: ``"classification"``, ``"regression"`` or ``"text-classification"``.
        spec: which table columns hold the label, the text and the features.
        input_shape: the per-sample shape the model takes, e.g. ``(64,)`` or ``(1, 8, 8)``;
            inputs are reshaped to ``[n, *input_shape]``. Required for image folders
            (channels 1 or 3, height, width). Ignored for text tasks.
        label_names: a fixed class mapping (the base model's, or the training set's when
            reading a validation file); labels outside it are refused. None: taken from the data.
        num_labels: the size of an output head that is kept; class indices must be below it.
        min_rows: the fewest rows accepted (the batch size).
        pixel_range: for an image folder, the values a black and a white pixel become: the
            range the model was trained on (the base's recorded input range, e.g. ``(0, 16)``).

    Returns:
        The checked :class:`Dataset`.

    Raises:
        ConfigError: unknown task or malformed input_shape.
        UnreadableDataError: missing path, unsupported format, bad encoding, invalid JSON, broken image.
        EmptyDataError: no data rows.
        ColumnNotFoundError: a column the task needs is missing (the closest match is named).
        InvalidValueError: a missing, non-numeric, NaN or infinite value, or an empty text.
        LabelError: a label the class mapping or output head can't hold, or a single class.
        TooFewRowsError: fewer rows than ``min_rows``.
        ShapeMismatchError: the features don't fit ``input_shape``.
    """
    source = os.fspath(path)
    request = Request(source, _checked_task(task), spec, _checked_input_shape(input_shape),
                       tuple(label_names) if label_names is not None else None, num_labels, min_rows,
                       (float(pixel_range[0]), float(pixel_range[1])))
    location = Path(source)
    if not location.exists():
        raise UnreadableDataError(f"does not exist; check the path (relative paths start at {os.getcwd()})", file=source)
    if location.is_dir():
        return dataset_from_image_folder(location, request)
    suffix = location.suffix.lower()
    if suffix in TABLE_READERS:
        return dataset_from_table(TABLE_READERS[suffix](location, source), request)
    if suffix in ARRAY_READERS:
        return dataset_from_arrays(ARRAY_READERS[suffix](location, source), request)
    raise UnreadableDataError(f"can't read {suffix or 'suffix-less'} files; use {_SUPPORTED}", file=source)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in chunks.

    For an image folder: the sha256 over sorted ``"relpath\\0filesha\\n"`` lines of the
    images :func:`load_dataset` reads (relpath with ``/``; other files don't count).

    Args:
        path: a file or an image folder.

    Returns:
        The hex digest.

    Raises:
        UnreadableDataError: the path does not exist.
    """
    location = Path(path)
    return folder_sha256(location) if location.is_dir() else sha256_of_file(path)


def _checked_task(task: str) -> str:
    if task in _TASKS:
        return task
    match = difflib.get_close_matches(str(task), _TASKS, n=1)
    hint = f" (did you mean {match[0]!r}?)" if match else ""
    raise ConfigError(f"unknown task {task!r}{hint}; use one of {quoted(_TASKS)}")


def _checked_input_shape(input_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if input_shape is None:
        return None
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ConfigError(f"input_shape must be a tuple of positive whole numbers, e.g. (64,) or (1, 8, 8); got {input_shape!r}")
    return shape
