"""Crash safety: processes killed with SIGKILL at random points leave a hub that still works.

A child process (``tests/helpers/crash_child.py``) publishes, collects garbage or moves
aliases in a loop; the parent kills it after a random delay and then checks the hub:
every listed version loads and verifies, every acknowledged write is there, no blob under
its final name is partial, ``verify`` names only leftovers that ``gc`` removes, the pointer
files under ``refs/`` rebuild the same registry, and publishing again works.

Then fine-tuning workers killed at the two dangerous moments of a job's end (blobs stored
but no version yet; version published but the job not marked succeeded): the next worker
takes the job over and it ends with exactly one published version.

Random kills rarely land in the microseconds between a registry write and its pointer file
under ``refs/``, so a helper (``tests/helpers/die_at.py``) also dies there on purpose, once for
each kind of write.

The kills are drawn from ``random.Random(HUB_TEST_SEED)`` (printed, with a summary; run
pytest with ``-s`` or ``-rP`` to see it) so a failure's schedule of kills can be replayed.
``HUB_TEST_LONG=1`` runs 50 publish kills instead of 10, and 15 instead of 4 mid gc and
mid alias moves.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import torch

import finetune
import hub
from conftest import ROOT, is_sqlite

SEED = int(os.environ.get("HUB_TEST_SEED", "20240611"))
LONG = os.environ.get("HUB_TEST_LONG") == "1"
PUBLISH_KILLS = 50 if LONG else 10
SIDE_KILLS = 15 if LONG else 4  # kills mid gc, and mid alias moves
HELPERS = ROOT / "tests" / "helpers"
CHILD = HELPERS / "crash_child.py"
BIG, SMALL, ALIASED, ALIASES = "crash/big", ("crash/small-a", "crash/small-b"), "crash/aliased", ("prod", "canary")
DIGEST = re.compile(r"[0-9a-f]{64}")
TEMP = re.compile(r"\.tmp-.*\.incomplete")


# --- driving a child to its death ---------------------------------------------------------


def read_journal(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, timeout: float = 60.0, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting")


class Zygote:
    """``tests/helpers/crash_child.py``: forks loop children on request, so a kill costs no interpreter start."""

    def __init__(self, *, torch: bool) -> None:
        self.process = subprocess.Popen([sys.executable, str(CHILD), *(["--torch"] if torch else [])], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run_and_kill(self, mode: str, journal: Path, seed: int, delay: float) -> list[list[str]]:
        """Fork a ``mode`` loop, SIGKILL it ``delay`` seconds after it is ready; return this life's journal lines."""
        start = len(read_journal(journal))
        self.process.stdin.write(f"{mode} {journal} {seed}\n")
        self.process.stdin.flush()
        pid = int(self.process.stdout.readline())
        try:
            wait_for(lambda: any(line[0] in ("ready", "failed") for line in read_journal(journal)[start:]))
            assert ["failed"] not in read_journal(journal)[start:], f"the {mode} child failed by itself; see stderr"
            time.sleep(delay)
        finally:
            with suppress(ProcessLookupError):  # it may have failed already
                os.kill(pid, signal.SIGKILL)
            status = self.process.stdout.readline().split()  # the zygote saw it die: all its files and connections are closed
        assert status == ["died", str(int(signal.SIGKILL))], f"the {mode} child ended with {status}, not by the kill"
        return read_journal(journal)[start:]

    def close(self) -> None:
        self.process.stdin.close()  # its loop ends
        self.process.stdout.close()
        self.process.wait(30)


@pytest.fixture
def start_zygote():
    """``start_zygote(torch=...)``: a :class:`Zygote`, closed when the test ends."""
    started: list[Zygote] = []

    def start(*, torch: bool) -> Zygote:
        started.append(Zygote(torch=torch))
        return started[-1]

    yield start
    for zygote in started:
        zygote.close()


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


@contextmanager
def replayable(what: str):
    """Say which kill broke what, and how to replay it."""
    try:
        yield
    except Exception as exc:
        raise AssertionError(f"{what} (replay this schedule of kills with HUB_TEST_SEED={SEED}): {exc!r}") from exc


# --- what must hold after any kill ----------------------------------------------------------


