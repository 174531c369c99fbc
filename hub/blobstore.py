"""A content-addressed blob store: ``$HUB_HOME/blobs/<sha256>``.

Bytes go to a temporary file in the same folder while they are hashed, are
fsynced, then renamed to their hash: no partial file ever has a final name.
The same bytes are stored once. Hashing runs on a helper thread beside the
write (``hashlib`` releases the GIL), so a publish costs about one pass.

A blob is garbage once no registered version needs it, but a publish writes (or
reuses) its blobs before it registers the version. So writers hold
:meth:`BlobStore.in_use` (shared) from their first blob to their commit, and gc
holds :meth:`BlobStore.collecting` (exclusive) while it decides what is garbage
and removes it: a ``flock`` on ``$HUB_HOME/.gc-lock``, across processes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.errors import IntegrityError, storage_error

try:
    import fcntl
except ImportError:  # Windows: no flock; there gc's min_age_seconds alone protects a running publish
    fcntl = None  # type: ignore[assignment]

__all__ = ["BlobStore", "CHUNK_SIZE", "sha256_file", "temp_file"]

CHUNK_SIZE = 16 * 1024 * 1024
TEMP_PREFIX = ".tmp-"
GC_LOCK = ".gc-lock"
_DIGEST = re.compile(r"[0-9a-f]{64}")
_hash_pool: Any = None
_verified: dict[Path, tuple[int, int, int]] = {}  # blobs whose sha256 claim() checked: path -> (inode, size, mtime_ns)
_hash_pool_lock = threading.Lock()


def _pool() -> Any:
    """The one helper thread that hashes beside writes (created on first use)."""
    global _hash_pool
    with _hash_pool_lock:
        if _hash_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _hash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-sha256")
        return _hash_pool


def _read_chunks(path: Path, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            yield chunk


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """The sha256 hex digest and size of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    for chunk in _read_chunks(Path(path)):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


