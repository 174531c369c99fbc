"""The storage interface: what a hub keeps its bytes in, whatever the backend.

A store holds two kinds of things:

- **blobs**, named by the sha256 of their bytes (weights, files, manifests): written as a stream
  that is hashed as it arrives (a blob never has a name its bytes do not hash to), read whole, by
  range or as a stream, listed and deleted; and the locks gc needs (:meth:`BlobStore.in_use`,
  shared, held by writers until the registry records what they wrote; :meth:`BlobStore.collecting`,
  exclusive, held by gc);
- **partial uploads**, the bytes of a blob a client is uploading to ``hub serve`` in pieces
  (:meth:`BlobStore.upload_offset`, :meth:`BlobStore.append_upload`), kept in the store so that any
  server process can continue one; complete, they are checked against their sha256 and become a blob;
- **keys**, small texts under ``/``-separated names (``refs/<model>/versions/<n>``, the pointers
  and alias history that make a store self-describing): read, written (``exclusive``: never over
  an existing key), renamed, listed under a prefix, deleted, each with its age. A blob is also
  the key ``blobs/<digest>`` for what gc asks of any leftover (its age, size, location, removal).

:class:`hub.storage.filesystem.FileStore` keeps both in a folder (``blobs/``, ``refs/``). A
backend that cannot hand out a local file (object storage, a remote hub) returns None from
:meth:`BlobStore.local_path` and its callers fetch the bytes with :meth:`BlobStore.copy_to`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

from hub.errors import IntegrityError

__all__ = ["BlobStore", "CHUNK_SIZE", "TEMP_PREFIX", "file_mode", "hash_pool", "read_chunks", "temp_file", "write_all"]

CHUNK_SIZE = 16 * 1024 * 1024
TEMP_PREFIX = ".tmp-"


def read_chunks(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The bytes of an open binary stream, ``chunk_size`` at a time."""
    while chunk := stream.read(chunk_size):
        yield chunk


_hash_pool: Any = None
_hash_pool_lock = threading.Lock()


def hash_pool() -> Any:
    """The one helper thread that hashes beside writes (created on first use)."""
    global _hash_pool
    with _hash_pool_lock:
        if _hash_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _hash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-sha256")
        return _hash_pool


def write_all(f: Any, view: memoryview) -> None:
    """Write all of ``view`` to an unbuffered file (a raw write may be partial)."""
    while view:
        view = view[f.write(view) :]


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


