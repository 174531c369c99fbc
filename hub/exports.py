"""Exports of a version to ONNX (``torch.onnx``'s dynamo exporter) and ``torch.export`` (``.pt2``), kept with the version.

An export is checked before it is kept (:func:`hub.exporting.export_module`): it is run (onnxruntime
for ONNX, ``torch.export.load`` for pt2) on the family's example inputs at shapes other than the
export's, against the PyTorch model, within a tolerance. Only then are its files written as blobs of
the store, and its record (:class:`hub.entities.ExportRecord`) as a content-addressed JSON blob
(its ``digest``), pointed at by the store key ``refs/<model>/exports/<version>/<format>``. The store
alone describes every export, so ``hub reindex`` needs nothing more; ``hub gc`` keeps an export's
blobs while its version lives and removes its pointer once the version is deleted
(:data:`EXPORTS_COLLECTOR`), and the blobs with the other unreferenced ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import settings
from hub.entities import ExportRecord, FileEntry, ModelVersion
from hub.errors import IntegrityError, InvalidArgumentError, ModelNotFoundError, UnsafeFormatError
from hub.gc_roots import Keep
from hub.gc_roots import register as register_collector
from hub.manifest import check_relative_path
from hub.reference import folder_name
from hub.storage.writing import sha256_file

if TYPE_CHECKING:
    from hub.api import Hub

__all__ = ["Exports", "FORMATS", "EXPORTS_COLLECTOR", "export_key", "record_bytes", "record_of", "with_digest"]

FORMATS = ("onnx", "pt2")


def export_key(name: str, version: int, format: str | None = None) -> str:
    """The store key of the pointer to ``name:version``'s export in ``format`` (None: the folder of its exports)."""
    folder = f"refs/{folder_name(name)}/exports/{version}"
    return folder if format is None else f"{folder}/{format}"


def record_bytes(record: ExportRecord) -> bytes:
    """The record's JSON as the store keeps it (every field but ``digest``, keys sorted): its sha256 is the ``digest``."""
    fields = record.to_dict()
    fields.pop("digest", None)
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def with_digest(record: ExportRecord) -> ExportRecord:
    """``record`` with its ``digest`` set: the sha256 of :func:`record_bytes`."""
    return replace(record, digest=hashlib.sha256(record_bytes(record)).hexdigest())


def record_of(data: Any, digest: str | None = None) -> ExportRecord:
    """An :class:`ExportRecord` from its stored JSON (bytes) or its :meth:`~ExportRecord.to_dict` (a dict), checked:
    the digest is the sha256 of its JSON (``digest``, or the dict's own), every file path stays inside a folder.

    Raises:
        IntegrityError: it is not an export record, or its JSON does not hash to its digest.
    """
    try:
        fields = json.loads(data) if isinstance(data, bytes) else dict(data)
        record = ExportRecord.from_dict(fields)
        if record.format not in FORMATS or not record.files or any(not isinstance(f, FileEntry) for f in record.files):
            raise ValueError(f"format {record.format!r} with {len(record.files)} file(s)")
        for entry in record.files:
            check_relative_path(entry.path)
    except (ValueError, TypeError, UnsafeFormatError) as exc:
        raise IntegrityError(f"not an export record ({str(exc)[:200]})") from None
    expected = digest if digest is not None else record.digest
    actual = hashlib.sha256(record_bytes(record)).hexdigest()
    if actual != expected:
        raise IntegrityError(f"export record {expected[:12]} hashes to {actual[:12]}: damaged or altered")
    return replace(record, digest=actual)


def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise InvalidArgumentError(f"export format {format!r} is unknown; use one of {', '.join(FORMATS)}").about(format="format")
    return format


class ExportsCollector:
    """``hub gc``'s part for exports (a :class:`hub.gc_roots.Collector`, registered when this module is
    imported): the blobs of the exports of live versions are kept; the pointers of exports whose version
    is deleted (or gone) are garbage, and their blobs, no longer kept, go with the other unreferenced ones."""

    def _pointers(self, hub: Hub) -> list[tuple[str, str | None, bool]]:
        """``(key, record digest, whether its version is live)`` of every export pointer in the store."""
        found = []
        for name in hub.refs.names():
            live = {number for number, digest in hub.refs.versions(name) if digest is not None}
            folder = export_key(name, 0).rpartition("/")[0]
            for number in hub.blobs.list(folder):
                for format in hub.blobs.list(f"{folder}/{number}"):
                    if not format.startswith("."):
                        key = f"{folder}/{number}/{format}"
                        found.append((key, hub.refs.read(key), number.isdigit() and int(number) in live))
        return found

    def keep(self, hub: Hub) -> Keep:
        """The record and file blobs of the exports of live versions."""
        digests: set[str] = set()
        for _, digest, live in self._pointers(hub):
            if live and digest:
                digests.add(digest)
                try:
                    digests.update(entry.sha256 for entry in record_of(hub.blobs.read_verified(digest), digest).files)
                except IntegrityError:
                    pass  # a damaged record keeps nothing but itself (`hub verify` reports the version's files)
        return Keep(frozenset(digests))

    def garbage(self, hub: Hub, keep: Keep, min_age_seconds: float) -> list[tuple[Path, int]]:
        """The pointers of exports whose version is not live, older than ``min_age_seconds``."""
        now = time.time()
        return [(Path(hub.blobs.location(key)), hub.blobs.key_size(key) or 0) for key, _, live in self._pointers(hub)
                if not live and hub.blobs.age_seconds(key, now) >= min_age_seconds]


