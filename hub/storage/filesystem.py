"""The store in a folder: blobs at ``<home>/blobs/<sha256>``, keys as files under ``<home>`` (``refs/...``).

Bytes go to a temporary file in the same folder while they are hashed, are fsynced, then renamed
to their hash: no partial file ever has a final name. The same bytes are stored once.

A blob is garbage once no registered version needs it, but a publish writes (or reuses) its blobs
before it registers the version. So writers hold :meth:`FileStore.in_use` (shared) from their
first blob to their commit, and gc holds :meth:`FileStore.collecting` (exclusive) while it decides
what is garbage and removes it: a ``flock`` on ``<home>/.gc-lock``, across processes.

A partial upload (``hub serve``'s resumable uploads) is ``<home>/partial-uploads/<sha256>``,
appended to under a ``flock`` of its own and renamed into ``blobs/`` once whole and hashed right.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from hub.errors import IntegrityError, InvalidArgumentError, storage_error
from hub.storage.base import TEMP_PREFIX, BlobStore, file_mode, temp_file
from hub.storage.writing import Writeback, fsync_dir, hash_pool, sha256_file, write_all, write_atomic

try:
    import fcntl
except ImportError:  # Windows: no flock; there gc's min_age_seconds alone protects a running publish
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileStore"]

GC_LOCK = ".gc-lock"
PARTIAL_UPLOADS = "partial-uploads"
_DIGEST = re.compile(r"[0-9a-f]{64}")
_verified: dict[Path, tuple[int, int, int]] = {}  # blobs whose sha256 claim() checked: path -> (inode, size, mtime_ns)


WRITE_BATCH = 4 * 1024 * 1024  # bytes of an upload written (one writev) and hashed at a time
_IOV_MAX = 1024  # buffers in one writev (Linux's IOV_MAX)


def _update_all(hasher: Any, views: list[memoryview]) -> None:
    for view in views:
        hasher.update(view)


def _writev_all(fd: int, views: list[memoryview]) -> None:
    """Write every byte of ``views`` at the file's position (``writev`` may write fewer)."""
    if not hasattr(os, "writev"):  # Windows
        for view in views:
            while view:
                view = view[os.write(fd, view):]
        return
    while views:
        written = os.writev(fd, views)
        while views and written >= views[0].nbytes:
            written -= views[0].nbytes
            views = views[1:]
        if views and written:
            views = [views[0][written:], *views[1:]]


def _flock_within(fd: int, operation: int, timeout: float) -> None:
    """``flock`` that gives up after ``timeout`` seconds with ``TimeoutError``."""
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