def assert_blobs_are_whole(home: Path) -> None:
    """Every file under a final blob name holds exactly the bytes that hash to it."""
    for path in (home / "blobs").iterdir():
        if DIGEST.fullmatch(path.name):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert digest == path.name, f"blob {path.name} is partial or corrupt (its bytes hash to {digest})"
        else:
            assert TEMP.fullmatch(path.name), f"unexpected file in blobs/: {path.name}"


def assert_every_version_loads() -> int:
    """Each listed version loads, verifies, and holds the weights its metadata names; return how many."""
    count = 0
    for model in hub.list_models(limit=None):
        for version in hub.list_versions(model.name):
            assert hub.verify(version.ref).problems == (), version.ref
            weights = hub.load_state_dict(version.ref)
            iteration = version.metadata.get("iteration")
            if iteration is not None:  # published by the loop, or by the parent ("parent-N")
                owner, number = iteration.split("-")
                assert weights["step"].tolist() == [0 if owner == "parent" else int(owner), int(number)], version.ref
                if model.name in SMALL:
                    assert torch.all(weights["w"] == int(number)), version.ref
            count += 1
    return count


def alias_history(name: str, alias: str) -> list:
    """Every move of ``alias``; none for an alias ``name`` never had (the API raises AliasNotFoundError)."""
    try:
        return hub.alias_history(name, alias)
    except hub.AliasNotFoundError:
        return []


def assert_aliases_consistent(name: str) -> None:
    """Aliases point at live versions, and each alias's history chains up to where it points now."""
    live = {v.version for v in hub.list_versions(name)}
    current = next(m.aliases for m in hub.list_models(limit=None) if m.name == name)
    for alias, version in current.items():
        assert version in live, f"{name}@{alias} points at {version}, which is not live"
        assert hub.info(f"{name}@{alias}").version == version
    for alias in ALIASES:
        history = alias_history(name, alias)
        before = None
        for change in history:
            assert change.from_version == before, f"{name}@{alias}: history moves from {change.from_version}, but it was at {before}"
            before = change.to_version
        assert before == current.get(alias), f"{name}@{alias} is at {current.get(alias)}, its history ends at {before}"


def refs_view(home: Path) -> dict[str, tuple[dict[int, str], dict[str, int]]]:
    """What the pointer files under ``refs/`` say: ``{name: ({version: digest}, {alias: version})}``."""
    view = {}
    store = hub.default_hub().refs
    for name in store.names():
        view[name] = ({n: d for n, d in store.versions(name) if d is not None}, dict(store.aliases(name)))
    return view


def registry_view() -> dict[str, tuple[dict[int, str], dict[str, int]]]:
    return {m.name: ({v.version: v.digest for v in hub.list_versions(m.name)}, dict(m.aliases)) for m in hub.list_models(limit=None)}


def assert_refs_match_registry(home: Path) -> None:
    """The pointer files say what the registry says, so ``hub reindex`` would rebuild the same index."""
    assert refs_view(home) == registry_view()


def collect_leftovers(home: Path) -> Counter[str]:
    """``verify`` finds no problem and names only leftovers; ``gc`` removes (or, for pointer files,
    repairs) exactly those; verify is then clean. Returns how many of each kind it collected."""
    report = hub.verify(min_age_seconds=0)  # a killed process's leftovers are young: every one
    assert report.problems == (), report.problems
    leftovers = sorted(report.leftovers)
    kinds: Counter[str] = Counter()
    for path in map(Path, leftovers):
        if TEMP.fullmatch(path.name):
            kinds["temporary files"] += 1
        elif path.parent == home / "blobs" and DIGEST.fullmatch(path.name):
            kinds["orphan blobs"] += 1
        else:
            assert path.is_relative_to(home / "refs") and (path.parent.name in ("versions", "aliases")
                                                           or path.parent.parent.name == "history"), path
            kinds["pointer files"] += 1
    assert sorted(hub.gc(min_age_seconds=0).removed) == leftovers
    after = hub.verify(min_age_seconds=0)
    assert after.problems == () and after.leftovers == (), after
    assert not list(home.rglob(".tmp-*")), "temporary files left that gc does not remove"
    return kinds