EXPORTS_COLLECTOR = ExportsCollector()
register_collector(EXPORTS_COLLECTOR)


class Exports:
    """A hub's exports.

    Args:
        hub: the :class:`Hub` whose versions it exports.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    # --- exporting ------------------------------------------------------------------

    def export(self, ref: str, format: str = "onnx", *, opset: int | None = None, tolerance: float | None = None) -> ExportRecord:
        """Export a version, check its parity with the PyTorch model, and keep it with the version.

        ONNX goes through ``torch.onnx.export(dynamo=True)`` (one file; weights over ~1.9 GB in
        external-data files beside it), pt2 through ``torch.export.export`` and ``torch.export.save``;
        both with a dynamic ``batch`` dimension, and ``sequence`` for text models. The export is then
        run (onnxruntime on the CPU, ``torch.export.load``) on the family's example inputs at shapes
        other than the export's (batch 1 and 3; sequences of 5 and 13 tokens) and compared with
        the model's outputs. An export of the same version and format made before is replaced.

        Args:
            ref: the version (see :meth:`info`).
            format: ``"onnx"`` or ``"pt2"``.
            opset: the ONNX opset (default the exporter's, 20 with torch 2.13); not for pt2.
            tolerance: the largest max |diff| accepted (default 1e-4 for float32 weights, 1e-2 for 16-bit ones).

        Returns:
            The :class:`ExportRecord` kept.

        Raises:
            ExportError: the exporter's own reason, an output that is not a tensor, or a parity beyond
                the tolerance; nothing is stored.
            InvalidArgumentError: an unknown format, an opset for pt2, a negative tolerance.
            ModelNotFoundError: see :meth:`info`.
        """
        from hub.exporting import export_module

        _check_format(format)
        if opset is not None and (format != "onnx" or type(opset) is not int or opset < 7):
            raise InvalidArgumentError(f"opset {opset!r}: an opset is an ONNX opset number (7 or more), for format onnx only").about("opset")
        version = self.hub.info(ref)
        spec = self.hub.model_spec(version)
        module = self.hub.load(version.ref, device="cpu").eval()
        with tempfile.TemporaryDirectory(prefix="hub-export-") as folder:
            made = export_module(module, spec, format, Path(folder), opset=opset, tolerance=tolerance)
            files = tuple(FileEntry(path.name, *sha256_file(path)) for path in made.files)
            record = ExportRecord(format=format, source_ref=version.ref, source_digest=version.digest, files=files, **made.facts,
                                  created_at=datetime.now(timezone.utc).replace(microsecond=0), created_by=settings.current_user())
            record = with_digest(record)
            return self._keep(version, record, {entry.sha256: path for entry, path in zip(files, made.files)})

    def _keep(self, version: ModelVersion, record: ExportRecord, paths: dict[str, Path]) -> ExportRecord:
        """Write the export's files and record as blobs, then its pointer (a remote hub uploads them and commits)."""
        from hub.storage.base import read_chunks

        blobs = self.hub.blobs
        with blobs.in_use():  # a gc running now spares the new blobs until the pointer names them
            for entry in record.files:
                with open(paths[entry.sha256], "rb") as source:
                    blobs.write(read_chunks(source), expected_sha256=entry.sha256)
            return self.commit_record(version, record)

    def commit_record(self, version: ModelVersion, record: ExportRecord) -> ExportRecord:
        """Keep ``record`` as ``version``'s export in its format, its files already in the store (what ``hub serve``
        does for a client's export, after the client uploaded them).

        Raises:
            IntegrityError: the record's digest is not that of its JSON, it is another version's, or a file's blob is missing.
        """
        record = record_of(record.to_dict())
        if record.source_digest != version.digest or record.source_ref != version.ref:
            raise IntegrityError(f"the export record names {record.source_ref} (manifest {record.source_digest[:12]}), "
                                 f"not {version.ref} (manifest {version.digest[:12]})")
        blobs = self.hub.blobs
        with blobs.in_use():
            for entry in record.files:
                if blobs.size(entry.sha256) != entry.size:
                    raise IntegrityError(f"{version.ref}: export file {entry.path!r} ({entry.sha256[:12]}, {entry.size} bytes) is not "
                                         "in the store; upload it first")
            digest, _ = blobs.write([record_bytes(record)], expected_sha256=record.digest)
            blobs.write_text(export_key(version.name, version.version, record.format), digest)
        return record

    # --- reading --------------------------------------------------------------------

    def _records(self, version: ModelVersion) -> list[ExportRecord]:
        """The export records of ``version`` the store points at (a remote hub asks its server)."""
        found = []
        folder = export_key(version.name, version.version)
        for format in self.hub.blobs.list(folder):
            digest = self.hub.refs.read(f"{folder}/{format}") if format in FORMATS else None
            if digest:
                try:
                    record = record_of(self.hub.blobs.read_verified(digest), digest)
                except IntegrityError as exc:
                    raise IntegrityError(f"{version.ref}: {format} export record: {exc}; run `hub verify`, then export again") from None
                if record.source_digest == version.digest and record.format == format:
                    found.append(record)
        return found

    def list_exports(self, ref: str) -> list[ExportRecord]:
        """The exports of a version, by format.

        Raises:
            ModelNotFoundError: see :meth:`info`.
            IntegrityError: a record's blob is damaged.
        """
        return sorted(self._records(self.hub.info(ref)), key=lambda r: r.format)

    def export_record(self, ref: str, format: str) -> ExportRecord:
        """The export of a version in ``format``.

        Raises:
            ModelNotFoundError: there is none (the message names ``hub export REF --format F``); see :meth:`info`.
            InvalidArgumentError: an unknown format.
        """
        _check_format(format)
        version = self.hub.info(ref)
        found = next((r for r in self._records(version) if r.format == format), None)
        if found is None:
            raise ModelNotFoundError(f"{version.ref} has no {format} export; make one with `hub export {version.ref} --format {format}`")
        return found

    def fetch(self, record: ExportRecord) -> None:
        """Make sure the store holds the export's files: nothing to do in a local hub (a remote hub fetches them)."""

    def _folder(self, ref: str, format: str, local_dir: str | os.PathLike[str] | None) -> tuple[ExportRecord, Path]:
        record = self.export_record(ref, format)
        version = self.hub.info(record.source_ref)
        default = self.hub.home / "snapshots" / folder_name(version.name) / f"{version.version}-{format}"
        target = Path(local_dir) if local_dir is not None else default
        for entry in record.files:
            check_relative_path(entry.path)
        self.fetch(record)
        target.mkdir(parents=True, exist_ok=True)
        for entry in record.files:
            destination = target / entry.path
            if destination.is_file() and destination.stat().st_size == entry.size and sha256_file(destination)[0] == entry.sha256:
                continue
            try:
                self.hub.blobs.copy_to(entry.sha256, destination, size=entry.size)
            except IntegrityError as exc:
                raise IntegrityError(f"{record.source_ref}: {format} export file {entry.path!r}: {exc}; run `hub verify`") from None
        return record, target

    def download_export(self, ref: str, format: str, local_dir: str | os.PathLike[str] | None = None) -> Path:
        """Copy a version's export in ``format`` into a folder, under the files' own names, each checked against its sha256.

        Args:
            local_dir: where (default ``<home>/snapshots/<namespace>+<model>/<version>-<format>``).

        Returns:
            The folder (its main file: ``model.onnx`` or ``model.pt2``).

        Raises:
            ModelNotFoundError: see :meth:`export_record`.
            IntegrityError: a file's blob is missing or damaged (nothing half-copied is left).
        """
        return self._folder(ref, format, local_dir)[1]

    def load_export(self, ref: str, format: str = "onnx", *, providers: list[Any] | None = None,
                    threads: int | None = None) -> Any:
        """A version's export, ready to run: for ONNX an ``onnxruntime.InferenceSession`` (``providers``,
        default the CUDA provider first where onnxruntime has it, then the CPU's; ``threads`` CPU threads
        a run may use, default onnxruntime's: one per core), for pt2 the
        ``torch.export.ExportedProgram`` (call ``.module()(*inputs)``), opened after checking that
        nothing in it would be unpickled.

        Its inputs and outputs are named as the record's ``inputs`` and ``outputs`` say (see :mod:`hub.exporting`).

        Raises:
            ModelNotFoundError: see :meth:`export_record`.
            IntegrityError: a file's blob is missing or damaged.
            UnsafeFormatError: a pt2 file that would unpickle something.
        """
        from hub.exporting import _session, load_pt2

        record = self.export_record(ref, format)
        self.fetch(record)
        main = record.files[0]
        local = self.hub.blobs.local_path(main.sha256) if len(record.files) == 1 else None
        if local is None or self.hub.blobs.size(main.sha256) != main.size:
            local = self._folder(ref, format, None)[1] / main.path
        return _session(local, providers, threads) if format == "onnx" else load_pt2(local)
