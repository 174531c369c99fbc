"""Tables: ``.csv`` (UTF-8, a header row), ``.jsonl`` / ``.ndjson`` (one JSON object a line) and
``.parquet`` (needs ``pyarrow``), read into columns, then into features (or texts) and labels.

Limits, checked before the work they bound:

* :data:`MAX_COLUMNS` columns in a table: a CSV's are counted from its first line's
  commas before the ``csv`` module parses anything; a JSONL file's keys before its
  table is built, which also must not hold more cells (rows times keys) than the file
  has bytes, so sparse rows can't blow a small file up into a huge table;
* :data:`MAX_CSV_FIELD_CHARS` characters in one CSV value (the ``csv`` module's own
  limit, 131,072, raised to this) and :data:`MAX_COLUMN_NAME_CHARS` in a column name;
* JSON nested at most :data:`hub.limits.MAX_JSON_DEPTH` deep on a JSONL line.

Rows count from 1: data rows of a CSV (the header not counted), line numbers of a JSONL file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetune.data.common import (
    CHUNK_BYTES,
    FEATURES,
    DataSpec,
    Dataset,
    Request,
    Where,
    check_min_rows,
    closest,
    fit_input_shape,
    quoted,
    sha256_of_file,
)
from finetune.data.labels import class_indices
from hub import limits
from hub.errors import ColumnNotFoundError, ConfigError, EmptyDataError, InvalidValueError, UnreadableDataError

__all__ = ["MAX_COLUMNS", "MAX_CSV_FIELD_CHARS", "MAX_COLUMN_NAME_CHARS", "TABLE_READERS", "Table", "check_csv_header",
           "dataset_from_table"]


MAX_COLUMNS = 100_000  # columns in a table; real feature tables have a few thousand at most
MAX_CSV_FIELD_CHARS = 16 * 1024 * 1024  # characters in one CSV value (a long text); the csv module's default is 131,072
MAX_COLUMN_NAME_CHARS = 1_024  # characters in a column name; a longer one is a data row or an unclosed quote
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}


@dataclass(frozen=True)
class Table:
    """A table as columns of raw values (strings from CSV, JSON values, Arrow values)."""

    source: str
    columns: dict[str, Sequence[Any]]
    row_numbers: Sequence[int] | None  # each row's number in the file; None: position + 1
    sha256: str

    def where(self, column: str | None) -> Where:
        return Where(self.source, column, self.row_numbers)


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


def _read_csv(location: Path, source: str) -> Table:
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
    return Table(source, dict(zip(header, zip(*rows))), row_numbers, hashlib.sha256(data).hexdigest())


def _check_header_width(stream: Any, source: str) -> None:
    """Refuse a header of more than :data:`MAX_COLUMNS` columns before anything parses it.

    The commas on the first non-blank line bound its columns from above (a quoted name
    may hold a comma); they are counted in C, a chunk at a time, until the line ends or
    there are too many. A header with a quoted line break is counted again, exactly, once
    parsed (:func:`_check_header`).
    """
    columns, started = 1, False
    while chunk := stream.read(CHUNK_BYTES):
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


def _read_jsonl(location: Path, source: str) -> Table:
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
    return Table(source, columns, row_numbers, hashlib.sha256(data).hexdigest())


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


def _read_parquet(location: Path, source: str) -> Table:
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
    return Table(source, columns, None, sha256_of_file(location))


TABLE_READERS = {".csv": _read_csv, ".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".parquet": _read_parquet}


def dataset_from_table(table: Table, request: Request) -> Dataset:
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
        targets, label_names = class_indices(table.columns[label_column], table.where(label_column), request)
    else:
        targets, label_names = _numeric_column(table, label_column), None
    check_min_rows(len(targets), request)
    if isinstance(inputs, torch.Tensor):
        inputs = fit_input_shape(inputs, request, f"the table has {len(feature_names)} feature columns")
    return Dataset(inputs, targets, label_names, request.source, table.sha256, feature_names)


def _feature_names(table: Table, spec: DataSpec) -> tuple[str, ...]:
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
                                  "or name them in DataSpec(feature_columns=...)", file=table.source).about(**FEATURES)
    return names


def _require_column(table: Table, name: str, setting: str) -> None:
    if name in table.columns:
        return
    existing = list(table.columns)
    match = closest(name, existing)
    hint = f" (did you mean {match!r}?)" if match else ""
    raise ColumnNotFoundError(f"there is no such column{hint}; the columns are {quoted(existing)}. "
                              f"Rename the column or set DataSpec({setting}=...)", file=table.source, column=name).about(
        **{setting: f"DataSpec({setting}=...)"})


def _numeric_column(table: Table, name: str) -> torch.Tensor:
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


def _numeric_column_slowly(values: Sequence[Any], where: Where) -> torch.Tensor:
    """Value by value, to name the first row that is not a number."""
    try:
        return torch.tensor([float(value) for value in values], dtype=torch.float32)
    except (TypeError, ValueError, OverflowError):
        index = next(i for i, value in enumerate(values) if not _is_float(value))
        raise InvalidValueError(_not_a_number(values[index]), **where.at(index)).about(**FEATURES) from None


def _is_float(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _not_a_number(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "the value is missing; fill it in or drop the row"
    return f"{value!r} is not a number; fix the value, or leave the column out of DataSpec(feature_columns=...)"


def _check_finite(column: torch.Tensor, values: Sequence[Any], where: Where) -> None:
    finite = torch.isfinite(column)
    if bool(finite.all()):
        return
    index = int((~finite).nonzero()[0])
    if not _is_float(values[index]):  # numpy reads a missing value (None) as NaN
        raise InvalidValueError(_not_a_number(values[index]), **where.at(index)).about(**FEATURES)
    number = float(values[index])
    problem = "is NaN" if math.isnan(number) else "is infinite" if math.isinf(number) else "is too large for float32"
    raise InvalidValueError(f"the value {values[index]!r} {problem}; replace it with a finite number or drop the row",
                            **where.at(index))


def _texts(table: Table, name: str) -> tuple[str, ...]:
    values = table.columns[name]
    for index, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidValueError("the text is missing or empty; fill it in or drop the row", **table.where(name).at(index))
        if not isinstance(value, str):
            raise InvalidValueError(f"{value!r} is not text; texts must be strings", **table.where(name).at(index))
    return tuple(values)
