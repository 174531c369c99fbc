"""The fine-tuning queue's part in ``hub gc`` (registered as entry point ``modelhub.gc``: ``finetune``).

Queued and running jobs may still resume from their last checkpoint (blobs no version references)
and read their data files (uploads in the hub's home among them): ``hub gc`` keeps both. The queue
leaves no garbage of its own: a finished job's checkpoint blobs are unreferenced blobs, which
``hub gc`` removes like any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from finetune.jobs import JobStore, data_path
from hub.gc_roots import Keep

__all__ = ["JobsCollector", "COLLECTOR"]


class JobsCollector:
    """What unfinished fine-tuning jobs need kept (a :class:`hub.gc_roots.Collector`)."""

    def keep(self, hub: Any) -> Keep:
        """The checkpoint blobs and the data files (resolved) of the queued and running jobs in ``hub``."""
        digests: set[str] = set()
        paths: set[Path] = set()
        for job in JobStore(hub.db).unfinished():
            digests.update((job.checkpoint or {}).get("blobs", []))
            for key in ("train", "validation"):
                recorded = job.data.get(key)
                if isinstance(recorded, str):
                    paths.add(Path(os.path.realpath(data_path(hub.home, recorded))))
        return Keep(frozenset(digests), frozenset(paths))

    def garbage(self, hub: Any, keep: Keep, min_age_seconds: float) -> list[tuple[Path, int]]:
        """None: the queue keeps nothing of its own outside the registry and the blobs."""
        return []


COLLECTOR = JobsCollector()
