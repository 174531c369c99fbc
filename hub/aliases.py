"""Moving aliases and deleting versions: the registry's change first, then the store's pointers.

Each change holds the store (:meth:`BlobStore.in_use`), so gc, which repairs pointers from the
registry, waits for both writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub import settings
from hub.entities import AliasChange, ModelVersion
from hub.errors import InvalidArgumentError
from hub.reference import parse_reference, validate_alias, validate_name, validate_version

if TYPE_CHECKING:
    from hub.api import Hub

__all__ = ["Aliases"]


class Aliases:
    """Alias moves and version deletion.

    Args:
        hub: the :class:`Hub` whose registry and pointers it changes.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def set_alias(self, name: str, alias: str, version: int) -> AliasChange | None:
        """Point ``alias`` at ``version`` of ``name`` (the move is kept in its history).

        Returns:
            The change, or None if it already pointed there.

        Raises:
            InvalidReferenceError: bad name, alias (``latest`` is reserved) or version.
            ModelNotFoundError, VersionNotFoundError: no such live version.
        """
        validate_name(name)
        validate_alias(alias)
        version = validate_version(version)
        with self.hub.blobs.in_use():  # gc, which repairs pointers from the registry, waits for both writes
            change = self.hub.registry.set_alias(name, alias, version, settings.current_user())
            self.write_alias(name, alias, version)
        return change

    def write_alias(self, name: str, alias: str, version: int | None) -> None:
        """After a committed alias change: its pointer, and its history in the store (append-only)."""
        from hub.reconcile import write_history

        self.hub.refs.set_alias(name, alias, version)
        write_history(self.hub, name, alias)

    def delete_alias(self, name: str, alias: str) -> AliasChange:
        """Remove ``alias`` from ``name``.

        Raises:
            InvalidReferenceError, ModelNotFoundError, AliasNotFoundError.
        """
        with self.hub.blobs.in_use():
            change = self.hub.registry.delete_alias(validate_name(name), validate_alias(alias), settings.current_user())
            self.write_alias(name, alias, None)
        return change

    def delete_version(self, ref: str) -> ModelVersion:
        """Delete one version (``name:VERSION``); its number is never reused and aliases on it are removed.

        Its blobs are freed by :meth:`gc` when no other version shares them.

        Raises:
            InvalidReferenceError: ``ref`` does not name an explicit version.
            ModelNotFoundError, VersionNotFoundError.
        """
        parsed = parse_reference(ref)
        if parsed.version is None:
            raise InvalidArgumentError(f"delete needs an explicit version like '{parsed.name}:3', not {ref!r}")
        version = self.hub.registry.resolve(parsed)
        with self.hub.blobs.in_use():
            for change in self.hub.registry.delete_version(parsed.name, parsed.version, settings.current_user()):
                self.write_alias(parsed.name, change.alias, None)
            self.hub.refs.mark_deleted(parsed.name, parsed.version)
        return version
