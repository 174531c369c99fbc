"""Files out of the hub: a version's folder (:meth:`Files.layout`, :meth:`Files.download`), its card, its tokenizer.

A version's folder has one definition, :meth:`Files.layout`: what ``hub download`` writes and what
``hub serve`` serves to Hugging Face clients (:mod:`hub.server.hf`) are the same files, byte for byte.
Every byte is copied by the store (:meth:`BlobStore.copy_to`: a temporary file, a rename, the
sha256 checked), so nothing half-copied or corrupt is ever left under a file's name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.entities import FileEntry, ModelVersion
from hub.families import known_family
from hub.gc_roots import Keep
from hub.gc_roots import register as register_collector
from hub.errors import IntegrityError, ModelNotFoundError, UnsafeFormatError
from hub.manifest import Manifest, check_relative_path
from hub.reference import folder_name

if TYPE_CHECKING:
    from hub.api import Hub

__all__ = ["Files", "HfFile", "LFS_SUFFIXES", "LFS_MIN_BYTES", "MERGED_PREFIX", "MERGED_WEIGHTS_COLLECTOR", "merged_key"]

# A file is stored "in LFS" (served with X-Linked-Etag its sha256, listed with an ``lfs`` entry) when its
# name ends so, or when it is this large; every other file is a plain git file (ETag its git blob sha1).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack", ".gguf", ".pt2")
LFS_MIN_BYTES = 10 * 1024 * 1024
MERGED_PREFIX = "merged"  # store keys merged/<manifest digest>: the merged weights of a version
_LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class HfFile:
    """One file of a version's folder (:meth:`Files.layout`), in the Hugging Face layout.

    Attributes:
        path: its path in the folder (``/``-separated).
        size: its size in bytes.
        sha256: the sha256 of its bytes.
        blob: the store's digest holding its bytes (the same as ``sha256``); None when ``data`` holds them.
        data: its bytes, for a file made for the folder (a generated ``config.json``, a rewritten manifest).
        git_sha1: its git blob sha1 where it was computed (a plain git file's ``oid``; see :attr:`git_oid`).
    """

    path: str
    size: int
    sha256: str
    blob: str | None
    data: bytes | None = None
    git_sha1: str | None = None

    @classmethod
    def of_bytes(cls, path: str, data: bytes) -> HfFile:
        """A file made for the folder, its bytes held."""
        return cls(path, len(data), hashlib.sha256(data).hexdigest(), None, data, _git_blob_sha1(data))

    @property
    def lfs(self) -> bool:
        """Whether the file is an LFS file: its name ends in one of :data:`LFS_SUFFIXES`, or it has at
        least :data:`LFS_MIN_BYTES`."""
        return self.path.lower().endswith(LFS_SUFFIXES) or self.size >= LFS_MIN_BYTES

    @property
    def lfs_pointer(self) -> bytes:
        """The git LFS pointer file of these bytes (what git itself stores for an LFS file)."""
        return _LFS_POINTER.format(sha256=self.sha256, size=self.size).encode()

    @property
    def git_oid(self) -> str:
        """The git blob sha1 git would give this file: of its LFS pointer for an LFS file, else of its bytes.

        Raises:
            ValueError: a plain git file whose bytes are in the store and whose sha1 was not computed
                (``hub.server.hf.repos.hf_layout`` computes it).
        """
        if self.lfs:
            return _git_blob_sha1(self.lfs_pointer)
        if self.git_sha1 is not None:
            return self.git_sha1
        if self.data is not None:
            return _git_blob_sha1(self.data)
        raise ValueError(f"{self.path}: its git sha1 is not known; read its bytes from the store first")

    def with_git_sha1(self, data: bytes) -> HfFile:
        """The same file, its git sha1 computed from ``data`` (its bytes)."""
        return replace(self, git_sha1=_git_blob_sha1(data))


def merged_key(manifest_digest: str) -> str:
    """The store key that remembers the merged weights of the version with manifest ``manifest_digest``."""
    return f"{MERGED_PREFIX}/{manifest_digest}"


def _merged_record(text: str | None) -> tuple[str, int] | None:
    """``(sha256, size)`` from a merged-weights record; None for none or one that can't be read."""
    try:
        record = json.loads(text) if text else None
        sha256, size = record["sha256"], record["size"]  # type: ignore[index]
    except (ValueError, TypeError, KeyError):
        return None
    ok = isinstance(sha256, str) and len(sha256) == 64 and type(size) is int and size >= 0
    return (sha256, size) if ok else None


class MergedWeightsCollector:
    """``hub gc``'s part for merged weights (a :class:`hub.gc_roots.Collector`, registered when this module
    is imported): the merged weights of every live version are kept; the records of versions no longer
    live are garbage (their blobs, no longer kept, go with the other unreferenced blobs)."""

    def _records(self, hub: Hub) -> list[tuple[str, str, tuple[str, int] | None]]:
        return [(key, key.rpartition("/")[2], _merged_record(hub.blobs.read_text(key)))
                for key in (f"{MERGED_PREFIX}/{name}" for name in hub.blobs.list(MERGED_PREFIX))]

    def keep(self, hub: Hub) -> Keep:
        """The merged weights' blobs of the live versions."""
        live = hub.registry.referenced_digests()
        return Keep(frozenset(record[0] for _, digest, record in self._records(hub) if record and digest in live))

    def garbage(self, hub: Hub, keep: Keep, min_age_seconds: float) -> list[tuple[Path, int]]:
        """The records of merged weights whose version is not live (or that can't be read), older than ``min_age_seconds``."""
        import time

        live, now = hub.registry.referenced_digests(), time.time()
        return [(Path(hub.blobs.location(key)), hub.blobs.key_size(key) or 0) for key, digest, record in self._records(hub)
                if (record is None or digest not in live) and hub.blobs.age_seconds(key, now) >= min_age_seconds]


MERGED_WEIGHTS_COLLECTOR = MergedWeightsCollector()
register_collector(MERGED_WEIGHTS_COLLECTOR)


class Files:
    """A version's files, copied out of the store.

    Args:
        hub: the :class:`Hub` whose versions it copies.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def read_card(self, ref: str) -> str | None:
        """The version's model card (``README.md``, front matter included), or None when it has none.

        Raises:
            ModelNotFoundError: see :meth:`info`.
            IntegrityError: the card's blob is missing or damaged.
        """
        version = self.hub.info(ref)
        entry = next((f for f in version.files if f.path == "README.md"), None)
        if entry is None:
            return None
        try:
            data = self.hub.blobs.read_verified(entry.sha256, entry.size)
        except IntegrityError as exc:
            raise IntegrityError(f"{version.ref}: file 'README.md': {exc}; run `hub verify`") from None
        return data.decode("utf-8", errors="replace")

    def load_tokenizer(self, ref: str) -> Any:
        """The tokenizer published with a model.

        Returns:
            ``transformers.AutoTokenizer`` when transformers is installed, else a
            ``tokenizers.Tokenizer`` from ``tokenizer.json``.

        Raises:
            ModelNotFoundError: see :meth:`info`, or the version has no tokenizer files.
            IntegrityError: a tokenizer file's blob is missing or damaged.
            UnsafeFormatError: a file path would leave the folder, or the tokenizer can't be loaded
                without running code shipped with the model (which modelhub never does).
        """
        version = self.hub.info(ref)
        small = [f for f in version.files if f.path not in version.weight_files and not f.path.endswith(".safetensors")]
        if not any(f.path in ("tokenizer.json", "tokenizer_config.json", "vocab.txt") for f in small):
            raise ModelNotFoundError(f"{version.ref} has no tokenizer files (tokenizer.json, tokenizer_config.json, vocab.txt)")
        folder = self.hub.home / "snapshots" / folder_name(version.name) / f"{version.version}-tokenizer"
        destinations = {entry: folder / check_relative_path(entry.path) for entry in small}  # every path checked first
        needed = {e: d for e, d in destinations.items() if not (d.is_file() and d.stat().st_size == e.size)}
        if needed:
            self.hub.catalog.fetch(version, [entry.path for entry in needed])
        for entry, destination in needed.items():
            destination.parent.mkdir(parents=True, exist_ok=True)
            self._copy_blob(version, entry.path, entry.sha256, entry.size, destination)

        from hub.families.transformers import load_tokenizer

        return load_tokenizer(folder, version.ref)

    def layout(self, version: ModelVersion, *, merged: FileEntry | None = None) -> list[HfFile]:
        """The files of ``version`` as :meth:`download` writes them (and ``hub serve`` serves them to
        Hugging Face clients), by path: the one definition of a version's folder.

        They are the version's files; for a version that shares weight files with another, one
        ``model.safetensors`` holding exactly its tensors instead of the shared files (built once,
        kept as a blob of the store: see :meth:`merged_weights`); the files its family generates
        (a ``transformers`` model's ``config.json`` when it stores none); and ``modelhub.json``, the
        manifest (rewritten to list ``model.safetensors`` where the weights were merged), so that
        publishing the folder again keeps the architecture and records the parent.

        Args:
            merged: the merged ``model.safetensors`` where it was built already (by :meth:`download`,
                into its folder); default :meth:`merged_weights`.

        Returns:
            The files, sorted by path.

        Raises:
            IntegrityError: the manifest or a shared weight file is missing or corrupt.
        """
        from hub.publishing import MANIFEST_FILE, WEIGHTS_FILE

        shared = set(version.weight_files) if version.weight_views else set()
        entries = [e for e in version.files if e.path not in shared]
        manifest = self._manifest(version)
        files = {e.path: HfFile(e.path, e.size, e.sha256, e.sha256) for e in entries}
        if shared:
            merged = merged or self.merged_weights(version)
            files[WEIGHTS_FILE] = HfFile(WEIGHTS_FILE, merged.size, merged.sha256, merged.sha256)
            record = Manifest.from_json(manifest, source=f"{version.ref} manifest")
            listed = tuple(sorted([*entries, merged], key=lambda e: e.path))
            manifest = replace(record, files=listed, weights=(WEIGHTS_FILE,), weight_views={}).to_json()
            files[MANIFEST_FILE] = HfFile.of_bytes(MANIFEST_FILE, manifest)
        else:
            files[MANIFEST_FILE] = HfFile(MANIFEST_FILE, len(manifest), version.digest, version.digest)
        stored = {e.path for e in version.files}
        for path, data in known_family(version.architecture).download_files(version).items():
            if path not in stored and path != MANIFEST_FILE:
                files[path] = HfFile.of_bytes(path, data)
        return [files[path] for path in sorted(files)]

    def _manifest(self, version: ModelVersion) -> bytes:
        """The version's manifest bytes, checked against its digest.

        Raises:
            IntegrityError: it is missing or corrupt.
        """
        try:
            return self.hub.blobs.read_verified(version.digest)
        except IntegrityError as exc:
            raise IntegrityError(f"{version.ref}: manifest: {exc}; run `hub verify`") from None

    def merged_weights(self, version: ModelVersion) -> FileEntry:
        """The one ``model.safetensors`` of a version that shares weight files with another: exactly its
        tensors, under their names, as a blob of the store.

        It is built once (its bytes are the same every time: same tensors, same order, same header) and
        remembered under the store key ``merged/<manifest digest>``; while the version lives ``hub gc``
        keeps it (:data:`MERGED_WEIGHTS_COLLECTOR`), and one removed anyway is built again here.

        Returns:
            Its entry: ``model.safetensors``, sha256 and size.

        Raises:
            IntegrityError: a shared weight file is missing or corrupt.
        """
        from hub.loader import stored_tensors
        from hub.publishing import WEIGHTS_FILE
        from hub.safetensors_io import iter_safetensors_bytes

        blobs = self.hub.blobs
        known = self._stored_merged(version)
        if known is not None:
            return known
        with blobs.in_use():  # a gc running now spares the new blob until its record is written
            sha256, size = blobs.write(self._merged_chunks(version))
            blobs.write_text(merged_key(version.digest), json.dumps({"sha256": sha256, "size": size}))
        return FileEntry(WEIGHTS_FILE, sha256, size)

    def _stored_merged(self, version: ModelVersion) -> FileEntry | None:
        """The merged weights of ``version`` where the store holds them (see :meth:`merged_weights`)."""
        from hub.publishing import WEIGHTS_FILE

        known = _merged_record(self.hub.blobs.read_text(merged_key(version.digest)))
        if known is not None and self.hub.blobs.size(known[0]) == known[1]:
            return FileEntry(WEIGHTS_FILE, *known)
        return None

    def _merged_chunks(self, version: ModelVersion) -> Any:
        """The bytes of the merged ``model.safetensors`` of a version that shares weight files (its
        shared files fetched first and every tensor checked)."""
        from hub.loader import stored_tensors
        from hub.safetensors_io import iter_safetensors_bytes

        self.hub.catalog.fetch(version, list(version.weight_files))
        chunks, _ = iter_safetensors_bytes(stored_tensors(self.hub.blobs, version, verify=True), {"format": "pt"})
        return chunks

    def download(self, ref: str, local_dir: str | os.PathLike[str] | None = None) -> Path:
        """Copy a version's files into a folder, under their own names, checking every hash.

        The folder holds exactly the files of :meth:`hub.files.Files.layout`: the version's own, ``modelhub.json`` (the
        version's manifest), so that publishing the folder again keeps the architecture and records the
        parent, and, for a ``transformers`` model without one, its ``config.json``. A version that
        shares weight files with another gets one ``model.safetensors`` holding exactly its tensors
        instead, and a ``modelhub.json`` that lists that file.

        Args:
            local_dir: where to put them (default ``<home>/snapshots/<namespace>+<model>/<version>``).

        Returns:
            The folder.

        Raises:
            IntegrityError: a stored file is missing or corrupt (nothing half-copied is left).
            UnsafeFormatError: a file path would escape the folder.
        """
        version = self.hub.info(ref)
        target = Path(local_dir) if local_dir is not None else self.hub.home / "snapshots" / folder_name(version.name) / str(version.version)
        root = target.resolve()
        for entry in version.files:  # every path checked before anything is built or written
            if not (target / check_relative_path(entry.path)).resolve().is_relative_to(root):
                raise UnsafeFormatError(f"{version.ref}: file {entry.path!r} would be written outside {target}")
        from hub.publishing import MANIFEST_FILE, WEIGHTS_FILE

        self._manifest(version)  # a damaged manifest stops the download before anything is written
        built, in_folder = self._stored_merged(version) if version.weight_views else None, False
        if version.weight_views and built is None:  # merged straight into the folder: a download adds nothing to the store
            target.mkdir(parents=True, exist_ok=True)
            built = FileEntry(WEIGHTS_FILE, *self.hub.blobs.write_local(target / WEIGHTS_FILE, self._merged_chunks(version)))
            in_folder = True
        files = self.layout(version, merged=built)
        stored = {e.path for e in version.files}
        self.hub.catalog.fetch(version, [f.path for f in files if f.path in stored])
        target.mkdir(parents=True, exist_ok=True)
        for file in sorted(files, key=lambda f: f.path == MANIFEST_FILE):  # the manifest last: a folder without it is unfinished
            if in_folder and file.path == WEIGHTS_FILE:
                continue  # built there above
            destination = target / check_relative_path(file.path)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if file.data is not None:
                self.hub.blobs.write_local(destination, [file.data])
            else:
                self._copy_blob(version, file.path, file.sha256, file.size, destination)
        return target

    def _copy_blob(self, version: ModelVersion, path: str, sha256: str, size: int, destination: Path) -> None:
        try:
            self.hub.blobs.copy_to(sha256, destination, size=size)
        except IntegrityError as exc:
            raise IntegrityError(f"{version.ref}: file {path!r}: {exc}; run `hub verify`") from None
