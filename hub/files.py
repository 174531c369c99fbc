"""Files out of the hub: a version's folder (:meth:`Files.download`), its card, its tokenizer.

Every byte is copied by the store (:meth:`BlobStore.copy_to`: a temporary file, a rename, the
sha256 checked), so nothing half-copied or corrupt is ever left under a file's name.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.entities import FileEntry, ModelVersion
from hub.families import known_family
from hub.errors import IntegrityError, ModelNotFoundError, UnsafeFormatError
from hub.manifest import Manifest, check_relative_path
from hub.reference import folder_name

if TYPE_CHECKING:
    from hub.api import Hub

__all__ = ["Files"]


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

    def download(self, ref: str, local_dir: str | os.PathLike[str] | None = None) -> Path:
        """Copy a version's files into a folder, under their own names, checking every hash.

        The folder also gets ``modelhub.json`` (the version's manifest), so that
        publishing the folder again keeps the architecture and records the parent,
        and, for a ``transformers`` model without one, its ``config.json``. A version
        that shares weight files with another gets one ``model.safetensors`` holding
        exactly its tensors instead, and a ``modelhub.json`` that lists that file.

        Args:
            local_dir: where to put them (default ``<home>/snapshots/<namespace>+<model>/<version>``).

        Returns:
            The folder.

        Raises:
            IntegrityError: a stored file is missing or corrupt (nothing half-copied is left).
            UnsafeFormatError: a file path would escape the folder.
        """
        from hub.publishing import MANIFEST_FILE, WEIGHTS_FILE

        version = self.hub.info(ref)
        target = Path(local_dir) if local_dir is not None else self.hub.home / "snapshots" / folder_name(version.name) / str(version.version)
        root = target.resolve()
        entries = [e for e in version.files if not (version.weight_views and e.path in version.weight_files)]
        destinations = {}
        for entry in entries:  # every path and the manifest checked before anything is written
            destination = destinations[entry] = target / check_relative_path(entry.path)
            if not destination.resolve().is_relative_to(root):
                raise UnsafeFormatError(f"{version.ref}: file {entry.path!r} would be written outside {target}")
        self.hub.catalog.fetch(version, [e.path for e in entries] + (list(version.weight_files) if version.weight_views else []))
        try:
            manifest = self.hub.blobs.read_verified(version.digest)
        except IntegrityError as exc:
            raise IntegrityError(f"{version.ref}: manifest: {exc}; run `hub verify`") from None
        target.mkdir(parents=True, exist_ok=True)
        for entry, destination in destinations.items():
            destination.parent.mkdir(parents=True, exist_ok=True)
            self._copy_blob(version, entry.path, entry.sha256, entry.size, destination)
        if version.weight_views:
            from hub.loader import stored_tensors
            from hub.safetensors_io import iter_safetensors_bytes

            chunks, _ = iter_safetensors_bytes(stored_tensors(self.hub.blobs, version, verify=True), {"format": "pt"})
            merged = FileEntry(WEIGHTS_FILE, *self.hub.blobs.write_local(target / WEIGHTS_FILE, chunks))
            record = Manifest.from_json(manifest, source=f"{version.ref} manifest")
            files = tuple(sorted([*entries, merged], key=lambda e: e.path))
            manifest = replace(record, files=files, weights=(WEIGHTS_FILE,), weight_views={}).to_json()
        stored = {e.path for e in version.files}
        for path, data in {**known_family(version.architecture).download_files(version), MANIFEST_FILE: manifest}.items():
            if path not in stored or path == MANIFEST_FILE:
                destination = target / check_relative_path(path)
                destination.parent.mkdir(parents=True, exist_ok=True)
                self.hub.blobs.write_local(destination, [data])
        return target

    def _copy_blob(self, version: ModelVersion, path: str, sha256: str, size: int, destination: Path) -> None:
        try:
            self.hub.blobs.copy_to(sha256, destination, size=size)
        except IntegrityError as exc:
            raise IntegrityError(f"{version.ref}: file {path!r}: {exc}; run `hub verify`") from None
