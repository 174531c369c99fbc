"""``python -m finetune ARGS`` that stops for good at one moment of publishing a job's result,
for tests/test_crash.py to kill it there with SIGKILL.

    python tests/helpers/stall_worker.py after-blobs|before-finish MARKER worker --once

``after-blobs``: the version's weights and card are in the blob store, but neither its
manifest nor its registry row exists. ``before-finish``: the version is published, but the
job is not yet marked succeeded. MARKER is created at that moment; the process then sleeps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def stall(marker: Path) -> None:
    marker.touch()
    while True:
        time.sleep(60)


def main() -> int:
    where, marker, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    if where == "after-blobs":
        from hub.publisher import Publisher

        store_files = Publisher._store_files

        def stored_then_stall(self, *a, **kw):
            result = store_files(self, *a, **kw)
            stall(marker)
            return result

        Publisher._store_files = stored_then_stall
    elif where == "before-finish":
        from finetune.jobs import JobStore

        finish = JobStore.finish

        def stall_before_success(self, job_id, worker, status, **kw):
            if status == "succeeded":
                stall(marker)
            return finish(self, job_id, worker, status, **kw)

        JobStore.finish = stall_before_success
    else:
        raise SystemExit(f"unknown stall point {where!r}; use after-blobs or before-finish")
    from finetune.cli import main as finetune_main

    return finetune_main(args)


if __name__ == "__main__":
    sys.exit(main())
