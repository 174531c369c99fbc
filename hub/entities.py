"""Plain, frozen records that the public API returns. No ORM rows leave the registry."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, TypeVar

__all__ = ["FileEntry", "ModelVersion", "ModelSummary", "AliasChange", "VerifyReport", "GcReport", "ReindexReport", "ExportRecord"]


def from_millis(ms: int | None) -> datetime | None:
    """A UTC datetime from milliseconds since the epoch (how the registry stores time)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


_R = TypeVar("_R", bound="_Record")


class _Record:
    @classmethod
    def from_dict(cls: type[_R], record: dict[str, Any]) -> _R:
        """The record that :meth:`to_dict` wrote (what a hub server answers): ISO 8601 strings back
        to datetimes, lists back to tuples, nested dicts back to records. Keys it does not know are
        left out (a newer server's), keys missing take their defaults.

        Raises:
            ValueError: ``record`` is not a dict, misses a field without a default, or has a value of the wrong form.
        """
        if not isinstance(record, dict):
            raise ValueError(f"a {cls.__name__} record must be an object, not {type(record).__name__}")
        values: dict[str, Any] = {}
        for spec in fields(cls):  # type: ignore[arg-type]
            if spec.name not in record:
                continue
            value, kind = record[spec.name], str(spec.type)
            try:
                if value is None:
                    pass
                elif kind.startswith("datetime"):
                    value = datetime.fromisoformat(value)
                elif kind.startswith("tuple[FileEntry"):
                    value = tuple(FileEntry.from_dict(item) for item in value)
                elif kind.startswith("tuple"):
                    value = tuple(value)
                elif kind.startswith("dict") and not isinstance(value, dict):
                    raise TypeError(f"not an object: {value!r}")
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{cls.__name__}.{spec.name}: {exc}") from None
            values[spec.name] = value
        try:
            return cls(**values)
        except TypeError as exc:  # a field without a default is missing
            raise ValueError(f"not a {cls.__name__} record: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict: datetimes as ISO 8601 strings, nested records as dicts."""
        record = dict(self.__dict__)
        for key, value in record.items():
            if isinstance(value, datetime):
                record[key] = value.isoformat()
            elif isinstance(value, tuple) and value and isinstance(value[0], _Record):
                record[key] = [item.to_dict() for item in value]
        return record


@dataclass(frozen=True)
class FileEntry(_Record):
    """One file of a version: its path inside the version, sha256 and size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelVersion(_Record):
    """One immutable published version of a model.

    ``ref`` is ``name:version``; ``digest`` is the sha256 of its manifest;
    ``parent`` is the reference it was derived from, if any; ``aliases`` are
    the aliases pointing at it when it was read. ``weight_views`` says which
    tensors of each shared weight file the version uses, and under which prefix
    (see :class:`hub.manifest.Manifest`).
    """

    name: str
    version: int
    ref: str
    digest: str
    architecture: str | None
    config: dict[str, Any]
    files: tuple[FileEntry, ...]
    size_bytes: int
    num_parameters: int
    dtype: str | None
    task: str | None
    license: str | None
    tags: tuple[str, ...]
    metrics: dict[str, float]
    metadata: dict[str, Any]
    parent: str | None
    aliases: tuple[str, ...]
    created_at: datetime
    description: str | None = None
    weight_files: tuple[str, ...] = field(default=())
    tied: dict[str, str] = field(default_factory=dict)
    weight_views: dict[str, dict[str, Any]] = field(default_factory=dict)

    def file(self, path: str) -> FileEntry:
        """The entry for ``path``.

        Raises:
            KeyError: the version has no such file.
        """
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(f"{self.ref} has no file {path!r}; it has {[f.path for f in self.files]}")


@dataclass(frozen=True)
class ModelSummary(_Record):
    """A model as listed: its latest live version and what describes it."""

    name: str
    latest_version: int | None
    num_versions: int
    aliases: dict[str, int]
    task: str | None
    license: str | None
    tags: tuple[str, ...]
    description: str | None
    size_bytes: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AliasChange(_Record):
    """One move of an alias: from which version to which (``None`` when set first or deleted)."""

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    changed_by: str
    changed_at: datetime


@dataclass(frozen=True)
class VerifyReport(_Record):
    """What ``verify`` found: the versions checked, the problems, and leftovers ``gc`` removes."""

    checked: tuple[str, ...]
    problems: tuple[str, ...]
    leftovers: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when no version has a problem (leftovers are not problems)."""
        return not self.problems


@dataclass(frozen=True)
class GcReport(_Record):
    """What ``gc`` removed (or, with ``dry_run``, would remove)."""

    removed: tuple[str, ...]
    freed_bytes: int


@dataclass(frozen=True)
class ReindexReport(_Record):
    """What ``reindex`` changed in the registry (or, with ``dry_run``, would change).

    ``added``: versions indexed from the store (deleted ones as ``name:N (deleted)``);
    ``deleted``: versions the store marks deleted, deleted in the registry too; ``replaced``:
    versions the two disagreed on, taken from the store (``--force`` only); ``kept``: registry
    versions the store has no pointer for, kept (their pointers are written); ``dropped``: those
    marked deleted instead (``--force`` only; their numbers stay taken); ``history``: alias moves
    restored from the store; ``aliases``: aliases set, as ``name@alias -> N``; ``pending``:
    publishes that never committed (left for ``hub gc``); ``conflicts``: what stops a reindex
    without ``--force``; ``moved_aside``: where a damaged registry file was moved; ``live``: live
    versions in the registry afterwards.
    """

    dry_run: bool
    added: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    history: int = 0
    aliases: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    moved_aside: str | None = None
    live: int = 0

    @property
    def changed(self) -> bool:
        """Whether the registry was (or would be) changed."""
        return bool(self.added or self.deleted or self.replaced or self.dropped or self.history or self.aliases or self.moved_aside)


@dataclass(frozen=True)
class ExportRecord(_Record):
    """One export of a version to a deployable format (:mod:`hub.exports`), as the store keeps it.

    ``files`` holds the export's files, the main one first (``model.onnx``, ``model.pt2``), then any
    external-data files, each a blob of the store; ``inputs`` and ``outputs`` are
    ``{"name", "dtype", "shape"}`` each, a shape's dynamic dimensions named (``"batch"``,
    ``"sequence"``); ``parity`` is ``{"max_abs_diff", "tolerance", "shapes", "provider", "passed"}``:
    how far the export's outputs were from the PyTorch model's, on which input shapes, run by which
    execution provider. ``digest`` is the sha256 of the record's JSON (every other field).
    """

    format: str
    source_ref: str
    source_digest: str
    files: tuple[FileEntry, ...]
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]
    opset: int | None
    ir_version: int | None
    exporter: str
    runtime: str
    parity: dict[str, Any]
    created_at: datetime
    created_by: str
    digest: str = ""

    @property
    def size_bytes(self) -> int:
        """The bytes of all its files."""
        return sum(entry.size for entry in self.files)
