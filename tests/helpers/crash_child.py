"""Processes for tests/test_crash.py to kill with SIGKILL: each publishes, collects garbage or
moves aliases in a loop against the hub that ``HUB_HOME`` and ``HUB_REGISTRY_URL`` name.

    python tests/helpers/crash_child.py [--torch]

starts a zygote: it imports hub once (and with ``--torch`` torch, over a second here), then
for each line ``publish|gc|alias JOURNAL SEED`` read from stdin forks a child that runs that
loop, prints the child's pid, waits for it to die (the test kills it) and prints ``died
STATUS``. So a kill costs milliseconds, not an interpreter start. The zygote opens no
database connection and runs no torch op, so nothing is shared across the fork.

A child appends lines to JOURNAL (unbuffered, so a kill loses none it wrote): ``ready``
once it is set up, then ``begin ...`` before and ``end ...`` after each operation, so the
test can tell whether a kill landed mid-operation and which results were acknowledged.
"""

from __future__ import annotations

import os
import random
import sys
import time

BIG = "crash/big"  # ~5-20 MB state dicts: a publish long enough to be hit mid-write
SMALL = ("crash/small-a", "crash/small-b")
ALIASES = ("prod", "canary")
ALIASED = "crash/aliased"  # the model the alias loop moves aliases on (the parent publishes it)


class Journal:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, *words: object) -> None:
        os.write(self.fd, (" ".join(map(str, words)) + "\n").encode())


def publish_loop(journal: Journal, rng: random.Random) -> None:
    import torch

    import hub

    hub.default_hub().db.ensure_schema()
    base = torch.randn(5 * 1024 * 1024, generator=torch.Generator().manual_seed(rng.randrange(2**31)))  # 20 MB
    journal.write("ready", os.getpid())
    for i in range(10**9):
        time.sleep(rng.uniform(0, 0.03))  # so kills also land between publishes
        iteration = f"{os.getpid()}-{i}"
        if rng.random() < 0.6:
            name = BIG
            size = rng.randrange(len(base) // 4, len(base))  # 5-20 MB
            weights = {"w": base[:size] + i, "step": torch.tensor([os.getpid(), i])}
        else:
            name = rng.choice(SMALL)
            weights = {"w": torch.full((rng.randrange(8, 4096),), float(i)), "step": torch.tensor([os.getpid(), i])}
        aliases = rng.sample(ALIASES, rng.choice([0, 0, 1, 2]))
        journal.write("begin", iteration, name, ",".join(aliases) or "-")
        start = time.perf_counter()
        version = hub.publish(weights, name, aliases=aliases, metadata={"iteration": iteration})
        journal.write("end", iteration, name, version.version, f"{time.perf_counter() - start:.3f}")


def gc_loop(journal: Journal, rng: random.Random) -> None:
    import hub

    hub.default_hub().db.ensure_schema()
    journal.write("ready", os.getpid())
    for i in range(10**9):
        journal.write("begin", i)
        report = hub.gc(min_age_seconds=0)
        journal.write("end", i, len(report.removed))


def alias_loop(journal: Journal, rng: random.Random) -> None:
    import hub

    versions = [v.version for v in hub.list_versions(ALIASED)]
    journal.write("ready", os.getpid())
    for i in range(10**9):
        alias = rng.choice(ALIASES)
        if rng.random() < 0.15:
            journal.write("begin", i, alias, "-")
            try:
                change = hub.delete_alias(ALIASED, alias)
            except hub.AliasNotFoundError:
                journal.write("end", i, alias, "absent")
                continue
        else:
            target = rng.choice(versions)
            journal.write("begin", i, alias, target)
            change = hub.set_alias(ALIASED, alias, target)
            if change is None:
                journal.write("end", i, alias, "unchanged")
                continue
        journal.write("end", i, alias, f"{change.from_version}->{change.to_version}")


def zygote(preload_torch: bool) -> None:
    import sqlalchemy.orm

    import hub.api
    import hub.registry.schema  # noqa: F401

    if preload_torch:
        import torch  # noqa: F401

        import hub.loader
        import hub.publishing
        import hub.safetensors_io  # noqa: F401
    sqlalchemy.orm.configure_mappers()  # what a first publish would otherwise spend its time on
    loops = {"publish": publish_loop, "gc": gc_loop, "alias": alias_loop}
    for line in sys.stdin:
        mode, path, seed = line.split()
        pid = os.fork()
        if pid == 0:
            journal = Journal(path)
            try:
                loops[mode](journal, random.Random(int(seed)))
            except BaseException:
                import traceback

                traceback.print_exc()
                journal.write("failed")
                os._exit(1)
            os._exit(0)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print("died", status, flush=True)


if __name__ == "__main__":
    zygote(preload_torch="--torch" in sys.argv[1:])
