"""What ``hub gc`` must keep, and what else it may remove, told by the packages that keep things in a hub.

The hub knows only its own records (versions, aliases, blobs). A package that keeps more in a hub
(the fine-tuning queue keeps checkpoints of unfinished jobs as blobs and reads data files from the
home; the web UI keeps uploads) registers a :class:`Collector`: in-process with :func:`register`, or
as an entry point of the group ``modelhub.gc`` naming a collector instance::

    [project.entry-points."modelhub.gc"]
    finetune = "finetune.gc:COLLECTOR"

``hub gc`` keeps the union of every collector's :meth:`Collector.keep` (beside the blobs the
registry's versions reference) and removes each collector's :meth:`Collector.garbage`, inside the
store's exclusive lock. The hub imports nothing from those packages: they come to it.

(The module is not ``hub.gc``: importing a submodule of that name would replace the function
``hub.gc`` on the package.)
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hub.errors import InvalidArgumentError

if TYPE_CHECKING:
    from hub.api import Hub

__all__ = ["ENTRY_POINT_GROUP", "Collector", "Keep", "collectors", "keep_of", "register", "remove_path"]

ENTRY_POINT_GROUP = "modelhub.gc"


@dataclass(frozen=True)
class Keep:
    """What a package that keeps things in the hub needs kept.

    Attributes:
        digests: blobs to keep though no version references them (checkpoints of unfinished jobs).
        paths: resolved files or folders under the home that must stay (data files of queued or
            running jobs); a collector's garbage never includes one of them or anything above one.
    """

    digests: frozenset[str] = frozenset()
    paths: frozenset[Path] = frozenset()

    def __or__(self, other: Keep) -> Keep:
        return Keep(self.digests | other.digests, self.paths | other.paths)


@runtime_checkable
class Collector(Protocol):
    """A package's part in ``hub gc``."""

    def keep(self, hub: Hub) -> Keep:
        """What this package needs kept in ``hub`` now."""
        ...

    def garbage(self, hub: Hub, keep: Keep, min_age_seconds: float) -> list[tuple[Path, int]]:
        """This package's own leftovers in ``hub``: ``(path, bytes)`` each, older than
        ``min_age_seconds``, none of them under (or above) a path of ``keep.paths``."""
        ...


_registered: list[Collector] = []
_from_entry_points: list[Collector] | None = None
_lock = threading.Lock()


def _checked(collector: object, where: str) -> Collector:
    if not isinstance(collector, Collector):
        raise InvalidArgumentError(f"{where} is not a gc collector: it needs methods keep(hub) and "
                                   "garbage(hub, keep, min_age_seconds) (see hub.gc_roots.Collector)")
    return collector


def register(collector: Collector) -> None:
    """Add ``collector`` to those ``hub gc`` asks (in this process; registering one twice adds it once).

    Raises:
        InvalidArgumentError: it lacks ``keep`` or ``garbage``.
    """
    _checked(collector, repr(collector))
    with _lock:
        if all(c is not collector for c in _registered):
            _registered.append(collector)


def collectors() -> list[Collector]:
    """Every collector: those registered in this process, then the entry points of group
    ``modelhub.gc`` (loaded once).

    Raises:
        InvalidArgumentError: an entry point names something that is not a collector.
    """
    global _from_entry_points
    with _lock:
        if _from_entry_points is None:
            from hub.architectures import load_entry_points

            _from_entry_points = [_checked(loaded, f"entry point {name} = {value} ({ENTRY_POINT_GROUP})")
                                  for name, value, loaded in load_entry_points(ENTRY_POINT_GROUP)]
        found = list(_registered)
        return found + [c for c in _from_entry_points if all(c is not r for r in found)]


def keep_of(hub: Hub) -> Keep:
    """The union of what every collector needs kept in ``hub``."""
    keep = Keep()
    for collector in collectors():
        keep |= collector.keep(hub)
    return keep


def remove_path(path: Path) -> None:
    """Remove one of a collector's leftovers: a folder with what it holds, or a file (a link itself, never
    what it points at); nothing when it is gone already."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
