"""Keeping the registry and the store's pointer files (``refs/``) in agreement.

Two directions, each one-sided so that neither can lose an acknowledged version:

- :func:`store_repairs` (``hub gc``, ``hub verify``): the registry is the record, and the
  store's pointers follow it. Repairs only *add* to the store (a pointer, a deletion marker, an
  alias history entry a killed process did not write), rewrite alias pointers, and remove
  reservations of publishes that never committed. A pointer the registry does not know is never
  removed: it is the only record of a version the registry lost. It is a problem for
  ``hub reindex`` instead.
- :func:`plan_reindex` (``hub reindex``): the store is the evidence. What the store holds and
  the registry lacks is added; versions the store marks deleted are deleted; registry rows the
  store has no evidence against are kept. Disagreements, and a store with no evidence for any
  registry row (empty, or another hub's), refuse the reindex unless it is forced.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.entities import ReindexReport
from hub.errors import HubError, ReindexRefusedError, UnrelatedStoreError
from hub.manifest import Manifest
from hub.refs import history_entry
from hub.registry.store import ModelChanges, now_ms

if TYPE_CHECKING:
    from hub.api import Hub

__all__ = ["Repair", "store_repairs", "unindexed_digests", "write_history", "check_related", "plan_reindex"]

SHOWN = 5  # how many disagreements an error message names
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Repair:
    """One change ``hub gc`` makes under ``refs/``: ``path`` is where the key it writes or removes
    lives (:meth:`BlobStore.location`)."""

    path: str
    apply: Callable[[], Any]


def _registry_history(hub: Hub, name: str | None = None, alias: str | None = None) -> dict[tuple[str, str], list[dict[str, Any]]]:
    moves: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for model, which, before, after, by, at_ms in hub.registry.history_rows(name, alias):
        moves[model, which].append(history_entry(before, after, by, at_ms))
    return moves


def write_history(hub: Hub, name: str, alias: str) -> None:
    """Write the alias moves the registry has and the store lacks (after a move commits)."""
    for number, entry in enumerate(_registry_history(hub, name, alias)[name, alias], 1):
        hub.refs.add_history(name, alias, number, entry)


def store_repairs(hub: Hub, min_age_seconds: float) -> tuple[list[Repair], list[str]]:
    """What the store's pointers need to agree with the registry, and where they can't.

    Entries the registry or the file changed less than ``min_age_seconds`` ago are spared (a
    publish or alias move may be between its two writes).

    Returns:
        ``(repairs, problems)``: repairs for ``hub gc`` to apply; problems (the store knows
        versions or alias moves the registry does not, or they disagree) for ``hub reindex``.
    """
    refs, now, where = hub.refs, time.time(), hub.blobs.location

    def settled(changed_s: float, *keys: str) -> bool:
        return now - changed_s >= min_age_seconds and all(hub.blobs.age_seconds(k, now) >= min_age_seconds for k in keys if refs.exists(k))

    repairs: list[Repair] = []
    problems: list[str] = []
    versions, aliases = hub.registry.pointers()
    known = set()
    for name, number, digest, deleted, changed_ms in versions:
        known.add((name, number))
        live, marker, pending = (refs.version_key(name, number, deleted=d, pending=p) for d, p in ((0, 0), (1, 0), (0, 1)))
        if not settled(changed_ms / 1000, live, marker, pending):
            continue
        if deleted:
            if not refs.exists(marker):
                repairs.append(Repair(where(marker), lambda n=name, v=number: refs.mark_deleted(n, v)))
            if refs.exists(pending):
                repairs.append(Repair(where(pending), lambda n=name, v=number: refs.remove_pending(n, v)))
        elif refs.exists(marker):
            problems.append(f"{name}:{number} is live in the registry but deleted in the store ({where(marker)}); "
                            "`hub reindex` deletes it in the registry too")
        elif refs.exists(live):
            if refs.read(live) != digest:
                problems.append(f"{name}:{number}: the store's pointer {where(live)} names manifest {refs.read(live)}, the registry "
                                f"{digest}; `hub reindex --dry-run` shows the disagreement")
            if refs.exists(pending):
                repairs.append(Repair(where(pending), lambda n=name, v=number: refs.remove_pending(n, v)))
        elif refs.read(pending) == digest:
            repairs.append(Repair(where(live), lambda n=name, v=number: refs.commit_version(n, v)))
        else:
            repairs.append(Repair(where(live), lambda n=name, v=number, d=digest: refs.set_version(n, v, d)))
    for name in refs.names():
        for number, digest in refs.versions(name):
            if (name, number) not in known:
                state = "deleted" if digest is None else f"manifest {digest[:80]}"
                problems.append(f"the store has {name}:{number} ({state}) but the registry does not; `hub reindex` adds it")
        for number, _ in refs.pending(name):
            key = refs.version_key(name, number, pending=True)
            if (name, number) not in known and settled(0.0, key):
                repairs.append(Repair(where(key), lambda k=key: refs.remove(k)))  # a publish that never committed

    wanted = {refs.alias_key(name, alias): (str(number), changed_ms / 1000) for name, alias, number, changed_ms in aliases}
    indexed = {refs.alias_key(name, "x").rpartition("/")[0] for name, *_ in versions}  # models the registry knows
    for key in refs.files():
        folder, _, entry = key.rpartition("/")
        if not folder.endswith("/aliases") or entry.startswith("."):
            continue
        if key not in wanted and folder in indexed and settled(0.0, key):
            repairs.append(Repair(where(key), lambda k=key: refs.remove(k)))
    for key, (text, changed_s) in wanted.items():
        if refs.read(key) != text and settled(changed_s, key):
            repairs.append(Repair(where(key), lambda k=key, t=text: refs.put(k, t)))

    stored = {name: refs.history(name) for name in {name for name, *_ in versions} | set(refs.names())}
    registry_moves = _registry_history(hub)
    for (name, alias), moves in registry_moves.items():
        kept = stored.get(name, {}).get(alias, [])
        if moves[: len(kept)] != kept:
            problems.append(f"{name}@{alias}: the store's alias history disagrees with the registry's; `hub reindex --dry-run` shows it")
            continue
        for number, entry in enumerate(moves[len(kept):], len(kept) + 1):
            if settled(entry["at_ms"] / 1000):
                key = refs.history_key(name, alias, number)
                repairs.append(Repair(where(key), lambda n=name, a=alias, k=number, e=entry: refs.add_history(n, a, k, e)))
    for name, histories in stored.items():
        for alias, kept in histories.items():
            if len(kept) > len(registry_moves.get((name, alias), [])):
                problems.append(f"the store has alias moves of {name}@{alias} that the registry does not; `hub reindex` restores them")

    for key in refs.leftovers():
        if settled(0.0, key):
            repairs.append(Repair(where(key), lambda k=key: refs.remove(k)))
    return sorted(repairs, key=lambda r: r.path), problems


def unindexed_digests(hub: Hub) -> set[str]:
    """The blobs of versions the store has a pointer for and the registry lacks (a lost or stale
    registry): their manifests and files. ``hub gc`` keeps them, so ``hub reindex`` can bring them back."""
    rows = hub.registry.pointers()[0]
    known = {(name, number, digest) for name, number, digest, deleted, _ in rows if not deleted}
    deleted = {(name, number) for name, number, _, gone, _ in rows if gone}  # the registry's delete is the record
    digests: set[str] = set()
    for name in hub.refs.names():
        for number, digest in hub.refs.versions(name):
            if digest is None or (name, number, digest) in known or (name, number) in deleted:
                continue
            try:
                digests.update(f.sha256 for f in _read_manifest(hub, name, number, digest).files)
                digests.add(digest)
            except HubError:
                digests.add(digest)  # damaged, missing or not a sha256: nothing more to keep
    return digests


def _unrelated(hub: Hub, rows: int, remedy: str) -> UnrelatedStoreError:
    return UnrelatedStoreError(
        f"the store at {hub.home} holds none of the {rows} version(s) the registry at {hub.db.shown_url} has: it is empty or "
        f"another hub's. Check HUB_HOME and HUB_REGISTRY_URL; {remedy}"
    )


def check_related(hub: Hub) -> None:
    """Refuse to collect garbage in a store that holds none of the registry's versions (a wrong
    ``HUB_HOME`` beside a shared registry): every blob there would look unreferenced, and the
    registry's pointers would be written into another hub's store.

    Raises:
        UnrelatedStoreError: the registry has versions and the store none of them.
    """
    versions = hub.registry.pointers()[0]
    if not versions:
        return
    stored = {name: dict(hub.refs.versions(name)) for name in {name for name, *_ in versions}}
    if not any(number in stored[name] for name, number, *_ in versions):
        raise _unrelated(hub, len(versions), "`hub gc` deletes nothing here")


def _read_manifest(hub: Hub, name: str, number: int, digest: str) -> Manifest:
    if not SHA256.fullmatch(digest):
        raise ReindexRefusedError(f"the pointer of {name}:{number} holds {digest[:80]!r}, not a sha256")
    manifest = Manifest.from_json(hub.blobs.read_bytes(digest), source=f"manifest {digest}")
    if (manifest.name, manifest.version) != (name, number):
        raise ReindexRefusedError(f"refs say {name}:{number} is manifest {digest}, which describes {manifest.name}:{manifest.version}")
    return manifest


def plan_reindex(hub: Hub, *, force: bool, dry_run: bool, registry_readable: bool = True) -> tuple[ReindexReport, list[ModelChanges]]:
    """Compare the store with the registry and decide what ``reindex`` changes in the registry.

    Args:
        force: let the store win where they disagree, and mark registry versions the store has no
            pointer for deleted (numbers stay taken), instead of refusing.
        dry_run: only report.
        registry_readable: False when the registry is being rebuilt from nothing (a damaged file).

    Returns:
        The report and, per model, the changes for :meth:`RegistryStore.reconcile`.

    Raises:
        ReindexRefusedError: without ``force``, when the store has no evidence for any registry
            version (empty, or another hub's), or disagrees with it, or a manifest can't be read.
    """
    refs = hub.refs
    registry_versions: dict[str, dict[int, tuple[str | None, bool]]] = defaultdict(dict)
    registry_aliases: dict[str, dict[str, int]] = defaultdict(dict)
    registry_moves: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if registry_readable:
        versions, aliases = hub.registry.pointers()
        for name, number, digest, deleted, _ in versions:
            registry_versions[name][number] = (digest, deleted)
        for name, alias, number, _ in aliases:
            registry_aliases[name][alias] = number
        registry_moves = _registry_history(hub)

    report: dict[str, list[str]] = defaultdict(list)
    changes, evidence, restored = [], 0, 0
    for name in sorted(set(refs.names()) | set(registry_versions)):
        change, stored, pending = ModelChanges(name), dict(refs.versions(name)), dict(refs.pending(name))
        registry = registry_versions.get(name, {})
        live = {number for number, (_, deleted) in registry.items() if not deleted}
        for number in sorted(set(stored) | set(registry) | set(pending)):
            ref, digest = f"{name}:{number}", stored.get(number)
            if number not in registry:
                if number not in stored:
                    report["pending"].append(ref)
                    continue
                try:
                    manifest = (_read_manifest(hub, name, number, digest) if digest is not None
                                else Manifest(name=name, version=number, created_at_ms=now_ms(), files=(), weights=()))
                except HubError as exc:
                    report["conflicts"].append(f"{ref}: {exc}")
                    continue
                change.add.append((manifest, digest))
                report["added"].append(ref if digest is not None else f"{ref} (deleted)")
                live.update([number] if digest is not None else [])
                continue
            registry_digest, deleted = registry[number]
            if number not in stored:
                if pending.get(number) == registry_digest:
                    evidence += 1  # committed; gc turns its reservation into a pointer
                elif not deleted and force:
                    change.delete.append(number)
                    report["dropped"].append(ref)
                    live.discard(number)
                elif not deleted:
                    report["kept"].append(ref)
                continue
            evidence += 1
            if digest is None and not deleted:
                change.delete.append(number)
                report["deleted"].append(ref)
                live.discard(number)
            elif digest is not None and not deleted and digest != registry_digest:
                if not force:
                    report["conflicts"].append(f"{ref}: the store's pointer names manifest {digest}, the registry {registry_digest}")
                    continue
                try:
                    change.replace.append((_read_manifest(hub, name, number, digest), digest))
                    report["replaced"].append(ref)
                except HubError as exc:
                    report["conflicts"].append(f"{ref}: {exc}")

        stored_moves, alias_files = refs.history(name), dict(refs.aliases(name))
        for alias in sorted(set(stored_moves) | {a for n, a in registry_moves if n == name} | set(alias_files) | set(registry_aliases[name])):
            kept, known = stored_moves.get(alias, []), registry_moves.get((name, alias), [])
            if kept[: len(known)] == known:
                merged = kept
                if len(kept) > len(known):
                    change.history[alias] = kept[len(known):]
                    restored += len(kept) - len(known)
            elif known[: len(kept)] == kept:
                merged = known  # the store lacks the newest moves: gc writes them
            elif force:
                merged, change.history[alias], change.reset_history[alias] = kept, kept, True
                restored += len(kept)
            else:
                report["conflicts"].append(f"{name}@{alias}: the store's alias history disagrees with the registry's")
                continue
            target = merged[-1]["to"] if merged else None
            if not merged and alias in alias_files and alias not in registry_aliases[name]:
                if alias_files[alias] in live:  # a store written before alias history was kept in it
                    change.moves[alias] = alias_files[alias]
                    report["aliases"].append(f"{name}@{alias} -> {alias_files[alias]}")
            elif target is not None and target not in live:  # on a version the store deleted: removed, as a delete does
                change.aliases[alias], change.moves[alias] = target, None  # the move's history says from where
                report["aliases"].append(f"{name}@{alias} -> (removed: {name}:{target} is deleted)")
            elif merged and target != registry_aliases[name].get(alias):
                change.aliases[alias] = target
                report["aliases"].append(f"{name}@{alias} -> {target if target is not None else '(removed)'}")
        if change.add or change.delete or change.replace or change.history or change.aliases or change.moves:
            changes.append(change)

    rows = sum(len(numbers) for numbers in registry_versions.values())
    if rows and not evidence and not force:
        raise _unrelated(hub, rows, "only if this store is the right one and the registry's versions are really gone, "
                                    "`hub reindex --force` makes the registry match it (versions it lacks are marked "
                                    "deleted, their numbers stay taken)")
    if report["conflicts"] and not force:
        shown = "; ".join(report["conflicts"][:SHOWN]) + (f"; and {len(report['conflicts']) - SHOWN} more" if len(report["conflicts"]) > SHOWN else "")
        raise ReindexRefusedError(
            f"the store and the registry disagree: {shown}. Nothing was changed; `hub reindex --dry-run --force` shows what "
            "`--force` would do (the store wins)"
        )
    live_after = sum(1 for numbers in registry_versions.values() for _, deleted in numbers.values() if not deleted)
    live_after += sum(1 for c in changes for _, d in c.add if d) - sum(len(c.delete) for c in changes)
    result = ReindexReport(dry_run=dry_run, history=restored, live=live_after,
                           **{key: tuple(values) for key, values in report.items()})
    return result, changes
