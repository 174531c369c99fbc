"""Where a hub keeps its bytes: the :class:`BlobStore` interface and its backends.

:class:`FileStore` (a folder: ``blobs/``, ``refs/``) is the one there is; an object-storage or
remote backend implements the same interface and runs the same tests (``tests/test_storage.py``).
"""

from __future__ import annotations

from pathlib import Path

from hub.storage.base import BlobStore
from hub.storage.filesystem import FileStore
from hub.storage.writing import sha256_file

__all__ = ["BlobStore", "FileStore", "open_store", "sha256_file"]


def open_store(home: Path) -> BlobStore:
    """The store of the hub at ``home``."""
    return FileStore(home)
