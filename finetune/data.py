"""Training data for fine-tuning jobs: read a file or folder, check every value, return tensors.

:func:`load_dataset` reads

* a table: ``.csv`` (UTF-8, header row), ``.jsonl`` / ``.ndjson`` (one JSON
  object a line) or ``.parquet`` (needs ``pyarrow``);
* arrays ``x`` and ``y`` in ``.npz`` (never unpickled) or ``.safetensors``;
* a folder of images in class subfolders (``root/<class name>/*.png|jpg|jpeg``),

checks it (empty data, missing columns, values that are not finite numbers,
empty texts, labels the model can't hold, too few rows, features that don't fit
the model's input) and returns a :class:`Dataset`. Every problem raises a
:class:`hub.errors.DataError` subclass naming the file, row and column, with a
message that says what to do. Rows count from 1: data rows of a CSV (the header
not counted), line numbers of a JSONL file. Nothing here writes anything.

Limits, checked before the work they bound:

* :data:`MAX_COLUMNS` columns in a table: a CSV's are counted from its first line's
  commas before the ``csv`` module parses anything; a JSONL file's keys before its
  table is built, which also must not hold more cells (rows times keys) than the file
  has bytes, so sparse rows can't blow a small file up into a huge table;
* :data:`MAX_CSV_FIELD_CHARS` characters in one CSV value (the ``csv`` module's own
  limit, 131,072, raised to this) and :data:`MAX_COLUMN_NAME_CHARS` in a column name;
* JSON nested at most :data:`hub.limits.MAX_JSON_DEPTH` deep on a JSONL line.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hub import limits
from hub.errors import (
    ColumnNotFoundError,
    ConfigError,
    EmptyDataError,
    InvalidValueError,
    LabelError,
    ShapeMismatchError,
    TooFewRowsError,
    UnreadableDataError,
)

__all__ = ["DataSpec", "Dataset", "load_dataset", "split_dataset", "file_sha256", "check_csv_header",
           "MAX_COLUMNS", "MAX_CSV_FIELD_CHARS", "MAX_COLUMN_NAME_CHARS"]

_TASKS = ("classification", "regression", "text-classification")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SUPPORTED = "a .csv, .jsonl, .ndjson, .parquet, .npz or .safetensors file, or a folder of images in class subfolders"
_CHUNK_BYTES = 1 << 20
_MAX_CLASSES = 100_000  # a numeric label beyond this is a typo, not a class index
MAX_COLUMNS = 100_000  # columns in a table; real feature tables have a few thousand at most
MAX_CSV_FIELD_CHARS = 16 * 1024 * 1024  # characters in one CSV value (a long text); the csv module's default is 131,072
MAX_COLUMN_NAME_CHARS = 1_024  # characters in a column name; a longer one is a data row or an unclosed quote
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}


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
class _Request:
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
class _Table:
    """A table as columns of raw values (strings from CSV, JSON values, Arrow values)."""

    source: str
    columns: dict[str, Sequence[Any]]
    row_numbers: Sequence[int] | None  # each row's number in the file; None: position + 1
    sha256: str

    def where(self, column: str | None) -> _Where:
        return _Where(self.source, column, self.row_numbers)


@dataclass(frozen=True)
class _Arrays:
    """Arrays ``x`` (features) and ``y`` (labels or targets) from an .npz or .safetensors file."""

    x: torch.Tensor
    y: torch.Tensor | np.ndarray  # a numpy array only for string labels
    sha256: str


@dataclass(frozen=True)
class _Where:
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


# --- public functions -------------------------------------------------------


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
    request = _Request(source, _checked_task(task), spec, _checked_input_shape(input_shape),
                       tuple(label_names) if label_names is not None else None, num_labels, min_rows,
                       (float(pixel_range[0]), float(pixel_range[1])))
    location = Path(source)
    if not location.exists():
        raise UnreadableDataError(f"does not exist; check the path (relative paths start at {os.getcwd()})", file=source)
    if location.is_dir():
        return _dataset_from_image_folder(location, request)
    suffix = location.suffix.lower()
    if suffix in _TABLE_READERS:
        return _dataset_from_table(_TABLE_READERS[suffix](location, source), request)
    if suffix in _ARRAY_READERS:
        return _dataset_from_arrays(_ARRAY_READERS[suffix](location, source), request)
    raise UnreadableDataError(f"can't read {suffix or 'suffix-less'} files; use {_SUPPORTED}", file=source)


def split_dataset(
    dataset: Dataset, *, fraction: float = 0.2, seed: int = 0, stratify: bool = True
) -> tuple[Dataset, Dataset]:
    """Hold out a validation set, the same way every time for the same seed.

    Classification data is stratified: each class gives about ``fraction`` of its rows
    (within one row), and every class with two or more rows gives at least one.

    Args:
        dataset: the rows to split.
        fraction: the share of rows for validation, between 0 and 1.
        seed: seeds the ``torch.Generator`` that picks the rows.
        stratify: split each class separately (classification only); False: one random draw.

    Returns:
        ``(train, validation)``, each with its rows in the original order.

    Raises:
        ConfigError: fraction is not between 0 and 1.
        TooFewRowsError: the training or validation part would be empty.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"fraction must be between 0 and 1 (exclusive), not {fraction!r}; 0.2 holds out a fifth of the rows")
    generator = torch.Generator().manual_seed(seed)
    if stratify and dataset.label_names is not None:
        train, validation = _stratified_positions(dataset.targets, fraction, generator)
    else:
        train, validation = _random_positions(len(dataset), fraction, generator)
    if len(train) == 0 or len(validation) == 0:
        raise TooFewRowsError(
            f"can't split {len(dataset)} rows into training and validation rows with fraction={fraction} "
            "(one part would be empty, and a class needs two rows to give one to validation); "
            "add rows or pass a separate validation file", file=dataset.source)
    return dataset.subset(train.sort().values), dataset.subset(validation.sort().values)


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
    if location.is_dir():
        lines = [_hash_line(location, image, image.read_bytes()) for images in _class_images(location).values()
                 for image in images]
        return _lines_sha256(lines)
    digest = hashlib.sha256()
    try:
        with location.open("rb") as stream:
            for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise UnreadableDataError("does not exist; check the path", file=os.fspath(path)) from None
    return digest.hexdigest()


