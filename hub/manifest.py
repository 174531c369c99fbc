"""Version manifests: the JSON record, itself a blob, that makes a version rebuildable.

A manifest lists a version's files (path, sha256, size), its architecture and
config, dtype, parameter count and everything published with it. The registry
database is an index over manifests; ``hub reindex`` rebuilds it from them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from hub.entities import FileEntry, ModelVersion, from_millis
from hub.errors import UnsafeFormatError
from hub.reference import validate_name, validate_version

__all__ = ["Manifest", "FORMAT", "check_relative_path"]

FORMAT = "modelhub.manifest/1"
_DIGEST = re.compile(r"[0-9a-f]{64}")


def check_relative_path(path: object) -> str:
    """Check that a file path stays inside its version folder and return it.

    Raises:
        UnsafeFormatError: absolute, empty, with ``..``, backslashes or control characters.
    """
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise UnsafeFormatError(f"file path {path!r} is not a relative path; paths must stay inside the model folder")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or any(ord(c) < 32 for c in path):
        raise UnsafeFormatError(f"file path {path!r} would escape the model folder or is malformed; use plain relative paths")
    return path


def _check_views(views: Any, weights: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Check ``weight_views``: ``{weight file: {"prefix": str, "skip": [str, ...]}}``.

    Raises:
        ValueError: a key is not a weight file, or a view is malformed.
    """
    if not isinstance(views, dict):
        raise ValueError("weight_views is not an object")
    for path, view in views.items():
        if path not in weights:
            raise ValueError(f"weight_views names {path!r}, which is not a weight file")
        if not (isinstance(view, dict) and set(view) == {"prefix", "skip"} and isinstance(view["prefix"], str)
                and isinstance(view["skip"], list) and all(isinstance(name, str) for name in view["skip"])):
            raise ValueError(f"the view of {path!r} is not {{'prefix': str, 'skip': [str, ...]}}")
    return views


_INTEGERS = ("version", "created_at_ms", "num_parameters")
_TEXTS = ("name", "architecture", "dtype", "task", "license", "description", "parent", "created_by")  # all but name may be null
_OBJECTS = ("config", "metrics", "metadata", "tied")


def _check_types(record: dict[str, Any]) -> None:
    """Check each field has its JSON type (``version`` an integer, ``tags`` a list of strings, ...).

    Raises:
        ValueError: naming the first field that doesn't.
    """
    for key in _INTEGERS:
        if key in record and type(record[key]) is not int:
            raise ValueError(f"{key} is not an integer")
    for key in _TEXTS:
        if record.get(key) is not None and not isinstance(record[key], str):
            raise ValueError(f"{key} is not a string")
    for key in _OBJECTS:
        if key in record and not isinstance(record[key], dict):
            raise ValueError(f"{key} is not an object")
    for key in ("files", "weights", "tags"):
        if key in record and not isinstance(record[key], list):
            raise ValueError(f"{key} is not a list")
    if not all(isinstance(f, dict) for f in record.get("files", [])):
        raise ValueError("files is not a list of objects")
    if not all(isinstance(v, str) for key in ("weights", "tags") for v in record.get(key, [])):
        raise ValueError("weights and tags must be lists of strings")
    if not all(isinstance(v, str) for v in record.get("tied", {}).values()):
        raise ValueError("tied is not a map of tensor names")
    if not all(type(v) in (int, float) and math.isfinite(v) for v in record.get("metrics", {}).values()):
        raise ValueError("a metric is not a finite number")


@dataclass(frozen=True)
class Manifest:
    """The immutable description of one version.

    ``weight_views`` says how to read weight files shared with another version:
    ``{path: {"prefix": str, "skip": [stored names not used]}}``; each used tensor
    is named ``prefix + stored name``. Files without a view are used whole.
    """

    name: str
    version: int
    created_at_ms: int
    files: tuple[FileEntry, ...]
    weights: tuple[str, ...]
    architecture: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None
    num_parameters: int = 0
    task: str | None = None
    license: str | None = None
    tags: tuple[str, ...] = ()
    description: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    tied: dict[str, str] = field(default_factory=dict)
    created_by: str | None = None
    weight_views: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> bytes:
        """Deterministic JSON bytes (sorted keys, compact)."""
        record = asdict(self)
        record["format"] = FORMAT
        if not self.weight_views:  # a version that shares nothing keeps the manifest older readers know
            del record["weight_views"]
        return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, data: bytes, *, source: str = "manifest") -> Manifest:
        """Parse and check manifest bytes.

        Raises:
            UnsafeFormatError: not a modelhub manifest, or a field is malformed.
        """
        try:
            record = json.loads(data)
            if not isinstance(record, dict) or record.pop("format", None) != FORMAT:
                raise ValueError(f"format is not {FORMAT!r}")
            json.dumps(record, ensure_ascii=False).encode()  # text UTF-8 can't hold (a lone surrogate) can't be written back
            _check_types(record)
            files = tuple(FileEntry(check_relative_path(f["path"]), f["sha256"], f["size"]) for f in record.pop("files"))
            for entry in files:
                if not (isinstance(entry.sha256, str) and _DIGEST.fullmatch(entry.sha256)) or type(entry.size) is not int or entry.size < 0:
                    raise ValueError(f"file {entry.path!r} has a malformed sha256 or size")
            if len({entry.path for entry in files}) != len(files):
                raise ValueError("a file path is listed twice")
            weights, tags = tuple(record.pop("weights")), tuple(record.pop("tags", ()))
            views = _check_views(record.pop("weight_views", {}), weights)
            manifest = cls(files=files, weights=weights, tags=tags, weight_views=views, **record)
            validate_name(manifest.name)
            validate_version(manifest.version)
            paths = {f.path for f in files}
            if not set(manifest.weights) <= paths:
                raise ValueError("a weight file is not among the files")
            return manifest
        except UnsafeFormatError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise UnsafeFormatError(f"{source} is not a valid modelhub manifest ({str(exc)[:300]}); run `hub verify`") from None

    def to_model_version(self, digest: str, aliases: tuple[str, ...] = ()) -> ModelVersion:
        """The public record of this manifest (stored under ``digest``)."""
        return ModelVersion(
            name=self.name,
            version=self.version,
            ref=f"{self.name}:{self.version}",
            digest=digest,
            architecture=self.architecture,
            config=self.config,
            files=self.files,
            size_bytes=self.size_bytes,
            num_parameters=self.num_parameters,
            dtype=self.dtype,
            task=self.task,
            license=self.license,
            tags=self.tags,
            metrics=self.metrics,
            metadata=self.metadata,
            parent=self.parent,
            aliases=aliases,
            created_at=from_millis(self.created_at_ms),
            description=self.description,
            weight_files=self.weights,
            tied=self.tied,
            weight_views=self.weight_views,
        )
