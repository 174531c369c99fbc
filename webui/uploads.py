"""The web UI's uploads in the hub's home (``HUB_HOME/uploads/``), and their part in ``hub gc``
(registered as entry point ``modelhub.gc``: ``webui``).

A page keeps each file it is given in ``uploads/<digest>/`` (see :func:`webui.common.store_upload`),
where workers can read it, as a hub server does with a job's data (:mod:`finetune.uploads`).
``hub gc`` removes an upload folder (or a stray file or link there) once everything in it is
older than its ``min_age_seconds`` and no queued or running job reads from it (the paths the
other collectors keep). This module imports no Streamlit: ``hub gc``
loads it.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from finetune.uploads import uploads_folder
from hub.gc_roots import Keep

__all__ = ["uploads_folder", "UploadsCollector", "COLLECTOR"]


class UploadsCollector:
    """Old uploads no job reads (a :class:`hub.gc_roots.Collector`)."""

    def keep(self, hub: Any) -> Keep:
        """Nothing: what jobs read from the uploads, the fine-tuning queue keeps."""
        return Keep()

    def garbage(self, hub: Any, keep: Keep, min_age_seconds: float) -> list[tuple[Path, int]]:
        """Upload folders (and stray files or links) under ``uploads/`` whose entries are all older
        than ``min_age_seconds`` and that neither are nor hold a path of ``keep.paths``, each with
        the bytes of its files."""
        uploads = uploads_folder(hub.home)
        if not uploads.is_dir():
            return []
        now, stale = time.time(), []
        for folder in sorted(uploads.iterdir()):
            real = Path(os.path.realpath(folder))
            if any(path == real or real in path.parents for path in keep.paths):
                continue
            try:
                tree = folder.rglob("*") if folder.is_dir() and not folder.is_symlink() else ()
                entries = [folder.lstat(), *(entry.lstat() for entry in tree)]
            except FileNotFoundError:  # being written or removed right now
                continue
            if now - max(entry.st_mtime for entry in entries) >= min_age_seconds:
                stale.append((folder, sum(entry.st_size for entry in entries if stat.S_ISREG(entry.st_mode))))
        return stale


COLLECTOR = UploadsCollector()