# --- arguments --------------------------------------------------------------


def _checked_task(task: str) -> str:
    if task in _TASKS:
        return task
    match = difflib.get_close_matches(str(task), _TASKS, n=1)
    hint = f" (did you mean {match[0]!r}?)" if match else ""
    raise ConfigError(f"unknown task {task!r}{hint}; use one of {_quoted(_TASKS)}")


def _checked_input_shape(input_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if input_shape is None:
        return None
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ConfigError(f"input_shape must be a tuple of positive whole numbers, e.g. (64,) or (1, 8, 8); got {input_shape!r}")
    return shape


# --- tables -----------------------------------------------------------------


def _csv_reader(text: str) -> Any:
    """A ``csv.reader`` over ``text`` that takes values of up to :data:`MAX_CSV_FIELD_CHARS` characters.

    The limit is the csv module's (one for the whole process), so it is set before every read.
    """
    csv.field_size_limit(MAX_CSV_FIELD_CHARS)
    return csv.reader(io.StringIO(text, newline=""))


def check_csv_header(path: str | os.PathLike[str]) -> None:
    """Refuse a CSV file whose header names more than :data:`MAX_COLUMNS` columns, reading no more
    of it than that takes: its first line, or the first :data:`MAX_COLUMNS` commas of it.

    :func:`load_dataset` does this before anything else; a preview of the file can do it too.

    Raises:
        UnreadableDataError: too many columns.
    """
    with open(path, "rb") as stream:
        _check_header_width(stream, os.fspath(path))


def _read_csv(location: Path, source: str) -> _Table:
    check_csv_header(location)
    data = location.read_bytes()
    reader = _csv_reader(_decoded(data, source, csv_rows=True))
    try:
        header = [name.strip() for name in next((record for record in reader if record), [])]
    except csv.Error as error:
        raise _csv_error(error, reader, source) from None
    if not header:
        raise EmptyDataError("is empty; a CSV file needs a header row of column names and at least one data row", file=source)
    _check_header(header, source)
    rows, row_numbers = _csv_rows(reader, len(header), source)
    if not rows:
        raise EmptyDataError("has a header but no data rows; add rows below the header", file=source)
    return _Table(source, dict(zip(header, zip(*rows))), row_numbers, hashlib.sha256(data).hexdigest())


def _check_header_width(stream: Any, source: str) -> None:
    """Refuse a header of more than :data:`MAX_COLUMNS` columns before anything parses it.

    The commas on the first non-blank line bound its columns from above (a quoted name
    may hold a comma); they are counted in C, a chunk at a time, until the line ends or
    there are too many. A header with a quoted line break is counted again, exactly, once
    parsed (:func:`_check_header`).
    """
    columns, started = 1, False
    while chunk := stream.read(_CHUNK_BYTES):
        if not started:
            chunk = chunk.lstrip(b"\r\n")  # blank lines before the header
            started = bool(chunk)
        end = chunk.find(b"\n")
        columns += chunk.count(b",", 0, len(chunk) if end == -1 else end)
        if columns > MAX_COLUMNS:
            raise UnreadableDataError(_too_many_columns(columns, "its header names at least"), file=source)
        if end != -1:
            return


def _too_many_columns(count: int, what: str) -> str:
    return (f"{what} {count:,} columns, more than the {MAX_COLUMNS:,} a table may have; keep the columns the model "
            "reads (is the first line really a header of column names?)")


def _csv_error(error: csv.Error, reader: Any, source: str) -> UnreadableDataError:
    if "field larger than field limit" in str(error):
        return UnreadableDataError(f"a value ending near line {reader.line_num} is longer than {MAX_CSV_FIELD_CHARS:,} "
                                   "characters, the most a CSV value may hold; look for a quote (\") that opens a value "
                                   "but never closes it", file=source)
    return UnreadableDataError(f"is not valid CSV near line {reader.line_num} ({error}); fix the file", file=source)


def _check_header(header: list[str], source: str) -> None:
    """At most :data:`MAX_COLUMNS` columns, names of at most :data:`MAX_COLUMN_NAME_CHARS` characters, each once."""
    if len(header) > MAX_COLUMNS:
        raise UnreadableDataError(_too_many_columns(len(header), "its header names"), file=source)
    seen: set[str] = set()
    for position, name in enumerate(header, start=1):
        if len(name) > MAX_COLUMN_NAME_CHARS:
            raise UnreadableDataError(
                f"the header's column {position} is a name of {len(name):,} characters, more than the "
                f"{MAX_COLUMN_NAME_CHARS:,} a column name may have ({name[:40]!r}...); the first line must be a "
                "header of short column names (look for a quote that is opened but never closed)", file=source)
        if name in seen:
            raise UnreadableDataError(f"the header names column {name!r} twice; give every column its own name", file=source)
        seen.add(name)


def _csv_rows(reader: Any, width: int, source: str) -> tuple[list[list[str]], list[int]]:
    """Data records (blank lines skipped but counted) and their row numbers."""
    rows, row_numbers = [], []
    try:
        for number, record in enumerate(reader, start=1):
            if not record:
                continue
            if len(record) != width:
                raise UnreadableDataError(
                    f"has {len(record)} values but the header has {width} columns; fix the row "
                    "(a comma inside a value needs quotes)", file=source, row=number)
            rows.append(record)
            row_numbers.append(number)
    except csv.Error as error:
        raise _csv_error(error, reader, source) from None
    return rows, row_numbers


def _decoded(data: bytes, source: str, *, csv_rows: bool) -> str:
    """``data`` as UTF-8 text (a BOM dropped); a bad byte raises naming its line and row."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start].decode("utf-8-sig")
        line = before.count("\n") + 1
        row = _csv_records_in(before) - 1 if csv_rows else line  # the header is not a data row
        hint = " (spreadsheets call it 'CSV UTF-8')" if csv_rows else ""
        raise UnreadableDataError(f"byte 0x{data[error.start]:02x} on line {line} is not UTF-8; save the file as UTF-8{hint}",
                                  file=source, row=row or None) from None


def _csv_records_in(text: str) -> int:
    """How many CSV records ``text`` starts, counting the one it ends inside."""
    try:
        return sum(1 for _ in _csv_reader(text + "x"))
    except csv.Error:
        return 0


def _read_jsonl(location: Path, source: str) -> _Table:
    data = location.read_bytes()
    records, row_numbers = [], []
    for number, line in enumerate(_decoded(data, source, csv_rows=False).split("\n"), start=1):
        if line.strip():
            records.append(_json_object(line, source, number))
            row_numbers.append(number)
    if not records:
        raise EmptyDataError("holds no rows; write one JSON object per line, e.g. {\"text\": \"...\", \"label\": \"positive\"}", file=source)
    names = dict.fromkeys(key for record in records for key in record)
    _check_jsonl_width(len(names), len(records), len(data), source)
    columns = {name: [record.get(name) for record in records] for name in names}
    return _Table(source, columns, row_numbers, hashlib.sha256(data).hexdigest())


def _check_jsonl_width(columns: int, rows: int, size: int, source: str) -> None:
    """Refuse more than :data:`MAX_COLUMNS` keys, or a table of more cells than the file has bytes
    (rows that each name keys of their own), before the table is built."""
    if columns > MAX_COLUMNS:
        raise UnreadableDataError(_too_many_columns(columns, "its rows name"), file=source)
    if columns * rows > size:
        raise UnreadableDataError(f"its {rows:,} rows name {columns:,} different keys between them, a table of "
                                  f"{columns * rows:,} cells from {size:,} bytes; give every row the same keys",
                                  file=source)


def _json_object(line: str, source: str, number: int) -> dict[str, Any]:
    try:
        record = limits.loads(line)
    except limits.JSONTooDeepError:
        raise UnreadableDataError(f"nests arrays or objects more than {limits.MAX_JSON_DEPTH} deep; a row is one "
                                  "JSON object of values, e.g. {\"text\": \"...\", \"label\": \"positive\"}",
                                  file=source, row=number) from None
    except json.JSONDecodeError as error:
        raise UnreadableDataError(f"is not valid JSON ({error.msg} at character {error.colno}); "
                                  "write one JSON object per line", file=source, row=number) from None
    if not isinstance(record, dict):
        kind = _JSON_TYPES.get(type(record), type(record).__name__)
        raise UnreadableDataError(f"holds {kind}, not a JSON object; write one object per line, "
                                  "e.g. {\"text\": \"...\", \"label\": \"positive\"}", file=source, row=number)
    return record


def _read_parquet(location: Path, source: str) -> _Table:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise UnreadableDataError("reading .parquet files needs pyarrow: pip install 'modelhub[parquet]'", file=source) from None
    try:
        table = parquet.read_table(location)
    except (OSError, ValueError) as error:
        raise UnreadableDataError(f"is not a readable Parquet file ({error}); check the file or export it again", file=source) from None
    if table.num_rows == 0:
        raise EmptyDataError("holds no rows; add rows to the table", file=source)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    return _Table(source, columns, None, file_sha256(location))


_TABLE_READERS = {".csv": _read_csv, ".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".parquet": _read_parquet}


def _dataset_from_table(table: _Table, request: _Request) -> Dataset:
    label_column = request.spec.label_column
    _require_column(table, label_column, "label_column")
    if request.task == "text-classification":
        text_column = request.spec.text_column or "text"
        _require_column(table, text_column, "text_column")
        inputs: torch.Tensor | tuple[str, ...] = _texts(table, text_column)
        feature_names: tuple[str, ...] = (text_column,)
    else:
        feature_names = _feature_names(table, request.spec)
        inputs = torch.stack([_numeric_column(table, name) for name in feature_names], dim=1)
    if request.is_classification:
        targets, label_names = _class_indices(table.columns[label_column], table.where(label_column), request)
    else:
        targets, label_names = _numeric_column(table, label_column), None
    _check_min_rows(len(targets), request)
    if isinstance(inputs, torch.Tensor):
        inputs = _fit_input_shape(inputs, request, f"the table has {len(feature_names)} feature columns")
    return Dataset(inputs, targets, label_names, request.source, table.sha256, feature_names)


def _feature_names(table: _Table, spec: DataSpec) -> tuple[str, ...]:
    if spec.feature_columns is None:
        names = tuple(name for name in table.columns if name not in (spec.label_column, spec.text_column))
    else:
        if isinstance(spec.feature_columns, str):
            raise ConfigError(f"feature_columns must be a tuple of column names, e.g. ({spec.feature_columns!r},)").about(
                "feature_columns")
        names = tuple(spec.feature_columns)
        if spec.label_column in names:
            raise ConfigError(f"feature_columns includes the label column {spec.label_column!r}; leave it out").about(
                "feature_columns")
        for name in names:
            _require_column(table, name, "feature_columns")
    if not names:
        raise ColumnNotFoundError(f"has no feature columns besides {spec.label_column!r}; add feature columns "
                                  "or name them in DataSpec(feature_columns=...)", file=table.source).about(**_FEATURES)
    return names


def _require_column(table: _Table, name: str, setting: str) -> None:
    if name in table.columns:
        return
    existing = list(table.columns)
    match = _closest(name, existing)
    hint = f" (did you mean {match!r}?)" if match else ""
    raise ColumnNotFoundError(f"there is no such column{hint}; the columns are {_quoted(existing)}. "
                              f"Rename the column or set DataSpec({setting}=...)", file=table.source, column=name).about(
        **{setting: f"DataSpec({setting}=...)"})


def _closest(name: str, candidates: Sequence[str]) -> str | None:
    by_lowercase = {candidate.lower(): candidate for candidate in candidates}
    match = difflib.get_close_matches(name.lower(), list(by_lowercase), n=1)
    return by_lowercase[match[0]] if match else None


def _numeric_column(table: _Table, name: str) -> torch.Tensor:
    """One column as float32; a value that isn't a finite number raises naming its row."""
    values = table.columns[name]
    where = table.where(name)
    try:
        column = torch.from_numpy(np.asarray(values, dtype=np.float32))  # parses text in C
    except (TypeError, ValueError, OverflowError):
        column = None
    if column is None or column.dim() != 1:
        column = _numeric_column_slowly(values, where)
    _check_finite(column, values, where)
    return column


def _numeric_column_slowly(values: Sequence[Any], where: _Where) -> torch.Tensor:
    """Value by value, to name the first row that is not a number."""
    try:
        return torch.tensor([float(value) for value in values], dtype=torch.float32)
    except (TypeError, ValueError, OverflowError):
        index = next(i for i, value in enumerate(values) if not _is_float(value))
        raise InvalidValueError(_not_a_number(values[index]), **where.at(index)).about(**_FEATURES) from None


def _is_float(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


_FEATURES = {"feature_columns": "DataSpec(feature_columns=...)"}  # how messages here name the setting (HubError.about)


def _not_a_number(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "the value is missing; fill it in or drop the row"
    return f"{value!r} is not a number; fix the value, or leave the column out of DataSpec(feature_columns=...)"


def _check_finite(column: torch.Tensor, values: Sequence[Any], where: _Where) -> None:
    finite = torch.isfinite(column)
    if bool(finite.all()):
        return
    index = int((~finite).nonzero()[0])
    if not _is_float(values[index]):  # numpy reads a missing value (None) as NaN
        raise InvalidValueError(_not_a_number(values[index]), **where.at(index)).about(**_FEATURES)
    number = float(values[index])
    problem = "is NaN" if math.isnan(number) else "is infinite" if math.isinf(number) else "is too large for float32"
    raise InvalidValueError(f"the value {values[index]!r} {problem}; replace it with a finite number or drop the row",
                            **where.at(index))


def _texts(table: _Table, name: str) -> tuple[str, ...]:
    values = table.columns[name]
    for index, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidValueError("the text is missing or empty; fill it in or drop the row", **table.where(name).at(index))
        if not isinstance(value, str):
            raise InvalidValueError(f"{value!r} is not text; texts must be strings", **table.where(name).at(index))
    return tuple(values)


# --- labels -----------------------------------------------------------------


def _class_indices(labels: Sequence[Any], where: _Where, request: _Request, *, names_only: bool = False
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


def _numeric_labels(labels: Sequence[Any], where: _Where, label_names: tuple[str, ...] | None
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
                         f"({_quoted(label_names)}), so labels must be 0..{len(label_names) - 1}; fix the label "
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


def _named_labels(labels: Sequence[Any], where: _Where, label_names: tuple[str, ...] | None
                  ) -> tuple[torch.Tensor, tuple[str, ...]]:
    names_of_rows = [label.strip() if isinstance(label, str) else str(label) for label in labels]
    names = label_names if label_names is not None else tuple(sorted(set(names_of_rows)))
    position = {name: index for index, name in enumerate(names)}
    unknown = next((i for i, name in enumerate(names_of_rows) if name not in position), None)
    if unknown is not None:
        raise LabelError(f"label {names_of_rows[unknown]!r} is not one of the {len(names)} known labels "
                         f"({_quoted(names)}); fix the label, or train a new output head for the new class",
                         **where.at(unknown))
    return torch.tensor([position[name] for name in names_of_rows], dtype=torch.long), names


def _check_two_classes(indices: torch.Tensor, names: tuple[str, ...], where: _Where) -> None:
    present = torch.unique(indices)
    if len(present) < 2:
        raise LabelError(f"every row has the label {names[int(present[0])]!r}; a classifier needs at least two classes, "
                         "so add rows of another class", **where.whole())


def _check_head_size(indices: torch.Tensor, names: tuple[str, ...], where: _Where, num_labels: int) -> None:
    outside = (indices >= num_labels).nonzero()
    if len(outside):
        index = int(outside[0])
        position = int(indices[index])
        raise LabelError(f"label {names[position]!r} is class {position}, but the model's output head has "
                         f"{num_labels} classes (0..{num_labels - 1}); fix the label, or fine-tune with a new "
                         f"output head for {len(names)} classes", **where.at(index))


# --- arrays -----------------------------------------------------------------


def _read_npz(location: Path, source: str) -> _Arrays:
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
    return _Arrays(_feature_tensor(x, source), _label_array(y, source), file_sha256(location))


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


def _read_safetensors(location: Path, source: str) -> _Arrays:
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
    return _Arrays(x.to(torch.float32), y if y.is_floating_point() else y.to(torch.int64), file_sha256(location))


_ARRAY_READERS = {".npz": _read_npz, ".safetensors": _read_safetensors}


def _require_arrays(names: Sequence[str], source: str) -> None:
    for name in ("x", "y"):
        if name not in names:
            match = _closest(name, [n for n in names if n not in ("x", "y")])
            hint = f" (did you mean {match!r}?)" if match else ""
            raise ColumnNotFoundError(f"there is no array {name!r}{hint}; the file holds {_quoted(sorted(names)) or 'nothing'}. "
                                      "Save the features as 'x' and the labels or targets as 'y'",
                                      file=source, column=name)


def _dataset_from_arrays(arrays: _Arrays, request: _Request) -> Dataset:
    if request.task == "text-classification":
        raise UnreadableDataError("text tasks read texts from a table; use a .csv, .jsonl or .parquet file "
                                  "with a text column", file=request.source)
    x = _rows_of(arrays.x, request.source)
    if arrays.y.ndim == 0 or len(arrays.y) != len(x):
        raise ShapeMismatchError(f"x has {len(x)} rows but y has shape {tuple(arrays.y.shape)}; give one label "
                                 "or target per row of x", file=request.source, column="y")
    _check_finite_rows(x, _Where(request.source, "x"))
    targets, label_names = _array_targets(arrays.y, request)
    _check_min_rows(len(targets), request)
    shape = tuple(x.shape[1:])
    inputs = _fit_input_shape(x, request, f"each sample of x has shape {shape}, {math.prod(shape)} values")
    return Dataset(inputs, targets, label_names, request.source, arrays.sha256)


def _rows_of(x: torch.Tensor, source: str) -> torch.Tensor:
    if x.ndim == 0 or len(x) == 0:
        raise EmptyDataError("x holds no rows; save at least one sample", file=source, column="x")
    return x.reshape(-1, 1) if x.ndim == 1 else x


def _check_finite_rows(values: torch.Tensor, where: _Where) -> None:
    finite_rows = torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
    if not bool(finite_rows.all()):
        index = int((~finite_rows).nonzero()[0])
        raise InvalidValueError("holds a NaN or infinite value; replace it with a finite number or drop the row",
                                **where.at(index))


def _array_targets(y: torch.Tensor | np.ndarray, request: _Request) -> tuple[torch.Tensor, tuple[str, ...] | None]:
    where = _Where(request.source, "y")
    if request.is_classification:
        if y.ndim != 1:
            raise ShapeMismatchError(f"y has shape {tuple(y.shape)}; class labels must be one per row, shape [n]",
                                     file=request.source, column="y")
        return _class_indices(y.tolist(), where, request)
    if isinstance(y, np.ndarray) or y.ndim > 2:
        raise InvalidValueError("regression targets must be numbers of shape [n] or [n, k]", **where.whole())
    targets = y.to(torch.float32)
    _check_finite_rows(targets, where)
    return targets, None


# --- image folders ----------------------------------------------------------


def _dataset_from_image_folder(root: Path, request: _Request) -> Dataset:
    if request.task != "classification":
        raise UnreadableDataError(f"an image folder holds classes, so it can be read only for task='classification', "
                                  f"not {request.task!r}", file=request.source)
    classes = _class_images(root)
    _check_image_classes(classes, request.source)
    files = [image for images in classes.values() for image in images]
    labels = [name for name, images in classes.items() for _ in images]
    where = _Where(request.source, files=[str(file) for file in files])
    targets, label_names = _class_indices(labels, where, request, names_only=True)
    _check_min_rows(len(files), request)
    pixels, sha256 = _read_images(root, files, _image_shape(request))
    low, high = request.pixel_range
    if (low, high) != (0.0, 1.0):
        pixels = pixels.mul_(high - low).add_(low)
    return Dataset(pixels, targets, label_names, request.source, sha256)


def _class_images(root: Path) -> dict[str, list[Path]]:
    """Image files by class folder name, both sorted; hidden entries and other files left out."""
    folders = sorted(entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    return {
        folder.name: sorted(
            entry for entry in folder.iterdir()
            if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in _IMAGE_SUFFIXES
        )
        for folder in folders
    }


def _check_image_classes(classes: dict[str, list[Path]], source: str) -> None:
    if not classes:
        raise EmptyDataError("holds no class folders; put the images in one subfolder per class, "
                             "e.g. cats/001.png and dogs/001.png", file=source)
    for name, images in classes.items():
        if not images:
            raise EmptyDataError(f"class folder {name!r} holds no .png, .jpg or .jpeg images; add images "
                                 "or remove the folder", file=source)


def _image_shape(request: _Request) -> tuple[int, int, int]:
    shape = request.input_shape
    if shape is None or len(shape) != 3 or shape[0] not in (1, 3):
        raise ShapeMismatchError(f"images need input_shape=(channels, height, width) with 1 (grey) or 3 (RGB) channels, "
                                 f"e.g. (1, 8, 8); got {shape!r}", file=request.source)
    return shape  # type: ignore[return-value]


def _read_images(root: Path, files: Sequence[Path], shape: tuple[int, int, int]) -> tuple[torch.Tensor, str]:
    """Images as float32 ``[n, C, H, W]`` in [0, 1], and the folder's sha256."""
    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    arrays, lines = [], []
    for file in files:
        data = file.read_bytes()
        lines.append(_hash_line(root, file, data))
        arrays.append(_decoded_image(data, file, mode, (width, height)))
    pixels = torch.from_numpy(np.stack(arrays)).to(torch.float32).div_(255)
    pixels = pixels.unsqueeze(1) if mode == "L" else pixels.permute(0, 3, 1, 2).contiguous()
    return pixels, _lines_sha256(lines)


def _decoded_image(data: bytes, file: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            resized = image.convert(mode).resize(size, Image.Resampling.BILINEAR)
    except UnidentifiedImageError:
        raise UnreadableDataError("is not a readable image (Pillow does not recognise its contents); replace or "
                                  "remove the file", file=file) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnreadableDataError(f"is not a readable image ({error}); replace or remove the file", file=file) from None
    return np.asarray(resized, dtype=np.uint8)


def _hash_line(root: Path, file: Path, data: bytes) -> str:
    return f"{file.relative_to(root).as_posix()}\0{hashlib.sha256(data).hexdigest()}\n"


def _lines_sha256(lines: list[str]) -> str:
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


# --- checks shared by every format ------------------------------------------


def _check_min_rows(count: int, request: _Request) -> None:
    if count < request.min_rows:
        raise TooFewRowsError(f"has {count} rows, fewer than one batch of {request.min_rows}; lower the batch size "
                              f"to {count} or less, or add rows", file=request.source).about(batch_size="the batch size")


def _fit_input_shape(inputs: torch.Tensor, request: _Request, what: str) -> torch.Tensor:
    """``inputs`` reshaped to ``[n, *input_shape]`` (unchanged without an input_shape)."""
    if request.input_shape is None:
        return inputs
    needed = math.prod(request.input_shape)
    if math.prod(inputs.shape[1:]) != needed:
        raise ShapeMismatchError(f"{what}, but the model's input_shape {request.input_shape} needs {needed} values "
                                 "per row; pick the features that fit (DataSpec(feature_columns=...)) or check the "
                                 "model's input size", file=request.source).about(**_FEATURES)
    return inputs.reshape(len(inputs), *request.input_shape)


def _quoted(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


# --- splitting --------------------------------------------------------------


def _random_positions(count: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(count, generator=generator)
    held_out = _held_out(count, fraction)
    return order[held_out:], order[:held_out]


def _stratified_positions(targets: torch.Tensor, fraction: float, generator: torch.Generator
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    train, validation = [torch.empty(0, dtype=torch.long)], [torch.empty(0, dtype=torch.long)]
    for label in torch.unique(targets):
        rows = (targets == label).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)]
        held_out = _held_out(len(rows), fraction)
        train.append(rows[held_out:])
        validation.append(rows[:held_out])
    return torch.cat(train), torch.cat(validation)


def _held_out(count: int, fraction: float) -> int:
    """Rows to hold out of ``count``: about ``fraction``, at least one, never all (none of fewer than two)."""
    if count < 2:
        return 0
    return min(max(round(fraction * count), 1), count - 1)