# --- publishing, killed -------------------------------------------------------------------------


def versions_of(name: str) -> list[hub.ModelVersion]:
    try:
        return hub.list_versions(name)
    except hub.ModelNotFoundError:
        return []


def big_weights(rng: random.Random, number: int) -> dict[str, torch.Tensor]:
    size = 5 * 1024 * 1024
    return {"w": torch.randn(size, generator=torch.Generator().manual_seed(rng.randrange(2**31))), "step": torch.tensor([0, number])}


def test_publish_survives_sigkill_at_random_points(hub_home, tmp_path, start_zygote):
    zygote = start_zygote(torch=True)
    rng = random.Random(SEED)
    journal = tmp_path / "publish.journal"
    started = time.monotonic()
    # A publish of the loop's largest state dict, timed (median of three, after a warm-up). Kills are drawn
    # uniformly over four times that from when the child is ready: a loop turn (a pause, building the weights,
    # publishing) takes about two, so kills land before the first publish, inside it, after it and in the next.
    times = []
    for number in range(4):
        weights = big_weights(rng, number)
        times.append(timed(lambda: hub.publish(weights, BIG, metadata={"iteration": f"parent-{number}"})))
    duration = sorted(times[1:])[1]
    outcomes: Counter[str] = Counter()
    acknowledged: dict[str, tuple[str, int]] = {}
    totals: Counter[str] = Counter()
    child_times: list[float] = []
    for kill in range(1, PUBLISH_KILLS + 1):
        lines = zygote.run_and_kill("publish", journal, rng.randrange(2**31), rng.uniform(0, 4 * duration))
        ends = [line for line in lines if line[0] == "end"]
        acknowledged.update((line[1], (line[2], int(line[3]))) for line in ends)
        child_times += [float(line[4]) for line in ends]
        in_flight = lines[-1] if lines[-1][0] == "begin" else None
        with replayable(f"after publish kill {kill} of {PUBLISH_KILLS}"):
            assert_blobs_are_whole(hub_home)
            totals["versions checked"] += assert_every_version_loads()
            for iteration, (name, number) in acknowledged.items():  # an acknowledged publish is durable
                assert hub.info(f"{name}:{number}").metadata["iteration"] == iteration
            registered = in_flight is not None and next(
                (v for v in versions_of(in_flight[2]) if v.metadata.get("iteration") == in_flight[1]), None)
            if registered:  # committed but not acknowledged: it is whole (checked above) and stays
                acknowledged[in_flight[1]] = (in_flight[2], registered.version)
            for name in {BIG, *SMALL} & {m.name for m in hub.list_models(limit=None)}:
                assert_aliases_consistent(name)
            collected = collect_leftovers(hub_home)
            assert_refs_match_registry(hub_home)
            # Publishing again works (and numbers continue past the killed child's).
            again = hub.publish({"w": torch.full((16,), float(kill)), "step": torch.tensor([0, kill])}, SMALL[kill % 2],
                                aliases=["prod"], metadata={"iteration": f"parent-{kill}"})
            assert hub.load_state_dict(f"{SMALL[kill % 2]}@prod")["step"].tolist() == [0, kill]
            assert again.version == max(v.version for v in hub.list_versions(SMALL[kill % 2]))
        if in_flight is None:
            outcomes["between publishes"] += 1
        elif registered:
            outcomes["mid-publish: registered, not yet acknowledged"] += 1
        elif collected["pointer files"]:
            outcomes["mid-publish: pointer written, not committed"] += 1
        elif collected["temporary files"]:
            outcomes["mid-publish: writing blobs or a pointer file"] += 1
        elif collected["orphan blobs"]:
            outcomes["mid-publish: blobs stored, not registered"] += 1
        else:
            outcomes["mid-publish: before any blob was stored"] += 1
        totals.update({f"{kind} collected": n for kind, n in collected.items()})
        totals["acknowledged publishes"] += len(ends)
        totals["kills after an acknowledged publish"] += bool(ends)
        # Keep the hub small, so each round of checks costs the same: the last three versions of each
        # model stay, older ones are deleted (their aliases go with them) and gc frees their blobs.
        for name in (BIG, *SMALL):
            for version in versions_of(name)[:-3]:
                hub.delete_version(version.ref)
                acknowledged.pop(version.metadata["iteration"], None)
        hub.gc(min_age_seconds=0)
    with replayable("after all publish kills"):
        before = registry_view()
        assert hub.reindex().live == sum(len(versions) for versions, _ in before.values())
        assert registry_view() == before
        assert_every_version_loads()
    mid = sum(n for outcome, n in outcomes.items() if outcome.startswith("mid"))
    assert mid >= 1, f"no kill landed mid-publish: {outcomes}"
    print(f"\ncrash harness ({'sqlite' if is_sqlite() else 'postgresql'}, seed {SEED}): {PUBLISH_KILLS} publish kills survived, "
          f"{mid} mid-publish, in {time.monotonic() - started:.1f} s (a 20 MB publish: {duration * 1000:.0f} ms in the test, "
          f"{statistics.median(child_times or [0]) * 1000:.0f} ms median in the children)")
    for outcome, n in sorted(outcomes.items()):
        print(f"  {n:3d}  {outcome}")
    for what, n in sorted(totals.items()):
        print(f"  {what}: {n}")


