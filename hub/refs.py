"""Pointer files beside the blobs, so the store alone can rebuild the registry.

``refs/<model>/versions/<n>`` holds the manifest digest of version ``n``;
``refs/<model>/versions/<n>.pending`` the same while its publish has not committed yet;
``refs/<model>/versions/<n>.deleted`` marks a deleted one (its number is never
reused); ``refs/<model>/aliases/<alias>`` holds the version an alias points at, and
``refs/<model>/history/<alias>/<k>`` the ``k``-th move of that alias (who, when, from,
to), append-only. ``<model>`` is the name with ``/`` written as ``+`` (``acme+digits-cnn``).
Every write goes to a temporary file and is renamed (or, where it must not replace
anything, linked) into place.

The registry is the record; these files follow it, and are its evidence when it is
lost or damaged (``hub reindex``). A version pointer is never overwritten, and nothing
removes one the registry does not know: that would destroy the only record of a version.
A publish reserves ``<n>.pending`` before its registry commit and renames it to ``<n>``
after; a process killed in between leaves a pending pointer, which ``hub gc`` finishes
(committed) or removes (never committed). Alias pointers and history entries are written
after their registry commit; ``hub gc`` writes what a killed process left out.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.blobstore import temp_file
from hub.reference import folder_name, name_from_folder

__all__ = ["RefStore", "history_entry", "read_pointer"]

DELETED = ".deleted"
PENDING = ".pending"


def _write_atomic(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write ``text`` to ``path`` through a temporary file. With ``replace=False`` an existing
    file is left as it is (the write is a hard link, which fails where the name is taken).

    Returns:
        False when ``replace`` is False and ``path`` already existed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = temp_file(path.parent)
    try:
        with open(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:  # a file system without hard links: create the name exclusively instead
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            try:
                with open(path, "x") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                return True
            except FileExistsError:
                return False
        finally:
            temp.unlink(missing_ok=True)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_pointer(path: Path) -> str | None:
    """The text of a pointer file, stripped; None when it is not there."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _is_history_entry(entry: Any) -> bool:
    version = lambda v: v is None or (type(v) is int and v > 0)  # noqa: E731
    return (isinstance(entry, dict) and set(entry) == {"from", "to", "by", "at_ms"} and version(entry["from"])
            and version(entry["to"]) and isinstance(entry["by"], str) and type(entry["at_ms"]) is int)


def history_entry(from_version: int | None, to_version: int | None, changed_by: str, changed_at_ms: int) -> dict[str, Any]:
    """One alias move as a history file holds it."""
    return {"from": from_version, "to": to_version, "by": changed_by, "at_ms": changed_at_ms}