@functools.cache
def file_mode() -> int:
    """The mode an ordinary new file gets here (0o666 less the umask); mkstemp's 0o600 would hide blobs from a team."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def temp_file(folder: Path) -> tuple[int, Path]:
    """A new temporary file in ``folder`` (so a rename to its final name is atomic), with the ordinary mode."""
    import tempfile

    fd, name = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=".incomplete")
    os.fchmod(fd, file_mode())
    return fd, Path(name)


def _write_all(f: Any, view: memoryview) -> None:
    """Write all of ``view`` to an unbuffered file (a raw write may be partial)."""
    while view:
        view = view[f.write(view) :]


class _Writeback:
    """Start the disk write of each chunk as soon as it is written (Linux ``sync_file_range``).

    The final ``fsync`` then finds most bytes already on disk, so writing,
    hashing and the disk work at the same time instead of one after another.
    Elsewhere this does nothing.
    """

    START, WAIT = 2, 1 | 2 | 4  # SYNC_FILE_RANGE_WRITE; WAIT_BEFORE | WRITE | WAIT_AFTER
    _call: Any = None

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending: list[tuple[int, int]] = []
        if _Writeback._call is None:
            _Writeback._call = _load_sync_file_range()

    def chunk_written(self, offset: int, length: int) -> None:
        if not self._call:
            return
        self._call(self.fd, offset, length, self.START)
        self.pending.append((offset, length))
        if len(self.pending) > 2:  # keep two chunks in flight, wait for older ones: bounded dirty memory
            old_offset, old_length = self.pending.pop(0)
            self._call(self.fd, old_offset, old_length, self.WAIT)


def _load_sync_file_range() -> Any:
    if sys.platform != "linux":
        return False
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
        function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return function
    except (OSError, AttributeError):
        return False


def _flock_within(fd: int, operation: int, timeout: float) -> None:
    """``flock`` that gives up after ``timeout`` seconds with ``TimeoutError``."""
    import time

    deadline, pause = time.monotonic() + timeout, 0.005
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the store's lock was still held after {timeout:g} s") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs named by the sha256 of their bytes, under ``root/blobs``.

    Args:
        root: the hub's home folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.on_bytes: Callable[[int], None] | None = None  # progress hook: called with each chunk's size
        self._use_mutex = threading.Lock()
        self._use_count = 0  # holders of in_use in this process; the first takes the flock, the last drops it
        self._recorders = threading.local()  # sets that recording_new() fills, per thread
        self._use_fd: int | None = None

    def _lock_file(self) -> int:
        """The lock file, opened for writing: only writers take the lock, so a read-only home fails here,
        with :class:`~hub.errors.ReadOnlyError` naming it (reads never need the lock)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            return os.open(self.root / GC_LOCK, os.O_RDWR | os.O_CREAT, file_mode())
        except OSError as exc:
            problem = storage_error(exc, self.root / GC_LOCK)
            if problem is None:
                raise
            raise problem from exc

    @property
    def held_here(self) -> bool:
        """True while some thread of this process holds :meth:`in_use` (so :meth:`collecting` would wait for it)."""
        return self._use_count > 0

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold while writing or reusing blobs that the registry does not record yet (a version
        being published, a checkpoint being saved): :meth:`collecting` waits until no process holds it.

        Shared: any number of processes and threads hold it at once, and it nests.
        """
        if fcntl is None:
            yield
            return
        with self._use_mutex:
            if self._use_count == 0:
                fd = self._lock_file()
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH)
                except BaseException:
                    os.close(fd)
                    raise
                self._use_fd = fd
            self._use_count += 1
        try:
            yield
        finally:
            with self._use_mutex:
                self._use_count -= 1
                if self._use_count == 0 and self._use_fd is not None:
                    os.close(self._use_fd)  # closing the file drops the lock
                    self._use_fd = None

    @contextmanager
    def recording_new(self) -> Iterator[set[str]]:
        """Collect the digests of blobs this thread adds to the store (not those it finds there)
        while the block runs: what a failed publish has to take back."""
        stack = self._recorders.__dict__.setdefault("stack", [])
        created: set[str] = set()
        stack.append(created)
        try:
            yield created
        finally:
            stack.remove(created)

    @contextmanager
    def collecting(self, timeout: float | None = None) -> Iterator[None]:
        """Hold while deciding what is garbage and removing it: exclusive, so it waits for every
        :meth:`in_use` holder, and new ones wait for it. Don't take it while holding ``in_use``.

        Args:
            timeout: give up after this many seconds (``TimeoutError``); None waits as long as it takes.
        """
        if fcntl is None:
            yield
            return
        fd = self._lock_file()
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                _flock_within(fd, fcntl.LOCK_EX, timeout)
            yield
        finally:
            os.close(fd)

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (it may not exist)."""
        return self.blobs / digest

    def exists(self, digest: str) -> bool:
        """True when the blob is stored."""
        return self.path(digest).is_file()

    def claim(self, digest: str, size: int) -> bool:
        """Check a stored blob that a version being published will reuse, and mark it as just used:
        a fresh mtime, so that gc's grace period spares it until that version is registered.

        A publish never acknowledges bytes it has not verified, so the blob's sha256 is checked;
        once per process while the file stays the same file (inode, size and mtime).

        Returns:
            False when the blob is missing, not ``size`` bytes, or does not hash to ``digest``.
        """
        path = self.path(digest)
        try:
            before = os.stat(path)
            if before.st_size != size:
                return False
            if _verified.get(path) != (before.st_ino, before.st_size, before.st_mtime_ns) and sha256_file(path) != (digest, size):
                return False
            os.utime(path)
            after = os.stat(path)
        except FileNotFoundError:
            return False
        if after.st_ino != before.st_ino or after.st_size != size:
            return False
        _verified[path] = (after.st_ino, after.st_size, after.st_mtime_ns)
        return True

    def write(self, chunks: Iterable[bytes | memoryview], *, expected_sha256: str | None = None,
              check: Callable[[Path], None] | None = None) -> tuple[str, int]:
        """Store the concatenation of ``chunks`` and return its ``(sha256, size)``.

        Runs under :meth:`in_use`, so gc neither removes the temporary file nor the blob it reuses;
        hold ``in_use`` around it and beyond until whatever needs the blob is recorded.

        Args:
            chunks: the bytes, in order (any buffer objects).
            expected_sha256: if given, the bytes must hash to this, or nothing is stored.
            check: called with the written (fsynced) temporary file before it gets its name: it
                checks the bytes actually stored (say, a safetensors header) and raises to store nothing.

        Raises:
            IntegrityError: the bytes do not hash to ``expected_sha256``.
            Whatever ``check`` raises.
        """
        with self.in_use():
            return self._write(chunks, expected_sha256, check)

    def _write(self, chunks: Iterable[bytes | memoryview], expected_sha256: str | None,
               check: Callable[[Path], None] | None) -> tuple[str, int]:
        self.blobs.mkdir(parents=True, exist_ok=True)
        fd, temp = temp_file(self.blobs)
        try:
            digest, size = hashlib.sha256(), 0
            pool, writeback = _pool(), _Writeback(fd)
            with open(fd, "wb", buffering=0) as f:
                for chunk in chunks:
                    view = memoryview(chunk).cast("B")
                    hashed = pool.submit(digest.update, view)
                    _write_all(f, view)
                    writeback.chunk_written(size, view.nbytes)
                    hashed.result()
                    size += view.nbytes
                    if self.on_bytes is not None:
                        self.on_bytes(view.nbytes)
                os.fsync(f.fileno())
            sha256 = digest.hexdigest()
            if expected_sha256 is not None and sha256 != expected_sha256:
                raise IntegrityError(
                    f"bytes hash to sha256 {sha256}, expected {expected_sha256}; the source changed or is corrupt, "
                    "copy it again"
                )
            if check is not None:
                check(temp)
            # Always the freshly hashed bytes, even when a blob of that name is there: it may be
            # damaged (same size, a flipped bit), and a publish must not acknowledge unverified bytes.
            # The rename is atomic, readers holding the old file keep it, and the new file's mtime
            # starts gc's grace period afresh.
            final = self.path(sha256)
            created = not final.exists()
            os.replace(temp, final)
            if created:
                for recorder in getattr(self._recorders, "stack", ()):
                    recorder.add(sha256)
            _fsync_dir(self.blobs)
            return sha256, size
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return ``(sha256, size)``."""
        return self.write([data])

    def put_file(self, path: Path, *, expected_sha256: str | None = None,
                 check: Callable[[Path], None] | None = None) -> tuple[str, int]:
        """Copy a file into the store, hashing it as it is read; return ``(sha256, size)``.
        ``expected_sha256`` and ``check`` are as for :meth:`write`."""
        return self.write(_read_chunks(path), expected_sha256=expected_sha256, check=check)

    def read_bytes(self, digest: str) -> bytes:
        """The bytes of a (small) blob.

        Raises:
            IntegrityError: the blob is missing.
        """
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"blob {digest} is missing from {self.blobs}; run `hub verify`") from None

    def problem(self, digest: str, size: int | None, *, check_hash: bool) -> str | None:
        """What is wrong with blob ``digest`` (missing, wrong ``size`` if given, wrong hash), or None."""
        path = self.path(digest)
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            return f"blob {digest} is missing"
        if size is not None and actual != size:
            return f"blob {digest} is {actual} bytes, expected {size} (truncated or overwritten)"
        if check_hash:
            sha256, _ = sha256_file(path)
            if sha256 != digest:
                return f"blob {digest} hashes to {sha256} (corrupted)"
        return None

    def digests(self) -> Iterator[str]:
        """Every stored blob's digest."""
        if self.blobs.is_dir():
            for entry in os.scandir(self.blobs):
                if _DIGEST.fullmatch(entry.name):
                    yield entry.name

    def temp_files(self) -> list[Path]:
        """Temporary files left by interrupted writes."""
        if not self.blobs.is_dir():
            return []
        return [Path(e.path) for e in os.scandir(self.blobs) if e.name.startswith(TEMP_PREFIX)]

    def age_seconds(self, path: Path, now: float) -> float:
        """Seconds since ``path`` was last written (or touched by a dedup hit); 0 if gone."""
        try:
            return now - path.stat().st_mtime
        except FileNotFoundError:
            return 0.0
