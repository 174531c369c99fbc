"""Keeping a hub healthy: verify its bytes, collect its garbage, rebuild its registry from the store.

``gc`` keeps what the registry's versions reference, what only the store knows (evidence for
``reindex``), and what every package's collector (:mod:`hub.gc_roots`) needs kept; it removes the rest
and each collector's own leftovers, under the store's exclusive lock.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub import settings
from hub.entities import GcReport, ReindexReport, VerifyReport
from hub.errors import DamagedRegistryError, HubError, InvalidArgumentError, UnsafeFormatError
from hub.gc_roots import Keep, collectors, keep_of, remove_path
from hub.manifest import Manifest
from hub.safetensors_io import read_header

if TYPE_CHECKING:
    from hub.api import Hub

__all__ = ["Maintenance"]


def _applied(repair: Any, full_disk: list[Any] | None) -> bool:
    """Apply one of gc's store repairs; on a full disk, put it in ``full_disk`` (False) or, with None,
    raise :class:`NoSpaceError`: gc frees space first and writes after."""
    from hub.errors import NoSpaceError, storage_error

    try:
        repair.apply()
        return True
    except OSError as exc:
        problem = storage_error(exc, repair.path)
        if not isinstance(problem, NoSpaceError):
            raise
        if full_disk is None:
            raise problem from exc
        full_disk.append(repair)
        return False


class Maintenance:
    """``verify``, ``gc``, ``reindex`` and the registry's schema.

    Args:
        hub: the :class:`Hub` it looks after.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def check_exists(self, *, registry: bool = True, store: bool = False) -> None:
        """Make sure there is a hub here to read, creating nothing.

        A read finds nothing in a hub that is not there, and would leave an empty one behind (a
        SQLite registry, folders) where ``HUB_HOME`` points by mistake; the command line's reads
        (``list``, ``info``, ``verify``, ``download``, ...) ask this first. Writes that make a hub
        (:meth:`publish`, :meth:`import_hf`, ``hub demo``, :meth:`upgrade_db`) don't.

        Args:
            registry: the registry must be there with modelhub's tables (a SQLite registry: its file).
                A registry outside ``home`` (PostgreSQL) is enough for reads of the registry alone.
            store: the home folder (blobs, pointers) must be there too.

        Raises:
            HubNotFoundError: saying what is missing, and how to make a hub or where to point ``HUB_HOME``.
            RegistryError: the registry can't be reached or read (``DamagedRegistryError``: see :meth:`reindex`).
        """
        from hub.errors import HubNotFoundError

        path = self.hub.db.sqlite_path
        inside = path is not None and path.parent == self.hub.home  # the default: the hub is its folder, registry and all
        there = self.hub.home.is_dir()
        where = self.hub.home if inside else f"{self.hub.home} with the registry at {self.hub.db.shown_url}"
        none_here = HubNotFoundError(f"no hub at {where}: `hub demo` makes one with sample models, or `hub publish` "
                                     "creates it; set HUB_HOME to use another")
        if registry and ((path is not None and not path.is_file()) or self.hub.db.schema_revision() is None):
            if there and next(self.hub.refs.names(), None) is not None:
                raise HubNotFoundError(f"no registry at {self.hub.db.shown_url}, though the store at {self.hub.home} holds models: "
                                       "`hub reindex` rebuilds the registry from it")
            raise none_here
        if store and not there:
            if inside:
                raise none_here
            raise HubNotFoundError(f"no hub at {self.hub.home}: the folder does not exist, so the files of the registry's versions "
                                   f"({self.hub.db.shown_url}) are not here; set HUB_HOME to the hub's folder")

    def verify(self, ref: str | None = None, *, min_age_seconds: float = settings.GC_MIN_AGE_S) -> VerifyReport:
        """Check stored bytes against manifests: every live version, or just ``ref``.

        Each file's size and sha256 are checked, each weight file's safetensors header,
        and each manifest against the registry. Leftovers (interrupted writes, blobs no
        version needs, pointer files a killed process left behind) are listed for
        :meth:`gc`; they are not problems. Versions or alias moves only the store knows
        of, and pointers that disagree with the registry, are problems for :meth:`reindex`.

        Args:
            ref: one version to check (no leftovers are listed then); None for all.
            min_age_seconds: list only leftovers older than this (as :meth:`gc` removes only
                those): a younger temporary file, unreferenced blob or pointer may be a publish or
                alias move still in flight, not a leftover. 0 lists all.

        Raises:
            InvalidReferenceError, ModelNotFoundError: for a bad ``ref``.
            InvalidArgumentError: a negative ``min_age_seconds``.
        """
        if not min_age_seconds >= 0:
            raise InvalidArgumentError(f"min_age_seconds must be >= 0, got {min_age_seconds}").about("min_age_seconds")
        checked, problems = [], []
        for version in self.hub.catalog.all_versions(ref):
            checked.append(version.ref)
            problem = self.hub.blobs.problem(version.digest, None, check_hash=True)
            if problem:
                problems.append(f"{version.ref}: manifest: {problem}")
            else:
                try:
                    manifest = Manifest.from_json(self.hub.blobs.read_bytes(version.digest), source=f"{version.ref} manifest")
                    if (manifest.name, manifest.version, manifest.files) != (version.name, version.version, version.files):
                        problems.append(f"{version.ref}: manifest does not match the registry; run `hub reindex`")
                except HubError as exc:
                    problems.append(f"{version.ref}: manifest: {exc}")
            for entry in version.files:
                problem = self.hub.blobs.problem(entry.sha256, entry.size, check_hash=True)
                if problem is None and entry.path in version.weight_files:
                    try:  # whole and hashing right, but can it load?
                        read_header(self.hub.blobs.local_path(entry.sha256))
                    except (UnsafeFormatError, OSError) as exc:
                        problem = str(exc)
                if problem:
                    problems.append(f"{version.ref}: file {entry.path!r}: {problem}")
        leftovers = []
        if ref is None:
            from hub.reconcile import store_repairs

            repairs, disagreements = store_repairs(self.hub, min_age_seconds=0)  # every disagreement, however recent
            if min_age_seconds > 0:
                repairs = store_repairs(self.hub, min_age_seconds)[0]
            leftovers = [self.hub.blobs.location(k) for k in self._garbage(min_age_seconds, keep_of(self.hub))] + [r.path for r in repairs]
            problems += disagreements
        return VerifyReport(tuple(checked), tuple(problems), tuple(leftovers))

    def _garbage(self, min_age_seconds: float, keep: Keep) -> list[str]:
        """Keys of the blobs no version needs (nor ``keep``), of interrupted blob writes and of partial uploads,
        older than ``min_age_seconds``."""
        from hub.reconcile import unindexed_digests

        blobs, now = self.hub.blobs, time.time()
        referenced = self.hub.registry.referenced_digests() | keep.digests
        referenced |= unindexed_digests(self.hub)  # versions only the store knows: evidence for `hub reindex`
        candidates = blobs.leftovers("blobs") + [f"blobs/{d}" for d in blobs.digests() if d not in referenced]
        candidates += blobs.partial_uploads()  # uploads to `hub serve` that stopped and were never continued
        return sorted(k for k in candidates if blobs.age_seconds(k, now) >= min_age_seconds)

    def gc(self, *, min_age_seconds: float = settings.GC_MIN_AGE_S, dry_run: bool = False) -> GcReport:
        """Remove blobs that no live version needs, files left by interrupted writes, and
        uploads (``HUB_HOME/uploads``, where the web UI keeps what it was given) that no
        queued or running fine-tuning job reads.

        Pointer files under ``refs/`` that disagree with the registry (left by a process killed
        between the two writes) are rewritten from it, or removed; they are listed with the rest.

        It waits for publishes under way to commit (they hold the store while their blobs
        are not yet recorded), so even ``min_age_seconds=0`` never takes a blob a new version needs.
        On a full disk it works too: it removes first and writes its repairs after.

        Args:
            min_age_seconds: spare anything written more recently than this (also where the
                store can't be locked: on Windows, keep it above the longest publish).
            dry_run: only report what would go (this works on a read-only home too).

        Raises:
            ReadOnlyError: the home is read-only (or not this user's): it can't be collected there.
        """
        if not min_age_seconds >= 0:
            raise InvalidArgumentError(f"min_age_seconds must be >= 0, got {min_age_seconds}").about("min_age_seconds")
        from hub.reconcile import check_related, store_repairs

        removed, freed, blobs = [], 0, self.hub.blobs
        with nullcontext() if dry_run else blobs.collecting():  # waits for running publishes to commit
            check_related(self.hub)
            full_disk = []  # repairs that found no space: done again once the garbage is gone
            for repair in store_repairs(self.hub, min_age_seconds)[0]:
                if not dry_run and not _applied(repair, full_disk):
                    continue
                removed.append(str(repair.path))
            keep = keep_of(self.hub)
            for key in self._garbage(min_age_seconds, keep):
                size = blobs.key_size(key)
                if size is None:
                    continue
                if not dry_run:
                    blobs.delete_key(key)
                removed.append(blobs.location(key))
                freed += size
            for collector in collectors():
                for path, size in collector.garbage(self.hub, keep, min_age_seconds):
                    if not dry_run:
                        remove_path(path)
                    removed.append(str(path))
                    freed += size
            for repair in full_disk:
                _applied(repair, None)
                removed.append(str(repair.path))
        return GcReport(tuple(removed), freed)

    def reindex(self, *, dry_run: bool = False, force: bool = False) -> ReindexReport:
        """Bring the registry up to date with the store (pointer files, manifests, alias history).

        Safe to run at any time, beside publishers on other machines: it holds the store's
        exclusive lock (as ``gc`` does), adds what the store holds and the registry lacks (a lost
        or new database is rebuilt whole; alias history comes back with who moved what, when),
        deletes what the store marks deleted, and keeps registry rows the store has no evidence
        against. A SQLite registry file that is damaged is moved aside and rebuilt.

        Args:
            dry_run: only report what would change.
            force: let the store win where the two disagree, and mark registry versions the store
                has no pointer for deleted (their numbers stay taken), instead of refusing.

        Returns:
            A :class:`ReindexReport`.

        Raises:
            ReindexRefusedError: without ``force``: the store is empty or another hub's while the
                registry is not, or they disagree about a version or an alias's history.
        """
        from hub.reconcile import plan_reindex, store_repairs

        with nullcontext() if dry_run else self.hub.blobs.collecting():
            moved_aside, readable = None, True
            try:
                self.hub.db.ensure_schema()
            except DamagedRegistryError:
                readable = False
                moved_aside = f"{self.hub.db.shown_url} (would be moved aside)" if dry_run else str(self.hub.db.move_aside())
            report, changes = plan_reindex(self.hub, force=force, dry_run=dry_run, registry_readable=readable)
            report = replace(report, moved_aside=moved_aside)
            if not dry_run:
                self.hub.registry.reconcile(changes, settings.current_user())
                for repair in store_repairs(self.hub, min_age_seconds=0)[0]:
                    repair.apply()
            return report

    def upgrade_db(self) -> str:
        """Migrate the registry schema to the newest revision (``hub db upgrade``); return it."""
        self.hub.db.upgrade()
        self.hub.db.ensure_schema()
        return self.hub.db.schema_revision() or ""