# --- gc and alias moves, killed -----------------------------------------------------------------


def make_garbage(home: Path, rng: random.Random, count: int = 200) -> None:
    """Orphan blobs (small and large) and stale temporary files for gc to remove."""
    for size in [rng.choice([64, 4096, 65536]) for _ in range(count)] + [4 * 1024 * 1024]:
        data = rng.randbytes(size)
        (home / "blobs" / hashlib.sha256(data).hexdigest()).write_bytes(data)
    for i in range(5):
        (home / "blobs" / f".tmp-left{rng.randrange(10**9)}.incomplete").write_bytes(rng.randbytes(1000))


def test_gc_killed_midway_never_takes_a_live_blob(hub_home, tmp_path, start_zygote):
    zygote = start_zygote(torch=False)
    rng = random.Random(SEED + 1)
    journal = tmp_path / "gc.journal"
    for i in range(3):
        hub.publish(big_weights(rng, i), BIG, aliases=["prod"], metadata={"iteration": f"parent-{i}"})
    make_garbage(hub_home, rng)
    duration = timed(lambda: hub.gc(min_age_seconds=0))
    mid = 0
    for kill in range(1, SIDE_KILLS + 1):
        make_garbage(hub_home, rng)
        lines = zygote.run_and_kill("gc", journal, rng.randrange(2**31), rng.uniform(0, 2 * duration))
        mid += lines[-1][0] == "begin"
        with replayable(f"after gc kill {kill}"):
            assert_blobs_are_whole(hub_home)
            assert assert_every_version_loads() == 3 + kill - 1  # three big ones, and the parent's small ones
            assert_aliases_consistent(BIG)
            collect_leftovers(hub_home)
            hub.publish({"w": torch.full((4,), float(kill)), "step": torch.tensor([0, kill])}, SMALL[0],
                        metadata={"iteration": f"parent-{kill}"})
    print(f"\ngc kills ({'sqlite' if is_sqlite() else 'postgresql'}, seed {SEED}): {SIDE_KILLS} survived, {mid} mid-gc")


