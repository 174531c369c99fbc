"""Many processes on one hub at once, on SQLite and PostgreSQL (issue "Reliability and security").

tests/test_registry.py already races publishers of one model (same-sized models) and alias
movers; the tests here add what it leaves out:

- publishers of mixed sizes that also move aliases, each one's own and one they all share;
- alias moves racing with deletes of the versions they point at;
- the command line under mixed reads and writes: no "database is locked" reaches a user;
- ``gc(min_age_seconds=0)`` in a loop while versions are published, deleted and published
  again with identical weights (a blob that exists is reused, not written): no version ever
  loses a blob.

The CI form is small; ``HUB_TEST_LONG=1`` runs the long form (8 processes x 20 publishes, more
gc rounds), and ``HUB_TEST_PUBLISHERS`` / ``HUB_TEST_PUBLISHES_EACH`` set the sizes directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import save_file

import hub
from conftest import ROOT

LONG = os.environ.get("HUB_TEST_LONG") == "1"
PUBLISHERS = int(os.environ.get("HUB_TEST_PUBLISHERS", "8" if LONG else "4"))
PUBLISHES_EACH = int(os.environ.get("HUB_TEST_PUBLISHES_EACH", "20" if LONG else "5"))
# mlp (in_features, hidden, out_features): from 58 parameters to 330 thousand (1.3 MB)
SIZES = [(4, 8, 2), (64, 128, 10), (256, 1024, 64), (16, 32, 4)]
READERS = 8 if LONG else 4  # reading CLI processes running at any time while the writers write


def start(code: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A Python process running ``code`` (dedented) with the test's environment plus ``env``."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **(env or {})}, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(processes: list[subprocess.Popen], timeout: float = 300) -> list[dict]:
    """Wait for every process; each must exit 0 and print one JSON object last."""
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


def mlp(worker: int, index: int) -> torch.nn.Module:
    """The model worker ``worker`` publishes ``index``-th: seeded, and of one of four sizes."""
    torch.manual_seed(worker * 1000 + index)
    in_features, hidden, out_features = SIZES[(worker + index) % len(SIZES)]
    return hub.create("mlp", in_features=in_features, hidden=[hidden], out_features=out_features)


def assert_chain(history: list) -> None:
    """Each move starts where the one before it ended: nothing lost, nothing reordered."""
    assert history, "no history"
    assert history[0].from_version is None
    for before, after in zip(history, history[1:]):
        assert after.from_version == before.to_version, (before, after)


def registry_and_store_agree(name: str) -> None:
    """The alias pointer files (what ``hub reindex`` rebuilds from) say what the registry says.

    Moves write their pointer just after their commit, so the last two of a race may land in the
    other order: then the pointer must be a leftover that ``hub verify`` names and ``hub gc`` rewrites.
    """
    registry = {alias: version.version for version in hub.list_versions(name) for alias in version.aliases}
    if dict(hub.default_hub().refs.aliases(name)) != registry:
        assert any(f"{os.sep}aliases{os.sep}" in path for path in hub.verify(min_age_seconds=0).leftovers)
        hub.gc(min_age_seconds=0)
    assert dict(hub.default_hub().refs.aliases(name)) == registry


# --- (a) publishers of mixed sizes moving aliases --------------------------------------------


def test_publishers_of_mixed_sizes_moving_aliases_get_distinct_loadable_versions():
    started = time.monotonic()
    processes = [
        start(
            f"""
            import json, os, torch, hub
            worker = int(os.environ["WORKER"])

            def mlp(worker, index):
                torch.manual_seed(worker * 1000 + index)
                in_features, hidden, out_features = {SIZES}[(worker + index) % {len(SIZES)}]
                return hub.create("mlp", in_features=in_features, hidden=[hidden], out_features=out_features)

            versions, moves = [], 0
            for index in range({PUBLISHES_EACH}):
                if index % 2 == 0:  # the shared alias moves with the publish, in its transaction
                    version = hub.publish(mlp(worker, index), "race/mixed", aliases=["production"]).version
                    moves += 1
                else:  # or right after it, racing the others' publishes
                    version = hub.publish(mlp(worker, index), "race/mixed").version
                    moves += hub.set_alias("race/mixed", "production", version) is not None
                hub.set_alias("race/mixed", f"worker-{{worker}}", version)
                versions.append(version)
            print(json.dumps({{"versions": versions, "moves": moves}}))
            """,
            {"WORKER": str(worker)},
        )
        for worker in range(PUBLISHERS)
    ]
    outputs = finish(processes)
    elapsed = time.monotonic() - started

    versions = [v for output in outputs for v in output["versions"]]
    assert sorted(versions) == list(range(1, PUBLISHERS * PUBLISHES_EACH + 1))
    for worker, output in enumerate(outputs):
        for index, version in enumerate(output["versions"]):
            expected = mlp(worker, index).state_dict()
            loaded = hub.load(f"race/mixed:{version}").state_dict()
            assert sorted(loaded) == sorted(expected)
            assert all(torch.equal(loaded[k], expected[k]) for k in expected), f"race/mixed:{version}"
        own = hub.alias_history("race/mixed", f"worker-{worker}")
        assert [c.to_version for c in own] == output["versions"]  # only this worker moves its alias
        assert_chain(own)
    shared = hub.alias_history("race/mixed", "production")
    assert len(shared) == sum(o["moves"] for o in outputs) == PUBLISHERS * PUBLISHES_EACH
    assert_chain(shared)
    assert hub.info("race/mixed@production").version == shared[-1].to_version
    registry_and_store_agree("race/mixed")
    assert hub.verify().ok
    print(f"{PUBLISHERS} processes x {PUBLISHES_EACH} publishes: {len(versions)} versions in {elapsed:.1f} s")


# --- (b) alias moves racing with deletes --------------------------------------------------------


def test_alias_moves_racing_with_deletes_leave_a_consistent_alias_and_history(tmp_path):
    count, done = 8, tmp_path / "deleted"
    for seed in range(count):
        hub.publish({"w": torch.full((4,), float(seed))}, "race/doomed")
    movers = [
        start(
            f"""
            import json, os, random, hub
            rng = random.Random(int(os.environ["WORKER"]))
            moves = refused = after = 0
            while after < 10:  # until the deletes are over, then 10 more
                after += os.path.exists(os.environ["DONE"])
                try:
                    moves += hub.set_alias("race/doomed", "production", rng.randint(1, {count})) is not None
                except hub.VersionNotFoundError:
                    refused += 1
            print(json.dumps({{"moves": moves, "refused": refused}}))
            """,
            {"WORKER": str(worker), "DONE": str(done)},
        )
        for worker in range(max(2, PUBLISHERS - 1))
    ]
    deleter = start(
        f"""
        import json, os, random, time, hub
        hub.list_versions("race/doomed")
        doomed = random.Random(7).sample(range(1, {count + 1}), {count - 2})
        for version in doomed:
            time.sleep(0.05)
            hub.delete_version(f"race/doomed:{{version}}")
        open(os.environ["DONE"], "w").close()
        print(json.dumps({{"deleted": doomed}}))
        """,
        {"DONE": str(done)},
    )
    try:
        (deleted,) = finish([deleter])
    finally:
        done.touch()
    outputs = finish(movers)
    deleted = set(deleted["deleted"])

    live = {v.version for v in hub.list_versions("race/doomed")}
    assert live == set(range(1, count + 1)) - deleted
    history = hub.alias_history("race/doomed", "production")
    assert_chain(history)
    assert len([c for c in history if c.to_version is not None]) == sum(o["moves"] for o in outputs)
    for change in history:
        if change.to_version is None:  # only a delete removes it here, and only from the version it deleted
            assert change.from_version in deleted
    # no move lands on a version after its delete
    deleted_at = {c.from_version: i for i, c in enumerate(history) if c.to_version is None}
    assert all(i < deleted_at[c.to_version] for i, c in enumerate(history) if c.to_version in deleted_at)
    final = history[-1].to_version
    if final is None:
        with pytest.raises(hub.AliasNotFoundError):
            hub.info("race/doomed@production")
    else:
        assert final in live and hub.info("race/doomed@production").version == final
    registry_and_store_agree("race/doomed")
    assert sum(o["refused"] for o in outputs) > 0  # moves did race the deletes: some found their target gone
    print(f"{len(movers)} movers: {sum(o['moves'] for o in outputs)} moves, {sum(o['refused'] for o in outputs)} refused; "
          f"{len(deleted)} versions deleted; {len(history)} history entries")


# --- (c) the command line under mixed reads and writes -----------------------------------------


def test_mixed_cli_reads_and_writes_never_show_database_is_locked(tmp_path):
    torch.manual_seed(0)
    hub.publish({"w": torch.randn(8)}, "busy/model", aliases=["production"])
    hub.publish({"w": torch.randn(8)}, "busy/model")
    writes = []
    for i in range(PUBLISHERS):
        save_file({"w": torch.randn(64, 64)}, tmp_path / f"w{i}.safetensors")
        writes.append(["publish", str(tmp_path / f"w{i}.safetensors"), "busy/model", "--alias", f"from-{i}", "--tag", "busy"])
        writes.append(["tag", f"busy/model:{1 + i % 2}", "production"])
        writes.append(["tag", "busy/model", f"tagged-{i}"])
    writes.append(["gc", "--min-age", "0"])
    reads = [["list", "--json"], ["info", "busy/model@production", "--json"], ["versions", "busy/model"],
             ["history", "busy/model", "production"], ["list", "busy", "--sort", "updated"], ["info", "busy/model"]]

    def cli(args: list[str]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "hub", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    writers = [(args, cli(args)) for args in writes]
    readers: list[tuple[list[str], subprocess.Popen]] = []
    while any(process.poll() is None for _, process in writers) or len(readers) < 2 * len(reads):
        if sum(process.poll() is None for _, process in readers) < READERS:  # readers keep coming while writers write
            args = reads[len(readers) % len(reads)]
            readers.append((args, cli(args)))
        time.sleep(0.01)
    failures = []
    for args, process in writers + readers:
        out, err = process.communicate(timeout=300)
        if process.returncode != 0 or "locked" in err.lower() or "locked" in out.lower():
            failures.append((args, process.returncode, err))
    assert failures == []
    assert len(hub.list_versions("busy/model")) == 2 + PUBLISHERS
    assert hub.verify().ok
    print(f"{len(writes)} writing and {len(readers)} reading CLI processes")


# --- (d) gc running while versions are published ---------------------------------------------------

GC_LOOP = """
import json, os, time, hub
rounds = removed = 0
stop = os.environ["STOP"]
while not os.path.exists(stop) or rounds < 3:
    removed += len(hub.gc(min_age_seconds=0).removed)
    rounds += 1
