"""Data files handed to the hub with a job, kept by content in ``HUB_HOME/uploads/<digest>/<name>``.

Both ways a file comes in put it there: the web UI's upload fields and a hub server's
``POST /api/v1/jobs``. Workers read it from there, the fine-tuning queue's part in ``hub gc``
(:mod:`finetune.gc`) keeps it while a queued or running job reads it, and the web UI's
(:mod:`webui.uploads`) removes it once it is old and no such job does. A file arrives in a
folder of its own beside the others (``uploads/.partial-<random>/``), hashed as it is written,
and moves into place only once it is whole, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path, PurePosixPath

from hub.errors import InvalidArgumentError
from hub.formatting import human_size

__all__ = ["uploads_folder", "safe_file_name", "IncomingFile"]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
DIGEST_CHARS = 16  # of the sha256, naming an upload's folder


def uploads_folder(home: str | os.PathLike[str]) -> Path:
    """Where uploads are kept in the hub whose home is ``home``."""
    return Path(home) / "uploads"


def safe_file_name(name: str) -> str:
    """``name`` without folders, with anything but letters, digits, ``.``, ``_`` and ``-`` replaced
    by ``_`` and no leading dot (``../../x y.csv`` -> ``x_y.csv``); ``upload`` when nothing is left."""
    return _SAFE_NAME.sub("_", PurePosixPath(name.replace("\\", "/")).name).lstrip(".") or "upload"


class IncomingFile:
    """One data file as it arrives, written to a partial folder in the uploads, hashed and counted.

    Call :meth:`write` with each piece, then :meth:`path_while_checked` (the file under its own
    name, still partial, for checks that read it), then :meth:`commit` to move it into place, or
    :meth:`discard` to remove it.

    Args:
        home: the hub's home folder.
        name: the file's name as the client gave it (made safe with :func:`safe_file_name`; its
            suffix says how the data is read).
        limit: the most bytes it may have.
        field: how errors name it (``"data"``).
    """

    def __init__(self, home: str | os.PathLike[str], name: str, *, limit: int, field: str = "data") -> None:
        self.name, self.limit, self.field, self.size = safe_file_name(name), limit, field, 0
        self.client_name = name[:200]  # how messages name it to its sender
        self._uploads = uploads_folder(home)
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._staging = self._uploads / f".partial-{uuid.uuid4().hex}"
        self._staging.mkdir()
        self._file = open(self._staging / self.name, "wb")  # noqa: SIM115 - closed in finish/discard
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        """Append ``data``.

        Raises:
            InvalidArgumentError: the file is now over its limit (what arrived is removed); its
                ``http_status`` is 413, what a server answers.
        """
        self.size += len(data)
        if self.size > self.limit:
            self.discard()
            error = InvalidArgumentError(f"{self.field} file {self.name} is over the limit of {human_size(self.limit)} for a job's "
                                         "data (FINETUNE_MAX_UPLOAD_MB on the server); send a smaller file or a sample of it")
            error.http_status = 413  # type: ignore[attr-defined]
            raise error
        self._hash.update(data)
        self._file.write(data)

    def path_while_checked(self) -> Path:
        """The whole file, still in its partial folder, under its own name.

        Raises:
            InvalidArgumentError: it is empty (it is removed).
        """
        if not self._file.closed:
            self._file.close()
        if self.size == 0:
            self.discard()
            raise InvalidArgumentError(f"{self.field} file {self.name} is empty; send the training data")
        return self._staging / self.name

    @property
    def staging_path(self) -> Path:
        """Where the file is while it arrives and is checked."""
        return self._staging / self.name

    @property
    def sha256(self) -> str:
        """The sha256 of what arrived so far."""
        return self._hash.hexdigest()

    def commit(self) -> Path:
        """Move the whole file to ``uploads/<digest>/<name>`` (where the same bytes under the same
        name may be already: then that one is kept, its time refreshed so ``hub gc`` counts its age
        from now) and return where it is.

        Raises:
            InvalidArgumentError: it is empty (it is removed).
        """
        partial = self.path_while_checked()
        folder = self._uploads / self.sha256[:DIGEST_CHARS]
        target = folder / self.name
        folder.mkdir(exist_ok=True)
        try:
            if target.is_file():
                os.utime(target)
            else:
                os.replace(partial, target)
        finally:
            self.discard()
        return target

    def discard(self) -> None:
        """Remove what arrived (nothing when it was committed)."""
        if not self._file.closed:
            self._file.close()
        shutil.rmtree(self._staging, ignore_errors=True)
