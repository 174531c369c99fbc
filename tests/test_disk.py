"""Full disks and damaged homes: a failed publish leaves nothing behind, gc works at 0 bytes free,
read-only commands work on a read-only home, and every message names the real cause and remedy.

A full disk is a small tmpfs filled to the page; a read-only home is a read-only bind mount (root
ignores file modes, so chmod proves nothing). Both need root and ``mount``; without them those tests
skip, saying why. Every mount is undone in the fixture's finalizer, also when a test fails.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

import hub
from conftest import assert_same_tensors, is_sqlite, state
from hub import DamagedRegistryError, NoSpaceError, ReadOnlyError, RegistryError
from hub.errors import storage_error
from hub.registry import Database

PAGE = 4096
DISK_BYTES = 4 << 20  # the small disk: 4 MiB of tmpfs
BIGGEST_DISK_TO_FILL = 64 << 20  # fill() refuses anything larger: it must never fill a real disk


def make_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return hub.create("mlp", in_features=4, hidden=[8], out_features=3)


class Mounts:
    """The mounts a test made, undone (innermost first) by :meth:`undo`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.points: list[Path] = []
        self.monkeypatch = monkeypatch

    def _mount(self, *args: str) -> None:
        result = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            pytest.skip(f"`mount {' '.join(args)}` failed here: {result.stderr.strip() or result.returncode}")

    def small_disk(self, point: Path) -> Disk:
        point.mkdir(parents=True)
        self._mount("-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(point))
        self.points.append(point)
        return Disk(point)

    def read_only(self, source: Path, point: Path) -> None:
        point.mkdir(parents=True)
        self._mount("--bind", str(source), str(point))
        self.points.append(point)
        self._mount("-o", "remount,bind,ro", str(point))

    def use_home(self, home: Path) -> None:
        """Point HUB_HOME (and a SQLite registry) at ``home``."""
        hub.default_hub().close()
        self.monkeypatch.setenv("HUB_HOME", str(home))
        if is_sqlite():
            self.monkeypatch.setenv("HUB_REGISTRY_URL", f"sqlite:///{home / 'registry.db'}")

    def undo(self) -> None:
        hub.default_hub().close()  # SQLite files open on a mount keep it busy
        for point in reversed(self.points):
            if subprocess.run(["umount", str(point)], capture_output=True, timeout=30).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)
        self.points.clear()


