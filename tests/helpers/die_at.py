"""``python -m hub ARGS`` that kills itself with SIGKILL just before or just after one write of a
pointer file under ``refs/``, for tests/test_crash.py to look at what such a crash leaves.

    python tests/helpers/die_at.py before|after RefStore-METHOD HUB-ARGS...

e.g. ``die_at.py before set_alias tag acme/m:2 prod``: the registry has moved the alias,
its pointer file still says where it was.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    when, method, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    from hub.refs import RefStore

    original = getattr(RefStore, method)

    def write_then_die(self, *a, **kw):
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, *a, **kw)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(RefStore, method, write_then_die)
    from hub.cli import main as hub_main

    return hub_main(args)


if __name__ == "__main__":
    sys.exit(main())