def test_alias_moves_killed_midway_keep_aliases_and_history_consistent(hub_home, tmp_path, start_zygote):
    zygote = start_zygote(torch=False)
    rng = random.Random(SEED + 2)
    journal = tmp_path / "alias.journal"
    for i in range(4):
        hub.publish({"w": torch.full((8,), float(i)), "step": torch.tensor([0, i])}, ALIASED, metadata={"iteration": f"parent-{i}"})
    # Kills are drawn over twice the time of ten moves, so each child makes several.
    duration = timed(lambda: [hub.set_alias(ALIASED, ALIASES[i % 2], i % 4 + 1) for i in range(10)])
    acknowledged: dict[str, list[tuple[int | None, int | None]]] = {alias: [] for alias in ALIASES}
    for alias in ALIASES:
        acknowledged[alias] = [(c.from_version, c.to_version) for c in hub.alias_history(ALIASED, alias)]
    mid = moves = 0
    for kill in range(1, SIDE_KILLS + 1):
        lines = zygote.run_and_kill("alias", journal, rng.randrange(2**31), rng.uniform(0, 2 * duration))
        mid += lines[-1][0] == "begin"
        for line in lines:
            if line[0] == "end" and "->" in line[3]:
                before, after = (None if v == "None" else int(v) for v in line[3].split("->"))
                acknowledged[line[2]].append((before, after))
                moves += 1
        with replayable(f"after alias kill {kill}"):
            assert_aliases_consistent(ALIASED)
            for alias in ALIASES:  # every acknowledged move is in the history, in order; at most one more
                history = [(c.from_version, c.to_version) for c in hub.alias_history(ALIASED, alias)]
                assert history[: len(acknowledged[alias])] == acknowledged[alias]
                assert len(history) - len(acknowledged[alias]) <= 1
                acknowledged[alias] = history
            collect_leftovers(hub_home)  # an alias pointer the kill left behind is repaired from the registry
            assert_refs_match_registry(hub_home)
            hub.set_alias(ALIASED, "prod", 1)
            assert hub.info(f"{ALIASED}@prod").version == 1
            acknowledged["prod"] = [(c.from_version, c.to_version) for c in hub.alias_history(ALIASED, "prod")]
    with replayable("reindex after the alias kills"):
        before = registry_view()
        hub.reindex()
        assert registry_view() == before
    print(f"\nalias kills ({'sqlite' if is_sqlite() else 'postgresql'}, seed {SEED}): {SIDE_KILLS} survived, "
          f"{mid} mid-move, {moves} acknowledged moves")


# --- the moment between a registry write and its pointer file ------------------------------------


POINTED = "crash/pointed"


@pytest.mark.parametrize(
    ("when", "method", "args"),
    [
        ("after", "reserve_version", ["publish", "{file}", POINTED]),  # pointer written, registry row not committed
        ("after", "reserve_version", ["publish", "{file}", "crash/fresh"]),  # the same, for a model's first version
        ("before", "set_alias", ["publish", "{file}", POINTED, "--alias", "prod"]),  # committed, alias pointer not moved
        ("before", "set_alias", ["tag", f"{POINTED}:2", "prod"]),  # alias moved in the registry only
        ("before", "set_alias", ["untag", POINTED, "canary"]),  # alias removed in the registry only
        ("before", "mark_deleted", ["delete", f"{POINTED}:1"]),  # deleted in the registry only
    ],
    ids=["publish-uncommitted", "first-publish-uncommitted", "publish-alias", "tag", "untag", "delete"],
)
def test_a_kill_between_the_registry_and_the_pointer_files_is_repaired_by_gc(hub_home, tmp_path, when, method, args):
    """``refs/`` must rebuild the registry (``hub reindex``); a process killed between its registry
    write and its pointer write leaves one pointer behind, which ``verify`` names and ``gc`` repairs
    (before the blobs it names are collected, so reindex never meets a missing manifest)."""
    from safetensors.torch import save_file

    hub.publish({"w": torch.zeros(4)}, POINTED, aliases=["prod"])
    hub.publish({"w": torch.ones(4)}, POINTED, aliases=["canary"])
    save_file({"w": torch.full((4,), 2.0)}, tmp_path / "w.safetensors")
    command = [sys.executable, str(HELPERS / "die_at.py"), when, method, *(a.format(file=tmp_path / "w.safetensors") for a in args)]
    died = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert_every_version_loads()
    assert_aliases_consistent(POINTED)
    # the crash left a pointer behind (a publish that never committed: its reservation)
    assert refs_view(hub_home) != registry_view() or list(hub_home.glob("refs/*/versions/*.pending"))
    leftovers = hub.verify(min_age_seconds=0).leftovers
    assert any("/refs/" in path for path in leftovers), leftovers
    collect_leftovers(hub_home)
    assert_refs_match_registry(hub_home)
    before = registry_view()
    hub.reindex()
    assert registry_view() == before
    assert_every_version_loads()


# --- fine-tuning workers killed at the end of a job -----------------------------------------------


@functools.cache
def digit_rows() -> list[list[int]]:
    """The first 300 of scikit-learn's handwritten digits: 64 pixels and the label (loaded once: sklearn is slow to import)."""
    sklearn = pytest.importorskip("sklearn.datasets")
    digits = sklearn.load_digits()
    return [[*map(int, x), int(y)] for x, y in zip(digits.data[:300], digits.target[:300])]


