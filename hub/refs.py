"""Pointer files beside the blobs, so the store alone can rebuild the registry.

``refs/<model>/versions/<n>`` holds the manifest digest of version ``n``;
``refs/<model>/versions/<n>.pending`` the same while its publish has not committed yet;
``refs/<model>/versions/<n>.deleted`` marks a deleted one (its number is never
reused); ``refs/<model>/aliases/<alias>`` holds the version an alias points at, and
``refs/<model>/history/<alias>/<k>`` the ``k``-th move of that alias (who, when, from,
to), append-only. ``<model>`` is the name with ``/`` written as ``+`` (``acme+digits-cnn``).
They are keys of the store (:class:`hub.storage.BlobStore`'s key part), so a store on any
backend describes itself; every write is atomic, and one that must not replace anything is
exclusive (on a folder: a hard link).

The registry is the record; these files follow it, and are its evidence when it is
lost or damaged (``hub reindex``). A version pointer is never overwritten, and nothing
removes one the registry does not know: that would destroy the only record of a version.
A publish reserves ``<n>.pending`` before its registry commit and renames it to ``<n>``
after; a process killed in between leaves a pending pointer, which ``hub gc`` finishes
(committed) or removes (never committed). Alias pointers and history entries are written
after their registry commit; ``hub gc`` writes what a killed process left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from hub.reference import folder_name, name_from_folder
from hub.storage import BlobStore

__all__ = ["RefStore", "history_entry"]

ROOT = "refs"
DELETED = ".deleted"
PENDING = ".pending"


def _is_history_entry(entry: Any) -> bool:
    version = lambda v: v is None or (type(v) is int and v > 0)  # noqa: E731
    return (isinstance(entry, dict) and set(entry) == {"from", "to", "by", "at_ms"} and version(entry["from"])
            and version(entry["to"]) and isinstance(entry["by"], str) and type(entry["at_ms"]) is int)


def history_entry(from_version: int | None, to_version: int | None, changed_by: str, changed_at_ms: int) -> dict[str, Any]:
    """One alias move as a history file holds it."""
    return {"from": from_version, "to": to_version, "by": changed_by, "at_ms": changed_at_ms}


class RefStore:
    """Version and alias pointers, and alias history, as keys ``refs/...`` of ``store``.

    Args:
        store: the hub's store (its key part).
    """

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    def read(self, key: str) -> str | None:
        """The text of a pointer, stripped; None when it is not there."""
        text = self.store.read_text(key)
        return text.strip() if text is not None else None

    def exists(self, key: str) -> bool:
        return self.store.read_text(key) is not None

    def _model(self, name: str) -> str:
        return f"{ROOT}/{folder_name(name)}"

    def _versions(self, name: str) -> str:
        return f"{self._model(name)}/versions"

    def version_key(self, name: str, version: int, *, deleted: bool = False, pending: bool = False) -> str:
        """The key of the pointer of ``name:version``, its deletion marker, or its pending reservation."""
        return f"{self._versions(name)}/{version}{DELETED if deleted else PENDING if pending else ''}"

    def alias_key(self, name: str, alias: str) -> str:
        return f"{self._model(name)}/aliases/{alias}"

    def history_key(self, name: str, alias: str, number: int) -> str:
        """The key of the ``number``-th move (from 1) of ``alias``."""
        return f"{self._model(name)}/history/{alias}/{number}"

    def files(self) -> list[str]:
        """Every version and alias pointer key, temporary files of interrupted writes included."""
        keys = []
        for model in self.store.list(ROOT):
            for kind in ("versions", "aliases"):
                folder = f"{ROOT}/{model}/{kind}"
                keys += [f"{folder}/{entry}" for entry in self.store.list(folder) if self.exists(f"{folder}/{entry}")]
        return keys

    def leftovers(self) -> list[str]:
        """Keys of pointer writes that were interrupted."""
        return self.store.leftovers(ROOT)

    def put(self, key: str, text: str | None) -> None:
        """Write ``text`` into the pointer ``key``, or remove it when ``text`` is None."""
        if text is None:
            self.store.delete_key(key)
        else:
            self.store.write_text(key, text)

    def remove(self, key: str) -> None:
        self.store.delete_key(key)

    # --- versions -------------------------------------------------------------

    def highest(self, name: str) -> int:
        """The highest version number the store has seen for ``name`` (live, pending or deleted; 0 if none):
        the registry never hands out a number at or below it."""
        numbers = (entry.removesuffix(DELETED).removesuffix(PENDING) for entry in self.store.list(self._versions(name)))
        return max((int(n) for n in numbers if n.isdigit()), default=0)

    def reserve_version(self, name: str, version: int, digest: str) -> None:
        """Write ``<version>.pending`` for a publish about to commit.

        Raises:
            FileExistsError: the store already has (or had) that number: it is never handed out twice.
        """
        taken = [self.store.location(k) for k in (self.version_key(name, version), self.version_key(name, version, deleted=True))
                 if self.exists(k)]
        if taken or not self.store.write_text(self.version_key(name, version, pending=True), digest, exclusive=True):
            raise FileExistsError(f"the store already holds {name}:{version} ({(taken or ['a pending publish'])[0]})")

    def commit_version(self, name: str, version: int) -> None:
        """Turn the pending pointer of a committed publish into ``<version>``: a no-op when it is done already."""
        pending = self.version_key(name, version, pending=True)
        digest = self.read(pending)
        if digest is not None:
            self.set_version(name, version, digest)
            self.store.delete_key(pending)

    def remove_pending(self, name: str, version: int) -> None:
        """Forget the reservation of a publish that did not commit."""
        self.store.delete_key(self.version_key(name, version, pending=True))

    def set_version(self, name: str, version: int, digest: str) -> bool:
        """Write the pointer of a version the registry holds; never replaces one.

        Returns:
            False when a pointer for that number was there already (it is left as it is).
        """
        return self.store.write_text(self.version_key(name, version), digest, exclusive=True)

    def mark_deleted(self, name: str, version: int) -> None:
        """Rename the version's pointer to ``<n>.deleted`` (a marker is written where there is no
        pointer: ``hub gc`` may have repaired it from the registry in the meantime)."""
        live, marker = self.version_key(name, version), self.version_key(name, version, deleted=True)
        if not self.store.rename(live, marker) and not self.exists(marker):
            self.store.write_text(marker, "")

    def names(self) -> Iterator[str]:
        """Every model name with an entry (a pointer, a deletion marker or a reservation) under its
        versions folder: an emptied folder, such as a killed publish's whose reservation gc removed,
        names no model, as on an object store, where empty folders do not exist."""
        for folder in self.store.list(ROOT):
            if not folder.startswith(".") and self.store.list(f"{ROOT}/{folder}/versions"):
                yield name_from_folder(folder)

    def versions(self, name: str) -> Iterator[tuple[int, str | None]]:
        """``(version, manifest digest)`` pairs of committed versions; the digest is None for deleted ones.
        A number that has both a pointer and a deletion marker is deleted."""
        folder = self._versions(name)
        entries = set(self.store.list(folder))
        numbered = [e for e in entries if e.removesuffix(DELETED).isdigit()]
        for entry in sorted(numbered, key=lambda e: int(e.removesuffix(DELETED))):
            if entry.isdigit() and f"{entry}{DELETED}" not in entries:
                digest = self.read(f"{folder}/{entry}")
                if digest is not None:
                    yield int(entry), digest
            elif entry.endswith(DELETED):
                yield int(entry.removesuffix(DELETED)), None

    def pending(self, name: str) -> Iterator[tuple[int, str]]:
        """``(version, manifest digest)`` of reservations whose publish has not been seen to commit."""
        folder = self._versions(name)
        for entry in self.store.list(folder):
            number, digest = entry.removesuffix(PENDING), self.read(f"{folder}/{entry}") if entry.endswith(PENDING) else None
            if number.isdigit() and digest is not None:
                yield int(number), digest

    # --- aliases ----------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        self.put(self.alias_key(name, alias), None if version is None else str(version))

    def aliases(self, name: str) -> Iterator[tuple[str, int]]:
        folder = f"{self._model(name)}/aliases"
        for entry in self.store.list(folder):
            text = self.read(f"{folder}/{entry}") if not entry.startswith(".") else None
            if text is not None and text.isdigit():
                yield entry, int(text)

    def add_history(self, name: str, alias: str, number: int, entry: dict[str, Any]) -> bool:
        """Write the ``number``-th move of ``alias``; an entry that is there is never changed.

        Returns:
            True when the key holds ``entry`` (written now or before), False when it holds another.
        """
        key = self.history_key(name, alias, number)
        text = json.dumps(entry, sort_keys=True)
        return self.store.write_text(key, text, exclusive=True) or self.read(key) == text

    def history(self, name: str) -> dict[str, list[dict[str, Any]]]:
        """``{alias: [move, ...]}`` as the store keeps it, oldest first, up to the first missing entry."""
        folder = f"{self._model(name)}/history"
        moves: dict[str, list[dict[str, Any]]] = {}
        for alias in self.store.list(folder):
            if alias.startswith(".") or self.exists(f"{folder}/{alias}"):  # a file, not an alias's folder
                continue
            entries = moves[alias] = []
            while (text := self.read(f"{folder}/{alias}/{len(entries) + 1}")) is not None:
                try:
                    entry = json.loads(text)
                except ValueError:
                    break
                if not _is_history_entry(entry):
                    break  # a damaged or foreign file ends what the store can vouch for
                entries.append(entry)
        return moves