print(json.dumps({"rounds": rounds, "removed": removed}))
"""


def test_gc_at_min_age_zero_never_deletes_a_blob_that_a_new_version_needs(tmp_path):
    stop = tmp_path / "stop"
    collector = start(GC_LOOP, {"STOP": str(stop)})
    publishers = [
        start(
            f"""
            import json, os, torch, hub
            worker = int(os.environ["WORKER"])
            published = []
            for index in range({PUBLISHES_EACH * 3}):
                torch.manual_seed(worker * 1000 + index)
                weights = {{"w": torch.randn(256, 64), "b": torch.randn(64)}}
                first = hub.publish(weights, "gc/model", tags=["gc"]).version
                hub.delete_version(f"gc/model:{{first}}")  # its blobs are garbage now...
                again = hub.publish(weights, "gc/model", tags=["gc"]).version  # ...and wanted again
                shared = hub.publish({{"w": torch.ones(256, 64), "b": torch.zeros(64)}}, "gc/model", tags=["gc"]).version
                published += [(again, worker * 1000 + index), (shared, -1)]
            print(json.dumps({{"published": published}}))
            """,
            {"WORKER": str(worker)},
        )
        for worker in range(max(2, PUBLISHERS // 2))
    ]
    try:
        outputs = finish(publishers)
    finally:
        stop.touch()
    (collected,) = finish([collector])

    published = [tuple(p) for output in outputs for p in output["published"]]
    assert {v.version for v in hub.list_versions("gc/model")} == {version for version, _ in published}
    for version, seed in published:
        loaded = hub.load_state_dict(f"gc/model:{version}", verify=True)
        if seed == -1:
            assert torch.equal(loaded["w"], torch.ones(256, 64)), version
        else:
            torch.manual_seed(seed)
            assert torch.equal(loaded["w"], torch.randn(256, 64)), version
    report = hub.verify()
    assert report.ok, report.problems
    assert collected["rounds"] >= 3
    print(f"{len(publishers)} publishers, {len(published)} live versions, {collected['rounds']} gc rounds, "
          f"{collected['removed']} blobs collected")