class Disk:
    """A small tmpfs that :meth:`fill` fills to the page."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.filler = root / "filler"

    def free_pages(self) -> int:
        return os.statvfs(self.root).f_bavail

    def fill(self, leave_pages: int = 0) -> None:
        """Fill the disk, leaving exactly ``leave_pages`` pages free."""
        disk = os.statvfs(self.root)
        assert os.path.ismount(self.root) and disk.f_blocks * disk.f_frsize <= BIGGEST_DISK_TO_FILL, "not the small disk"
        with open(self.filler, "ab", buffering=0) as out:
            for chunk in (b"\0" * (64 * PAGE), b"\0" * PAGE):
                try:
                    while True:
                        out.write(chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        os.truncate(self.filler, max(0, self.filler.stat().st_size - leave_pages * PAGE))
        assert self.free_pages() == leave_pages

    def release(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def mounts(registry_url, monkeypatch):
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small or read-only file system needs root")
    made = Mounts(monkeypatch)
    try:
        yield made
    finally:
        made.undo()


@pytest.fixture
def small_disk(mounts, tmp_path) -> Disk:
    """HUB_HOME (and a SQLite registry) on a 4 MiB disk."""
    disk = mounts.small_disk(tmp_path / "disk")
    mounts.use_home(disk.home)
    return disk


@pytest.fixture
def read_only_home(mounts, tmp_path) -> Path:
    """A home with ``acme/kept`` (version 1, ``prod``) and the garbage of a deleted ``acme/old``,
    mounted read-only; HUB_HOME points at the read-only mount."""
    writable = tmp_path / "rw" / "home"
    mounts.use_home(writable)
    hub.publish(make_mlp(), "acme/kept", aliases=["prod"])
    hub.publish({"w": torch.ones(100)}, "acme/old")
    hub.delete_version("acme/old:1")
    hub.default_hub().close()
    mounts.read_only(tmp_path / "rw", tmp_path / "ro")
    home = tmp_path / "ro" / "home"
    mounts.use_home(home)
    return home


# --- a full disk -------------------------------------------------------------------


@pytest.mark.parametrize("free_pages", [0, 1], ids=["at-the-first-blob", "at-the-registry-step"])
def test_a_publish_on_a_full_disk_leaves_store_and_registry_unchanged_and_says_no_space_left(small_disk, free_pages):
    hub.publish(make_mlp(), "acme/kept", aliases=["prod"])
    before = state(small_disk.home)
    small_disk.fill(free_pages)  # one page: the new weights (1 KiB) fit, the manifest and registry rows don't
    new = {"w": torch.arange(256, dtype=torch.float32)}
    with pytest.raises(OSError) as caught:
        hub.publish(new, "acme/new", aliases=["prod"])
    assert state(small_disk.home) == before  # no blob, pointer or row of it left
    assert isinstance(caught.value, NoSpaceError)
    assert re.match(r"no space left on device at .*: free space, then retry \(`hub gc` frees unreferenced blobs\)$", str(caught.value))
    assert str(small_disk.root) in str(caught.value) and "db upgrade" not in str(caught.value)
    small_disk.release()
    assert hub.publish(new, "acme/new").ref == "acme/new:1"  # with space again, the same publish works


def test_gc_works_on_a_disk_with_no_space_left_and_frees_it(small_disk, run_cli):
    hub.publish(make_mlp(), "acme/kept", aliases=["prod"])
    hub.publish({"w": torch.zeros(100_000)}, "acme/old")  # 400 KB of garbage once deleted
    hub.delete_version("acme/old:1")
    alias = small_disk.home / "refs" / "acme+kept" / "aliases" / "prod"
    alias.unlink()  # as a process killed after its registry write leaves it: gc writes it, which needs space
    hub.default_hub().close()  # `hub` runs in a fresh process: SQLite must make its -wal and -shm anew
    small_disk.fill(0)
    listed = run_cli("list", check=False)
    assert listed.returncode == 0 and "acme/kept" in listed.stdout, listed.stderr
    result = run_cli("gc", "--min-age", "0", check=False)
    assert result.returncode == 0, result.stderr
    assert "freed 40" in result.stdout and small_disk.free_pages() >= 90
    assert alias.read_text().strip() == "1"
    assert hub.verify().ok and not hub.verify(min_age_seconds=0).leftovers
    assert hub.info("acme/kept@prod").ref == "acme/kept:1"


# --- a read-only home --------------------------------------------------------------


def test_read_only_commands_work_on_a_read_only_home(read_only_home, run_cli, tmp_path):
    for args in (["list"], ["info", "acme/kept@prod"], ["verify"], ["gc", "--dry-run", "--min-age", "0"]):
        result = run_cli(*args, check=False)
        assert result.returncode == 0, f"hub {' '.join(args)}: {result.stderr}"
    assert "acme/kept" in run_cli("list").stdout
    assert [m.name for m in hub.list_models()] == ["acme/kept"]
    assert hub.info("acme/kept@prod").ref == "acme/kept:1"
    report = hub.verify(min_age_seconds=0)
    assert report.ok and report.leftovers  # the deleted version's blobs, for a gc where the home is writable
    assert_same_tensors(hub.load("acme/kept@prod", device="cpu").state_dict(), make_mlp().state_dict())
    folder = hub.download("acme/kept:1", tmp_path / "copy")
    assert (folder / "model.safetensors").is_file()


def test_writes_on_a_read_only_home_fail_naming_the_cause_and_the_path(read_only_home, run_cli):
    lock = str(read_only_home / ".gc-lock")
    with pytest.raises(ReadOnlyError, match="read-only file system") as caught:
        hub.publish(make_mlp(1), "acme/kept")
    assert lock in str(caught.value) and "writable HUB_HOME" in str(caught.value)
    with pytest.raises(ReadOnlyError, match="read-only file system"):
        hub.set_alias("acme/kept", "beta", 1)
    for args in (["gc", "--min-age", "0"], ["tag", "acme/kept:1", "beta"], ["delete", "acme/kept:1"]):
        result = run_cli(*args, check=False)
        assert result.returncode == 1 and "read-only file system" in result.stderr and lock in result.stderr, result.stderr
        assert "gc and reindex need a writable HUB_HOME" in result.stderr and "Traceback" not in result.stderr
    assert hub.info("acme/kept@prod").ref == "acme/kept:1"


# --- a damaged registry file -------------------------------------------------------


@pytest.mark.one_backend
def test_a_truncated_registry_is_reported_as_damaged_and_move_aside_makes_room_for_a_new_one(hub_home, run_cli):
    hub.publish(make_mlp(), "acme/kept", aliases=["prod"])
    hub.default_hub().close()
    registry = hub_home / "registry.db"
    os.truncate(registry, registry.stat().st_size // 2)
    damaged = registry.read_bytes()
    message = r"registry\.db is damaged \(database disk image is malformed\); `hub reindex` moves it aside and rebuilds it from the store"
    with pytest.raises(DamagedRegistryError, match=message):
        hub.list_models()
    result = run_cli("info", "acme/kept", check=False)
    assert result.returncode == 1 and "is damaged" in result.stderr and "db upgrade" not in result.stderr, result.stderr

    (hub_home / "registry.db-wal").write_bytes(b"wal")  # as a crash leaves them: they go with the file
    (hub_home / "registry.db-shm").write_bytes(b"shm")
    moved = hub.default_hub().db.move_aside()
    assert moved.parent == hub_home and moved.name.startswith("registry.db.damaged-")
    assert moved.read_bytes() == damaged
    assert Path(f"{moved}-wal").read_bytes() == b"wal" and Path(f"{moved}-shm").read_bytes() == b"shm"
    assert not any(p.exists() for p in (registry, hub_home / "registry.db-wal", hub_home / "registry.db-shm"))
    assert hub.list_models() == []  # a new, empty registry: `hub reindex` fills it from the store
    assert hub.default_hub().db.move_aside() != moved  # a second one in the same second gets a name of its own


@pytest.mark.one_backend
def test_a_file_that_is_not_a_database_is_reported_as_damaged(hub_home):
    hub_home.mkdir(parents=True)
    (hub_home / "registry.db").write_bytes(b"these are not the bytes of a database\n" * 200)
    with pytest.raises(DamagedRegistryError, match=r"is damaged \(file is not a database\); `hub reindex` moves it aside"):
        hub.list_models()


@pytest.mark.one_backend
def test_move_aside_is_for_sqlite_files_only():
    with pytest.raises(RegistryError, match="not a SQLite file"):
        Database("postgresql+psycopg://nobody@127.0.0.1:1/none").move_aside()


@pytest.mark.one_backend
def test_disk_errors_are_worded_by_cause_in_one_place():
    full = storage_error(OSError(errno.ENOSPC, "No space left on device"), "/hub")
    assert isinstance(full, NoSpaceError) and isinstance(full, OSError) and full.errno == errno.ENOSPC
    assert str(full) == "no space left on device at /hub: free space, then retry (`hub gc` frees unreferenced blobs)"
    quota = storage_error(OSError(errno.EDQUOT, "Disk quota exceeded", "/hub/blobs/x"))
    assert str(quota).startswith("disk quota exceeded at /hub/blobs/x: free space")
    denied = storage_error(PermissionError(errno.EACCES, "Permission denied", "/hub/.gc-lock"))
    assert isinstance(denied, ReadOnlyError) and str(denied).startswith("permission denied: /hub/.gc-lock; ")
    assert storage_error(FileNotFoundError(errno.ENOENT, "No such file")) is None
    assert storage_error(ValueError("no")) is None
