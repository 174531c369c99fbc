"""Writing files fast and atomically: hashing beside the write, early write-back, atomic text files.

A blob's bytes are hashed on a helper thread while they are written (``hashlib`` releases the GIL)
and Linux is asked to start writing each chunk to disk at once (``sync_file_range``), so the final
``fsync`` finds most of them there: a publish costs about one pass. Small texts (pointers) go to a
temporary file and are renamed, or, where they must not replace anything, linked into place.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from hub.storage.base import hash_pool, read_chunks, temp_file, write_all

__all__ = ["fsync_dir", "hash_pool", "sha256_file", "write_all", "write_atomic", "Writeback"]

def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """The sha256 hex digest and size of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as stream:
        for chunk in read_chunks(stream):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class Writeback:
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
        if Writeback._call is None:
            Writeback._call = _load_sync_file_range()

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


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write ``text`` to ``path`` through a temporary file. With ``replace=False`` an existing
    file is left as it is (the write is a hard link, which fails where the name is taken).

    Returns:
        False when ``replace`` is False and ``path`` already existed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = temp_file(path.parent)
    try:
        with open(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:  # a file system without hard links: create the name exclusively instead
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            try:
                with open(path, "x") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                return True
            except FileExistsError:
                return False
        finally:
            temp.unlink(missing_ok=True)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
