"""Pointer files beside the blobs, so the store alone can rebuild the registry.

``refs/<model>/versions/<n>`` holds the manifest digest of version ``n``;
``refs/<model>/versions/<n>.deleted`` marks a deleted one (its number is never
reused); ``refs/<model>/aliases/<alias>`` holds the version an alias points at.
``<model>`` is the name with ``/`` written as ``+`` (``acme+digits-cnn``).
Every write goes to a temporary file and is renamed into place.

The registry is the record; these files follow it. A process killed between a
registry write and its pointer write leaves one pointer behind: ``hub verify``
names it and ``hub gc`` rewrites it from the registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from hub.blobstore import temp_file
from hub.reference import folder_name, name_from_folder

__all__ = ["RefStore"]

DELETED = ".deleted"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = temp_file(path.parent)
    try:
        with open(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


class RefStore:
    """Version and alias pointers under ``root/refs``."""

    def __init__(self, root: Path) -> None:
        self.refs = root / "refs"

    def _model(self, name: str) -> Path:
        return self.refs / folder_name(name)

    def _versions(self, name: str) -> Path:
        return self._model(name) / "versions"

    def version_path(self, name: str, version: int, *, deleted: bool = False) -> Path:
        """The pointer file of ``name:version``, or with ``deleted`` its deletion marker."""
        return self._versions(name) / f"{version}{DELETED if deleted else ''}"

    def alias_path(self, name: str, alias: str) -> Path:
        return self._model(name) / "aliases" / alias

    def files(self) -> list[Path]:
        """Every version and alias pointer file, temporary files of interrupted writes included."""
        if not self.refs.is_dir():
            return []
        return [p for p in self.refs.glob("*/*/*") if p.parent.name in ("versions", "aliases") and p.is_file()]

    def put(self, path: Path, text: str | None) -> None:
        """Write ``text`` into the pointer file ``path``, or remove it when ``text`` is None."""
        if text is None:
            path.unlink(missing_ok=True)
        else:
            _write_atomic(path, text)

    def set_version(self, name: str, version: int, digest: str) -> None:
        _write_atomic(self._versions(name) / str(version), digest)

    def remove_version(self, name: str, version: int) -> None:
        """Forget a version that was never committed."""
        (self._versions(name) / str(version)).unlink(missing_ok=True)

    def mark_deleted(self, name: str, version: int) -> None:
        """Rename the version's pointer to ``<n>.deleted``; a no-op when it is gone already
        (``hub gc`` may have repaired it from the registry in the meantime)."""
        live = self._versions(name) / str(version)
        try:
            os.replace(live, live.with_name(f"{version}{DELETED}"))
        except FileNotFoundError:
            pass

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        path = self._model(name) / "aliases" / alias
        if version is None:
            path.unlink(missing_ok=True)
        else:
            _write_atomic(path, str(version))

    def names(self) -> Iterator[str]:
        """Every model name that has a versions folder."""
        if not self.refs.is_dir():
            return
        for folder in sorted(self.refs.iterdir()):
            if (folder / "versions").is_dir() and not folder.name.startswith("."):
                yield name_from_folder(folder.name)

    def versions(self, name: str) -> Iterator[tuple[int, str | None]]:
        """``(version, manifest digest)`` pairs; the digest is None for deleted versions."""
        for entry in sorted(self._versions(name).iterdir(), key=lambda p: p.name):
            stem = entry.name.removesuffix(DELETED)
            if not stem.isdigit():
                continue
            yield int(stem), (None if entry.name.endswith(DELETED) else entry.read_text().strip())

    def aliases(self, name: str) -> Iterator[tuple[str, int]]:
        folder = self._model(name) / "aliases"
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if not entry.name.startswith("."):
                    yield entry.name, int(entry.read_text().strip())
