"""The local cache of a remote hub: blobs by sha256 under ``HUB_HOME`` (a :class:`FileStore`), fetched on demand.

A missing blob is fetched from ``GET /api/v1/blobs/{sha256}`` into ``HUB_HOME/partial/<sha256>``,
hashed as it arrives, and renamed into ``blobs/`` only when its bytes hash to its name: a blob that
does not is never kept (:class:`~hub.errors.IntegrityError`, the partial file removed). A download
that breaks off keeps what arrived and continues from there with ``Range`` (in this call, or the
next one, in any process: the partial file is locked while it grows). Several blobs (shards) are
fetched at once.

Like huggingface_hub's cache, nothing here is fsynced: the bytes are the server's (which checks the
sha256 of each upload), every blob was verified when it got its name, and after a crash ``hub
verify`` finds one the disk lost (deleting it is the cure: it is fetched again).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from hub.errors import IntegrityError, OfflineError, RemoteError
from hub.remote.client import API, RETRIES, Client
from hub.storage.base import file_mode, read_chunks, temp_file
from hub.storage.filesystem import FileStore
from hub.storage.writing import hash_pool, write_all

try:
    import fcntl
except ImportError:  # Windows: threads of one process still take turns (the per-digest lock)
    fcntl = None  # type: ignore[assignment]

__all__ = ["CacheStore", "PARALLEL_DOWNLOADS"]

PARALLEL_DOWNLOADS = 4  # blobs fetched at once
_READ_SIZE = 1024 * 1024  # bytes read from the connection into one buffer
_BUFFERS = 4  # buffers in rotation: one filling, the others being hashed and written


class CacheStore(FileStore):
    """A :class:`FileStore` at ``root`` that fetches the blobs it lacks from a hub server.

    Reads (:meth:`open`, :meth:`problem`, and what builds on them: ``read_verified``, ``copy_to``,
    the loader's checks) fetch a missing blob first; :meth:`fetch` fetches many at once.

    Args:
        root: the cache folder (``HUB_HOME``).
        client: the server's :class:`~hub.remote.client.Client`.

    Attributes:
        downloaded: digests fetched by this process, in order (what tests count).
    """

    def __init__(self, root: Path, client: Client) -> None:
        super().__init__(root)
        self.client = client
        self.partials = root / "partial"
        self.downloaded: list[str] = []
        self._verified: set[str] = set()  # what this process fetched and checked
        self._mutex = threading.Lock()
        self._digest_locks: dict[str, threading.Lock] = {}
        self._sending = threading.local()

    def __repr__(self) -> str:
        return f"CacheStore({str(self.root)!r}, {self.client.endpoint!r})"

    # --- reads that fetch first --------------------------------------------------

    def problem(self, digest: str, size: int | None, *, check_hash: bool) -> str | None:
        self.fetch([(digest, size)])
        return super().problem(digest, size, check_hash=check_hash)

    def cached_problem(self, digest: str, size: int | None, *, check_hash: bool) -> str | None:
        """What :meth:`problem` says, of the cache alone (nothing is fetched): ``hub verify`` of a remote hub."""
        return super().problem(digest, size, check_hash=check_hash)

    def open(self, digest: str) -> BinaryIO:
        self.fetch([(digest, None)])
        return super().open(digest)

    def copy_to(self, digest: str, destination: Path, *, size: int | None = None) -> None:
        """:meth:`FileStore.copy_to`; a blob this process fetched (its sha256 checked as it arrived) is
        copied by the kernel (``shutil.copyfile``) without hashing it a second time."""
        self.fetch([(digest, size)])
        with self._mutex:
            fresh = digest in self._verified
        if not fresh:
            return super().copy_to(digest, destination, size=size)
        problem = super().problem(digest, size, check_hash=False)
        if problem:
            raise IntegrityError(problem)
        fd, temp = temp_file(destination.parent)
        os.close(fd)
        try:
            shutil.copyfile(self.path(digest), temp)
            os.replace(temp, destination)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if self.on_bytes is not None:
            self.on_bytes(os.stat(destination).st_size)

    def cached(self, digest: str, size: int | None = None) -> bool:
        """Whether the cache holds the blob (of ``size`` bytes, where given)."""
        actual = self.size(digest)
        return actual is not None and (size is None or actual == size)

    # --- writing (a publish builds its blobs here first) ----------------------------

    def write(self, chunks: Iterable[bytes | memoryview], *, expected_sha256: str | None = None,
              check: Callable[[Path], None] | None = None) -> tuple[str, int]:
        """:meth:`FileStore.write`, hashed beside the write and renamed into place the same way, but not
        fsynced: the cache is not where a hub keeps its bytes (the server is, and it checks every upload's
        sha256), so a publish does not wait for the disk twice. After a crash, ``hub verify`` finds a
        cached blob the disk lost, and deleting it is the cure (it is fetched again)."""
        sender = getattr(self._sending, "sender", None)
        sending = None
        with self.in_use():
            self.blobs.mkdir(parents=True, exist_ok=True)
            fd, temp = temp_file(self.blobs)
            try:
                if sender is not None and (sending := sender.start(chunks)) is not None:
                    chunks = sending.chunks
                digest, size, pool = hashlib.sha256(), 0, hash_pool()
                with open(fd, "wb", buffering=0) as out:
                    for chunk in chunks:
                        view = memoryview(chunk).cast("B")
                        hashed = pool.submit(digest.update, view)
                        write_all(out, view)
                        hashed.result()
                        size += view.nbytes
                        if self.on_bytes is not None:
                            self.on_bytes(view.nbytes)
                sha256 = digest.hexdigest()
                if expected_sha256 is not None and sha256 != expected_sha256:
                    raise IntegrityError(f"bytes hash to sha256 {sha256}, expected {expected_sha256}; the source changed "
                                         "or is corrupt, copy it again")
                if check is not None:
                    check(temp)
                self._install(temp, sha256)
            except BaseException:
                temp.unlink(missing_ok=True)
                if sending is not None:
                    sending.finish(None, 0)
                raise
        if sending is not None:
            sending.finish(sha256, size)
        return sha256, size

    @contextmanager
    def sending(self, sender: Any) -> Iterator[None]:
        """While the block runs, each blob this thread writes is also offered to ``sender`` as it is built
        (a remote publish sends its weights while it writes them here): ``sender.start(chunks)`` answers
        None, or an object whose ``.chunks`` the write consumes and whose ``.finish(sha256, size)`` it
        calls once at the end (``sha256`` None: the write failed)."""
        previous = getattr(self._sending, "sender", None)
        self._sending.sender = sender
        try:
            yield
        finally:
            self._sending.sender = previous

    # --- fetching ------------------------------------------------------------------

    def fetch(self, blobs: Iterable[tuple[str, int | None]]) -> None:
        """Fetch each ``(sha256, size)`` the cache lacks (or holds at another size), several at once.

        Args:
            blobs: the digests and sizes (None where unknown) wanted.

        Raises:
            IntegrityError: the server's bytes don't hash to the digest (nothing is kept).
            OfflineError: ``HUB_OFFLINE=1`` and a blob is not cached.
            ModelNotFoundError: the server holds no such blob that this token may read.
            RemoteError: the server can't be reached (what arrived is kept for the next try).
        """
        wanted = {digest: size for digest, size in blobs if not self.cached(digest, size)}
        if not wanted:
            return
        if self.client.offline:
            raise OfflineError(f"HUB_OFFLINE=1 and {len(wanted)} blob(s) are not in the cache at {self.root} "
                               f"({', '.join(d[:12] for d in list(wanted)[:3])}); load this version once online")
        if len(wanted) == 1:
            self._fetch_one(*next(iter(wanted.items())))
            return
        with ThreadPoolExecutor(max_workers=min(PARALLEL_DOWNLOADS, len(wanted)), thread_name_prefix="hub-fetch") as pool:
            futures = [pool.submit(self._fetch_one, digest, size) for digest, size in wanted.items()]
            for future in futures:
                future.result()

    def _fetch_one(self, digest: str, size: int | None) -> None:
        with self._mutex:
            lock = self._digest_locks.setdefault(digest, threading.Lock())
        with lock:
            if self.cached(digest, size):
                return
            self.partials.mkdir(parents=True, exist_ok=True)
            partial = self.partials / digest
            fd = os.open(partial, os.O_RDWR | os.O_CREAT, file_mode())
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # another process growing it: wait, then find it done
                if self.cached(digest, size):
                    if os.fstat(fd).st_size == 0:
                        partial.unlink(missing_ok=True)
                    return
                self._download(fd, partial, digest, size)
            finally:
                os.close(fd)

    def _download(self, fd: int, partial: Path, digest: str, size: int | None) -> None:
        """Grow ``partial`` (open as ``fd``, locked) to the whole blob, check it, rename it into ``blobs/``."""
        broke: Exception | None = None
        fresh = False  # whether the bytes so far all came in this call from offset 0
        for attempt in range(RETRIES + 1):
            offset = os.fstat(fd).st_size
            if size is not None and offset > size:
                os.ftruncate(fd, 0)
                offset = 0
            fresh = fresh or offset == 0
            digest_of = hashlib.sha256()
            os.lseek(fd, 0, os.SEEK_SET)
            with open(os.dup(fd), "rb", closefd=True) as existing:  # what an earlier try left: hash it to go on
                for chunk in read_chunks(existing):
                    digest_of.update(chunk)
            try:
                total, digest_of = self._receive(fd, digest, offset, digest_of)
                break
            except RemoteError as exc:  # the connection broke: keep what arrived, go on from there
                broke = exc
                if type(exc) is not RemoteError or attempt == RETRIES:
                    raise
        else:  # pragma: no cover - the loop breaks or raises
            raise broke or RemoteError(f"blob {digest} could not be fetched")
        problem = None
        if size is not None and total != size:
            problem = f"blob {digest} from {self.client.endpoint} is {total} bytes, the version says {size}"
        elif (actual := digest_of.hexdigest()) != digest:
            problem = f"blob {digest} from {self.client.endpoint} hashes to {actual}"
        if problem is not None:
            os.ftruncate(fd, 0)
            partial.unlink(missing_ok=True)
            if not fresh:  # the bytes kept from an earlier try were wrong: fetch it whole once more
                with open(partial, "wb"):
                    pass
                return self._download_again(partial, digest, size)
            raise IntegrityError(f"{problem}: refused, nothing kept; the server's copy is damaged (run `hub verify` on the "
                                 "server), or the connection changed the bytes")
        self.blobs.mkdir(parents=True, exist_ok=True)
        os.replace(partial, self.path(digest))
        with self._mutex:
            self.downloaded.append(digest)
            self._verified.add(digest)

    def _download_again(self, partial: Path, digest: str, size: int | None) -> None:
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, file_mode())
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            self._download(fd, partial, digest, size)
        finally:
            os.close(fd)

    def _receive(self, fd: int, digest: str, offset: int, digest_of: Any) -> tuple[int, Any]:
        """Append the blob's bytes from ``offset`` to ``fd``, hashing them on a helper thread (into
        ``digest_of``, the hash of the bytes before ``offset``); return the size reached and the hash.

        Raises:
            RemoteError: the connection broke (what arrived is written); the server's errors as they are.
        """
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        what = f"fetching blob {digest[:12]}"
        with self.client.raw("GET", f"{API}/blobs/{digest}", what=what, headers=headers, expect=(200, 206, 416)) as response:
            if response.status == 416:  # nothing after offset: the partial holds more than the blob
                os.ftruncate(fd, 0)
                response.read()
                raise RemoteError(f"{what}: the partial download was longer than the blob; fetching it again")
            if response.status == 200 and offset:  # the server sent it whole
                os.ftruncate(fd, 0)
                offset, digest_of = 0, hashlib.sha256()
            elif response.status == 206 and not (response.getheader("content-range") or "").startswith(f"bytes {offset}-"):
                raise RemoteError(f"{what}: the server answered another range ({response.getheader('content-range')})")
            os.lseek(fd, offset, os.SEEK_SET)
            offset += self._copy(response, fd, digest_of)
        return offset, digest_of

    def _copy(self, response: Any, fd: int, digest_of: Any) -> int:
        """Read ``response``'s body into rotating buffers while helper threads hash each filled one (in
        order) and write it to ``fd``: receiving, hashing and writing run at once. Returns the bytes
        copied; what was read before an error is hashed and written before it is raised."""
        views = [memoryview(bytearray(_READ_SIZE)) for _ in range(_BUFFERS)]
        busy: list[tuple[Any, Any] | None] = [None] * _BUFFERS
        copied = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-fetch-sha256") as hasher, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-fetch-write") as writer, \
                open(fd, "wb", buffering=0, closefd=False) as out:
            try:
                for slot in itertools.cycle(range(_BUFFERS)):
                    if busy[slot] is not None:
                        for future in busy[slot]:
                            future.result()
                    count = response.readinto(views[slot])
                    if not count:
                        break
                    chunk = views[slot][:count]
                    busy[slot] = (hasher.submit(digest_of.update, chunk), writer.submit(write_all, out, chunk))
                    copied += count
                    if self.on_bytes is not None:
                        self.on_bytes(count)
            finally:
                for pending in busy:
                    for future in pending or ():
                        future.result()
        if response.length:  # http.client ends a body cut short quietly: bytes it was promised are missing
            raise RemoteError(f"the connection to HUB_ENDPOINT={self.client.endpoint} broke {response.length} bytes before "
                              "the end of a blob; what arrived is kept, and the rest is asked for")
        return copied