@pytest.fixture
def digits_job(tmp_path) -> finetune.Job:
    """A one-epoch job on 300 rows of scikit-learn's digits, from a convnet published as acme/digits-cnn."""
    path = tmp_path / "digits.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*(f"pixel_{i}" for i in range(64)), "label"])
        writer.writerows(digit_rows())
    torch.manual_seed(0)
    hub.publish(hub.create("convnet", in_channels=1, image_size=8, num_classes=10), "acme/digits-cnn")
    return finetune.submit("acme/digits-cnn", path, output="acme/digits-ft", config={"epochs": 1, "seed": 1})


def stall_worker(where: str, marker: Path) -> subprocess.Popen:
    """``finetune worker --once`` that stops for good at ``where`` and touches ``marker`` there."""
    return subprocess.Popen([sys.executable, str(HELPERS / "stall_worker.py"), where, str(marker), "worker", "--once"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_at_marker(worker: subprocess.Popen, marker: Path) -> None:
    try:
        wait_for(lambda: marker.exists() or worker.poll() is not None, timeout=120)
        assert worker.poll() is None, f"the worker ended by itself: {worker.stderr.read().decode()[-3000:]}"
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(30) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stderr.close()


def take_over(monkeypatch, job_id: str) -> finetune.Job:
    """A new worker, once the dead one's heartbeat is stale, runs the job to its end."""
    monkeypatch.setenv("FINETUNE_STALE_SECONDS", "0.3")
    time.sleep(0.4)
    assert finetune.work(once=True) == 1
    return finetune.get_job(job_id)


def test_worker_killed_after_storing_blobs_leaves_no_half_version(digits_job, hub_home, monkeypatch, tmp_path):
    marker = tmp_path / "stalled"
    kill_at_marker(stall_worker("after-blobs", marker), marker)
    assert versions_of("acme/digits-ft") == []  # no version, not even half of one
    killed = finetune.get_job(digits_job.id)
    assert killed.status == "running" and killed.result is None
    report = hub.verify(min_age_seconds=0)
    assert report.problems == () and report.leftovers, report  # its weights and card: orphans for gc
    assert_refs_match_registry(hub_home)

    done = take_over(monkeypatch, digits_job.id)
    assert done.status == "succeeded" and done.attempts == 2, done
    versions = hub.list_versions("acme/digits-ft")
    assert [v.ref for v in versions] == [done.result] == ["acme/digits-ft:1"]
    assert versions[0].metadata["finetune_job"] == digits_job.id and versions[0].parent == "acme/digits-cnn:1"
    model = hub.load(done.result, device="cpu")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert hub.verify().problems == ()
    collect_leftovers(hub_home)  # the dead attempt's blobs, if the new one did not reuse them
    assert_refs_match_registry(hub_home)


def test_worker_killed_after_publishing_is_finished_by_the_next_without_publishing_again(digits_job, hub_home, monkeypatch, tmp_path):
    marker = tmp_path / "stalled"
    kill_at_marker(stall_worker("before-finish", marker), marker)
    killed = finetune.get_job(digits_job.id)
    assert killed.status == "running" and killed.result is None
    published = hub.list_versions("acme/digits-ft")
    assert [v.ref for v in published] == ["acme/digits-ft:1"] and published[0].metadata["finetune_job"] == digits_job.id

    done = take_over(monkeypatch, digits_job.id)
    assert done.status == "succeeded" and done.attempts == 2 and done.result == "acme/digits-ft:1", done
    assert hub.list_versions("acme/digits-ft") == published  # the same one version, nothing new
    messages = [e.message for e in finetune.job_events(digits_job.id)]
    assert "acme/digits-ft:1 was already published by this job before its worker stopped" in messages
    takeover = next(i for i, m in enumerate(messages) if "took over" in m)
    assert not any(m.startswith("data:") for m in messages[takeover:])  # it did not load the data, let alone train
    report = hub.verify()
    assert report.checked == ("acme/digits-cnn:1", "acme/digits-ft:1") and report.problems == (), report