class BlobStore(ABC):
    """Content-addressed blobs, small keyed texts and the locks gc needs: see the module docstring.

    Attributes:
        on_bytes: a progress hook, called with the size of each chunk written (None: none).
    """

    on_bytes: Callable[[int], None] | None = None

    # --- blobs ------------------------------------------------------------------

    @abstractmethod
    def exists(self, digest: str) -> bool:
        """True when the blob is stored."""

    @abstractmethod
    def size(self, digest: str) -> int | None:
        """The blob's size in bytes, or None when it is not stored."""

    @abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """The blob as a binary stream (close it after use).

        Raises:
            IntegrityError: the blob is missing.
        """

    def read_range(self, digest: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes of the blob from offset ``start`` (fewer at its end).

        Raises:
            IntegrityError: the blob is missing.
        """
        with self.open(digest) as stream:
            stream.seek(start)
            return stream.read(length)

    def read_bytes(self, digest: str) -> bytes:
        """The bytes of a (small) blob.

        Raises:
            IntegrityError: the blob is missing.
        """
        with self.open(digest) as stream:
            return stream.read()

    @abstractmethod
    def write(self, chunks: Iterable[bytes | memoryview], *, expected_sha256: str | None = None,
              check: Callable[[Path], None] | None = None) -> tuple[str, int]:
        """Store the concatenation of ``chunks`` (a stream, hashed as it arrives); return its ``(sha256, size)``.

        Holds :meth:`in_use` while it writes; hold it around the call and beyond until whatever
        needs the blob is recorded.

        Args:
            chunks: the bytes, in order (any buffer objects).
            expected_sha256: the bytes must hash to this, or nothing is stored under any name.
            check: called with a local file holding the bytes written, before they get their
                name: it checks what was actually stored (a safetensors header) and raises to store nothing.

        Raises:
            IntegrityError: the bytes do not hash to ``expected_sha256``.
            Whatever ``check`` raises.
        """

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return ``(sha256, size)``."""
        return self.write([data])

    def put_file(self, path: Path, *, expected_sha256: str | None = None,
                 check: Callable[[Path], None] | None = None) -> tuple[str, int]:
        """Store a local file's bytes, hashing them as they are read; return ``(sha256, size)``.
        ``expected_sha256`` and ``check`` are as for :meth:`write`."""
        with open(path, "rb") as stream:
            return self.write(read_chunks(stream), expected_sha256=expected_sha256, check=check)

    @abstractmethod
    def delete(self, digest: str) -> None:
        """Remove the blob (nothing when it is not there)."""

    @abstractmethod
    def digests(self) -> Iterator[str]:
        """Every stored blob's digest."""

    @abstractmethod
    def claim(self, digest: str, size: int) -> bool:
        """Check a stored blob that a version being published will reuse (size and sha256), and
        mark it as just used, so that gc's grace period spares it until that version is registered.

        Returns:
            False when the blob is missing, not ``size`` bytes, or does not hash to ``digest``.
        """

    def problem(self, digest: str, size: int | None, *, check_hash: bool) -> str | None:
        """What is wrong with blob ``digest`` (missing, wrong ``size`` if given, wrong hash), or None."""
        actual = self.size(digest)
        if actual is None:
            return f"blob {digest} is missing"
        if size is not None and actual != size:
            return f"blob {digest} is {actual} bytes, expected {size} (truncated or overwritten)"
        if check_hash:
            digest_of = hashlib.sha256()
            try:
                with self.open(digest) as stream:
                    for chunk in read_chunks(stream):
                        digest_of.update(chunk)
            except IntegrityError:
                return f"blob {digest} is missing"
            if digest_of.hexdigest() != digest:
                return f"blob {digest} hashes to {digest_of.hexdigest()} (corrupted)"
        return None

    @abstractmethod
    def local_path(self, digest: str) -> Path | None:
        """A local file holding the blob (to memory-map it, say with ``safe_open``), or None where
        the backend has none (fetch it with :meth:`copy_to`). The file may be missing: check first."""

    def read_verified(self, digest: str, size: int | None = None) -> bytes:
        """The bytes of a (small) blob, checked against its sha256 (and ``size``).

        Raises:
            IntegrityError: the blob is missing, of another size, or corrupted (the message says which).
        """
        problem = self.problem(digest, size, check_hash=False)
        data = self.read_bytes(digest) if problem is None else b""
        if problem is None and hashlib.sha256(data).hexdigest() != digest:
            problem = f"blob {digest} does not match its sha256 (corrupted)"
        if problem:
            raise IntegrityError(problem)
        return data

    def copy_to(self, digest: str, destination: Path, *, size: int | None = None) -> None:
        """Copy the blob to a local file, through a temporary file and a rename, checking its sha256.

        Raises:
            IntegrityError: the blob is missing, of another size than ``size``, or corrupted; nothing is left.
        """
        problem = self.problem(digest, size, check_hash=False)
        if problem:
            raise IntegrityError(problem)
        with self.open(digest) as stream:
            self.write_local(destination, read_chunks(stream), expected_sha256=digest)

    def write_local(self, destination: Path, chunks: Iterable[bytes | memoryview], *,
                    expected_sha256: str | None = None) -> tuple[str, int]:
        """Write ``chunks`` to the local file ``destination`` through a temporary file and a rename, hashing
        each chunk on the hash thread while the next is written.

        Returns:
            The bytes' ``(sha256, size)``.

        Raises:
            IntegrityError: they don't hash to ``expected_sha256``; nothing is left.
        """
        fd, temp = temp_file(destination.parent)
        try:
            digest, size, pool, hashed = hashlib.sha256(), 0, hash_pool(), None
            with open(fd, "wb", buffering=0) as out:
                try:
                    for chunk in chunks:
                        view = memoryview(chunk).cast("B")
                        if hashed is not None:
                            hashed.result()
                        hashed = pool.submit(digest.update, view)
                        write_all(out, view)
                        size += view.nbytes
                        if self.on_bytes is not None:
                            self.on_bytes(view.nbytes)
                finally:
                    if hashed is not None:
                        hashed.result()
            if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
                raise IntegrityError(f"blob {expected_sha256} is corrupted")
            os.replace(temp, destination)
            return digest.hexdigest(), size
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    # --- partial uploads (resumable, for hub serve) --------------------------------

    def write_upload(self, chunks: Iterable[bytes | memoryview]) -> tuple[str, int]:
        """Store an upload whose sha256 is not known before it ends (``hub serve``'s ``POST .../-/blobs``)
        under the sha256 its bytes hash to; nothing is kept when ``chunks`` raise. Default: :meth:`write`.

        Returns:
            ``(sha256, size)``.
        """
        return self.write(chunks)

    @abstractmethod
    def upload_offset(self, digest: str) -> int:
        """How many bytes of the blob ``digest`` a partial upload holds so far (0: none)."""

    @abstractmethod
    def append_upload(self, digest: str, offset: int, chunks: Iterable[bytes | memoryview], total: int) -> int:
        """Add ``chunks`` to the partial upload of blob ``digest`` at ``offset``; once it holds ``total``
        bytes, check their sha256 and store them as the blob (the partial upload is then gone).

        What arrived is kept when ``chunks`` raises (a client that went away): :meth:`upload_offset`
        says where to continue. One writer at a time per blob, across processes.

        Args:
            digest: the blob's sha256 (64 lowercase hex digits).
            offset: where these bytes go; must be what :meth:`upload_offset` says.
            chunks: the next bytes, in order.
            total: the blob's size.

        Returns:
            The new offset (``total`` when the blob is stored).

        Raises:
            InvalidArgumentError: ``offset`` is not the upload's (``error.offset`` is the right one), another
                upload of this blob is under way, or the bytes run past ``total`` (this call's bytes are dropped).
            IntegrityError: all ``total`` bytes arrived and they don't hash to ``digest`` (the partial upload is removed).
        """

    @abstractmethod
    def partial_uploads(self) -> list[str]:
        """The keys of the partial uploads there are (``gc`` removes old ones, ``verify`` lists them)."""

    # --- locks --------------------------------------------------------------------

    @property
    @abstractmethod
    def locks_work(self) -> bool:
        """Whether :meth:`in_use` and :meth:`collecting` exclude each other across processes (no file
        locks on this system: only gc's ``min_age_seconds`` protects a running publish)."""

    @property
    @abstractmethod
    def held_here(self) -> bool:
        """True while some thread of this process holds :meth:`in_use`."""

    @abstractmethod
    def in_use(self) -> AbstractContextManager[None]:
        """Hold while writing or reusing blobs the registry does not record yet: shared (any number of
        processes and threads at once, nesting), and :meth:`collecting` waits until no one holds it."""

    @abstractmethod
    def collecting(self, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold while deciding what is garbage and removing it: exclusive. Don't take it while holding :meth:`in_use`.

        Args:
            timeout: give up after this many seconds (``TimeoutError``); None waits as long as it takes.
        """

    @abstractmethod
    def recording_new(self) -> AbstractContextManager[set[str]]:
        """Collect the digests of the blobs this thread adds (not those it finds there) while the block runs."""

    # --- keys (pointers, alias history) ----------------------------------------

    @abstractmethod
    def read_text(self, key: str) -> str | None:
        """The text under ``key``, or None when there is none."""

    @abstractmethod
    def write_text(self, key: str, text: str, *, exclusive: bool = False) -> bool:
        """Write ``text`` under ``key`` atomically (a reader sees the old text or the new, whole).

        Args:
            exclusive: never replace: leave an existing key as it is.

        Returns:
            False when ``exclusive`` and the key was there already; else True.
        """

    @abstractmethod
    def rename(self, key: str, new_key: str) -> bool:
        """Move ``key`` to ``new_key``, replacing it; False when ``key`` is not there."""

    @abstractmethod
    def delete_key(self, key: str) -> None:
        """Remove ``key`` (nothing when it is not there)."""

    @abstractmethod
    def list(self, prefix: str, *, recursive: bool = False) -> list[str]:
        """What is under ``prefix`` (a folder-like key, say ``refs/acme+m/versions``), sorted: the names of
        its keys and sub-prefixes one level down, or, ``recursive``, the paths of every key below it
        relative to ``prefix``. Empty when there is nothing."""

    @abstractmethod
    def age_seconds(self, key: str, now: float) -> float:
        """Seconds from the last write of ``key`` (or blob key ``blobs/<digest>``) to ``now``; 0 if gone."""

    @abstractmethod
    def key_size(self, key: str) -> int | None:
        """The size in bytes of what is under ``key`` (a text or a blob key), or None when gone."""

    @abstractmethod
    def location(self, key: str) -> str:
        """Where ``key`` lives, for people (a report, an error): a path, a URL."""

    @abstractmethod
    def leftovers(self, prefix: str) -> list[str]:
        """The keys under ``prefix`` of writes that were interrupted (temporary files), recursively."""