class RefStore:
    """Version and alias pointers under ``root/refs``."""

    def __init__(self, root: Path) -> None:
        self.refs = root / "refs"

    def _model(self, name: str) -> Path:
        return self.refs / folder_name(name)

    def _versions(self, name: str) -> Path:
        return self._model(name) / "versions"

    def version_path(self, name: str, version: int, *, deleted: bool = False, pending: bool = False) -> Path:
        """The pointer file of ``name:version``, its deletion marker, or its pending reservation."""
        return self._versions(name) / f"{version}{DELETED if deleted else PENDING if pending else ''}"

    def alias_path(self, name: str, alias: str) -> Path:
        return self._model(name) / "aliases" / alias

    def history_path(self, name: str, alias: str, number: int) -> Path:
        """The file of the ``number``-th move (from 1) of ``alias``."""
        return self._model(name) / "history" / alias / str(number)

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

    # --- versions -------------------------------------------------------------

    def highest(self, name: str) -> int:
        """The highest version number the store has seen for ``name`` (live, pending or deleted; 0 if none):
        the registry never hands out a number at or below it."""
        try:
            entries = os.listdir(self._versions(name))
        except FileNotFoundError:
            return 0
        numbers = (entry.removesuffix(DELETED).removesuffix(PENDING) for entry in entries)
        return max((int(n) for n in numbers if n.isdigit()), default=0)

    def reserve_version(self, name: str, version: int, digest: str) -> None:
        """Write ``<version>.pending`` for a publish about to commit.

        Raises:
            FileExistsError: the store already has (or had) that number: it is never handed out twice.
        """
        taken = [p for p in (self.version_path(name, version), self.version_path(name, version, deleted=True)) if p.exists()]
        if taken or not _write_atomic(self.version_path(name, version, pending=True), digest, replace=False):
            raise FileExistsError(f"the store already holds {name}:{version} ({(taken or ['a pending publish'])[0]})")

    def commit_version(self, name: str, version: int) -> None:
        """Turn the pending pointer of a committed publish into ``<version>``: a no-op when it is done already."""
        pending = self.version_path(name, version, pending=True)
        digest = read_pointer(pending)
        if digest is not None:
            self.set_version(name, version, digest)
            pending.unlink(missing_ok=True)

    def remove_pending(self, name: str, version: int) -> None:
        """Forget the reservation of a publish that did not commit."""
        self.version_path(name, version, pending=True).unlink(missing_ok=True)

    def set_version(self, name: str, version: int, digest: str) -> bool:
        """Write the pointer of a version the registry holds; never replaces one.

        Returns:
            False when a pointer for that number was there already (it is left as it is).
        """
        return _write_atomic(self.version_path(name, version), digest, replace=False)

    def mark_deleted(self, name: str, version: int) -> None:
        """Rename the version's pointer to ``<n>.deleted`` (a marker is written where there is no
        pointer: ``hub gc`` may have repaired it from the registry in the meantime)."""
        live, marker = self.version_path(name, version), self.version_path(name, version, deleted=True)
        try:
            os.replace(live, marker)
        except FileNotFoundError:
            if not marker.exists():
                _write_atomic(marker, "")

    def names(self) -> Iterator[str]:
        """Every model name that has a versions folder."""
        if not self.refs.is_dir():
            return
        for folder in sorted(self.refs.iterdir()):
            if (folder / "versions").is_dir() and not folder.name.startswith("."):
                yield name_from_folder(folder.name)

    def versions(self, name: str) -> Iterator[tuple[int, str | None]]:
        """``(version, manifest digest)`` pairs of committed versions; the digest is None for deleted ones.
        A number that has both a pointer and a deletion marker is deleted."""
        folder = self._versions(name)
        entries = {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()
        numbered = [e for e in entries if e.removesuffix(DELETED).isdigit()]
        for entry in sorted(numbered, key=lambda e: int(e.removesuffix(DELETED))):
            if entry.isdigit() and f"{entry}{DELETED}" not in entries:
                digest = read_pointer(folder / entry)
                if digest is not None:
                    yield int(entry), digest
            elif entry.endswith(DELETED):
                yield int(entry.removesuffix(DELETED)), None

    def pending(self, name: str) -> Iterator[tuple[int, str]]:
        """``(version, manifest digest)`` of reservations whose publish has not been seen to commit."""
        folder = self._versions(name)
        for entry in sorted(folder.glob(f"*{PENDING}")) if folder.is_dir() else ():
            number, digest = entry.name.removesuffix(PENDING), read_pointer(entry)
            if number.isdigit() and digest is not None:
                yield int(number), digest

    # --- aliases ----------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        path = self.alias_path(name, alias)
        if version is None:
            path.unlink(missing_ok=True)
        else:
            _write_atomic(path, str(version))

    def aliases(self, name: str) -> Iterator[tuple[str, int]]:
        folder = self._model(name) / "aliases"
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                text = read_pointer(entry) if not entry.name.startswith(".") else None
                if text is not None and text.isdigit():
                    yield entry.name, int(text)

    def add_history(self, name: str, alias: str, number: int, entry: dict[str, Any]) -> bool:
        """Write the ``number``-th move of ``alias``; an entry that is there is never changed.

        Returns:
            True when the file holds ``entry`` (written now or before), False when it holds another.
        """
        path = self.history_path(name, alias, number)
        text = json.dumps(entry, sort_keys=True)
        return _write_atomic(path, text, replace=False) or read_pointer(path) == text

    def history(self, name: str) -> dict[str, list[dict[str, Any]]]:
        """``{alias: [move, ...]}`` as the store keeps it, oldest first, up to the first missing entry."""
        folder = self._model(name) / "history"
        moves: dict[str, list[dict[str, Any]]] = {}
        for alias_folder in sorted(folder.iterdir()) if folder.is_dir() else ():
            if alias_folder.name.startswith(".") or not alias_folder.is_dir():
                continue
            entries = moves[alias_folder.name] = []
            while (text := read_pointer(alias_folder / str(len(entries) + 1))) is not None:
                try:
                    entry = json.loads(text)
                except ValueError:
                    break
                if not _is_history_entry(entry):
                    break  # a damaged or foreign file ends what the store can vouch for
                entries.append(entry)
        return moves