class FileStore(BlobStore):
    """A store in the folder ``root`` (the hub's home): blobs under ``root/blobs``, keys as files under ``root``.

    Args:
        root: the hub's home folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.on_bytes: Callable[[int], None] | None = None
        self._use_mutex = threading.Lock()
        self._use_count = 0  # holders of in_use in this process; the first takes the flock, the last drops it
        self._recorders = threading.local()  # sets that recording_new() fills, per thread
        self._use_fd: int | None = None

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    # --- locks --------------------------------------------------------------------

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
    def locks_work(self) -> bool:
        return fcntl is not None

    @property
    def held_here(self) -> bool:
        return self._use_count > 0

    @contextmanager
    def in_use(self) -> Iterator[None]:
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
        stack = self._recorders.__dict__.setdefault("stack", [])
        created: set[str] = set()
        stack.append(created)
        try:
            yield created
        finally:
            stack.remove(created)

    @contextmanager
    def collecting(self, timeout: float | None = None) -> Iterator[None]:
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

    # --- blobs ------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (it may not exist)."""
        return self.blobs / digest

    def local_path(self, digest: str) -> Path:
        return self.path(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int | None:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise IntegrityError(f"blob {digest} is missing from {self.blobs}; run `hub verify`") from None

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        if self.blobs.is_dir():
            for entry in os.scandir(self.blobs):
                if _DIGEST.fullmatch(entry.name):
                    yield entry.name

    def temp_files(self) -> list[Path]:
        """Temporary files left by interrupted blob writes."""
        return [self.root / key for key in self.leftovers("blobs")]

    def claim(self, digest: str, size: int) -> bool:
        # A publish never acknowledges bytes it has not verified, so the sha256 is checked: once per
        # process while the file stays the same file (inode, size and mtime).
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

    def _install(self, temp: str | os.PathLike[str], sha256: str) -> Path:
        """Rename a checked temporary file to blob ``sha256`` (atomic; replacing one of that name, which
        may be damaged), record it for :meth:`recording_new` when it is new, and return its path."""
        final = self.path(sha256)
        created = not final.exists()
        os.replace(temp, final)
        if created:
            for recorder in getattr(self._recorders, "stack", ()):
                recorder.add(sha256)
        return final

    def write(self, chunks: Iterable[bytes | memoryview], *, expected_sha256: str | None = None,
              check: Callable[[Path], None] | None = None) -> tuple[str, int]:
        with self.in_use():
            return self._write(chunks, expected_sha256, check)

    def _write(self, chunks: Iterable[bytes | memoryview], expected_sha256: str | None,
               check: Callable[[Path], None] | None) -> tuple[str, int]:
        self.blobs.mkdir(parents=True, exist_ok=True)
        fd, temp = temp_file(self.blobs)
        try:
            digest, size = hashlib.sha256(), 0
            pool, writeback = hash_pool(), Writeback(fd)
            with open(fd, "wb", buffering=0) as f:
                for chunk in chunks:
                    view = memoryview(chunk).cast("B")
                    hashed = pool.submit(digest.update, view)
                    write_all(f, view)
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
            self._install(temp, sha256)
            fsync_dir(self.blobs)
            return sha256, size
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    # --- partial uploads ----------------------------------------------------------

    def _partial(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise InvalidArgumentError(f"{digest!r} is not a sha256 (64 lowercase hex digits)")
        return self.root / PARTIAL_UPLOADS / digest

    def upload_offset(self, digest: str) -> int:
        try:
            return self._partial(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def partial_uploads(self) -> list[str]:
        folder = self.root / PARTIAL_UPLOADS
        names = sorted(e.name for e in os.scandir(folder) if _DIGEST.fullmatch(e.name)) if folder.is_dir() else []
        return [f"{PARTIAL_UPLOADS}/{name}" for name in names]

    def _open_partial(self, path: Path) -> int:
        """The partial upload's file, opened and locked (exclusively, across processes), still at ``path``."""
        for _ in range(3):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        held = os.fstat(fd).st_size
                        error = InvalidArgumentError(f"another upload of blob {path.name} is under way (at offset {held}); "
                                                     "wait for it, then ask where it stopped (HEAD /api/v1/uploads/{sha256})")
                        error.offset = held  # type: ignore[attr-defined]
                        raise error from None
                try:  # completed (renamed into blobs/) or removed while we waited: open the new one
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        return fd
                except FileNotFoundError:
                    pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise InvalidArgumentError(f"the upload of blob {path.name} kept changing; retry it")

    def append_upload(self, digest: str, offset: int, chunks: Iterable[bytes | memoryview], total: int) -> int:
        path = self._partial(digest)
        if total < 0 or offset < 0 or offset > total:
            raise InvalidArgumentError(f"upload offset {offset} and length {total} don't fit: 0 <= offset <= length")
        with self.in_use():  # gc waits: it may not take the partial upload, nor the blob before a version claims it
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._open_partial(path)
            try:
                return self._append(fd, path, digest, offset, chunks, total)
            except BaseException:
                if os.fstat(fd).st_size == 0:  # nothing kept: leave no empty partial upload
                    path.unlink(missing_ok=True)
                raise
            finally:
                os.close(fd)  # drops the lock

    def _write_batches(self, fd: int, chunks: Iterable[bytes | memoryview], offset: int, hasher: Any, *,
                       limit: int | None = None, past: Callable[[int], None] | None = None) -> int:
        """Write ``chunks`` to ``fd`` from ``offset``, gathered into batches of :data:`WRITE_BATCH` bytes, each
        written with one ``writev`` (no join) while the hash thread adds it to ``hasher`` (None: no hash)
        and its disk write starts at once. What arrived before ``chunks`` raised is written too.

        Returns:
            The offset reached.

        Raises:
            What ``past(length)`` raises where a batch would pass ``limit`` bytes; what ``chunks`` raises.
        """
        pool, writeback = hash_pool(), Writeback(fd)  # the disk writes start as bytes arrive: the fsync finds them done
        size = offset

        def put(batch: list[memoryview]) -> None:
            nonlocal size
            length = sum(view.nbytes for view in batch)
            if limit is not None and size + length > limit and past is not None:
                past(length)
            hashed = pool.submit(_update_all, hasher, batch) if hasher is not None else None
            try:
                _writev_all(fd, batch)
                writeback.chunk_written(size, length)
            finally:
                if hashed is not None:
                    hashed.result()
            size += length
            if self.on_bytes is not None:
                self.on_bytes(length)

        batch: list[memoryview] = []
        pending = 0
        os.lseek(fd, offset, os.SEEK_SET)
        try:
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                batch.append(view)
                pending += view.nbytes
                if pending >= WRITE_BATCH or len(batch) >= _IOV_MAX:
                    full, batch, pending = batch, [], 0
                    put(full)
        except BaseException:
            if batch:  # what arrived before the client went away is kept too
                full, batch = batch, []
                put(full)
            raise
        if batch:
            put(batch)
        return size

    def write_upload(self, chunks: Iterable[bytes | memoryview]) -> tuple[str, int]:
        """Store an upload whose sha256 is not known before it ends (``POST .../-/blobs``): written to a
        temporary file as it arrives (in batches, hashed beside, its disk writes started at once),
        fsynced, and renamed to its sha256. Nothing is kept when ``chunks`` raise (the client went away).

        Returns:
            ``(sha256, size)`` of what arrived.
        """
        with self.in_use():
            self.blobs.mkdir(parents=True, exist_ok=True)
            fd, temp = temp_file(self.blobs)
            try:
                hasher = hashlib.sha256()
                try:
                    size = self._write_batches(fd, chunks, 0, hasher)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                sha256 = hasher.hexdigest()
                final = self._install(temp, sha256)
                stored = os.stat(final)
                _verified[final] = (stored.st_ino, stored.st_size, stored.st_mtime_ns)
                fsync_dir(self.blobs)
                return sha256, size
            except BaseException:
                temp.unlink(missing_ok=True)
                raise

    def _append(self, fd: int, path: Path, digest: str, offset: int, chunks: Iterable[bytes | memoryview], total: int) -> int:
        held = os.fstat(fd).st_size
        if held != offset:
            error = InvalidArgumentError(f"the upload of blob {digest} is at offset {held}, not {offset}; "
                                         f"continue from {held} (Upload-Offset: {held})")
            error.offset = held  # type: ignore[attr-defined]
            raise error
        hasher = hashlib.sha256() if offset == 0 else None

        def past(length: int) -> None:
            os.ftruncate(fd, offset)
            raise InvalidArgumentError(f"the upload of blob {digest} runs past its Upload-Length of {total} "
                                       f"bytes; this request's bytes were dropped, continue from {offset}")

        try:
            size = self._write_batches(fd, chunks, offset, hasher, limit=total, past=past)
        finally:
            os.fsync(fd)  # what arrived stays, also when the client went away
        if size < total:
            return size
        actual = hasher.hexdigest() if hasher is not None else sha256_file(path)[0]
        if actual != digest:
            path.unlink(missing_ok=True)
            raise IntegrityError(f"the {total} bytes uploaded hash to sha256 {actual}, not {digest}; they were dropped, "
                                 "upload the blob again from offset 0")
        self.blobs.mkdir(parents=True, exist_ok=True)
        final = self.path(digest)
        created = not final.exists()
        os.utime(fd)  # gc's grace period starts now, until a version claims the blob
        os.replace(path, final)
        if created:
            for recorder in getattr(self._recorders, "stack", ()):
                recorder.add(digest)
        _verified[final] = (os.fstat(fd).st_ino, total, os.stat(final).st_mtime_ns)
        fsync_dir(self.blobs)
        return size

    # --- keys -------------------------------------------------------------------

    def read_text(self, key: str) -> str | None:
        try:
            return (self.root / key).read_text()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def write_text(self, key: str, text: str, *, exclusive: bool = False) -> bool:
        return write_atomic(self.root / key, text, replace=not exclusive)

    def rename(self, key: str, new_key: str) -> bool:
        try:
            os.replace(self.root / key, self.root / new_key)
            return True
        except FileNotFoundError:
            return False

    def delete_key(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def list(self, prefix: str, *, recursive: bool = False) -> list[str]:
        folder = self.root / prefix
        if not recursive:
            try:
                return sorted(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                return []
        found = []
        for top, _, names in os.walk(folder):
            found += [os.path.relpath(os.path.join(top, name), folder) for name in names]
        return sorted(found)

    def age_seconds(self, key: str, now: float) -> float:
        try:
            return now - (self.root / key).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def key_size(self, key: str) -> int | None:
        try:
            return (self.root / key).stat().st_size
        except FileNotFoundError:
            return None

    def location(self, key: str) -> str:
        return str(self.root / key)

    def leftovers(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if prefix == "blobs":  # one flat folder: no walk
            names = [e.name for e in os.scandir(folder) if e.name.startswith(TEMP_PREFIX)] if folder.is_dir() else []
            return [f"blobs/{name}" for name in names]
        return [f"{prefix}/{name}" for name in self.list(prefix, recursive=True) if Path(name).name.startswith(TEMP_PREFIX)]
