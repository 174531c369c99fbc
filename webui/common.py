"""What the web UI's pages share: the hub they talk to, links between pages, uploads, formatting.

Pages call only the public ``hub`` and ``finetune`` APIs; this module adds no
business logic, only the glue a browser needs (uploaded bytes onto disk, links).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import streamlit as st

import hub
from hub.errors import InvalidArgumentError, UnsafeFormatError
from hub.formatting import human_size
from hub.settings import current_user
from webui.auth import session_hub
from webui.settings import max_upload_mb
from webui.uploads import uploads_folder

__all__ = [
    "MAX_UPLOAD_MB", "the_hub", "md", "model_link", "job_link", "status_badge", "card_body",
    "store_upload", "extract_zip", "private_folder", "rename_into_place", "show_error", "query_param", "current_user",
]

MAX_UPLOAD_MB = max_upload_mb()
MAX_ZIP_FILES = 10_000
MAX_ZIP_RATIO = 100  # bytes a zip may unpack to per byte of zip; images and weights unpack to about 1x, text to 3-10x
UNZIP_CHUNK = 1 << 20
STATUS_COLOURS = {"queued": "gray", "running": "blue", "succeeded": "green", "failed": "red", "cancelled": "orange"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# what Markdown (CommonMark, GitHub's tables, Streamlit's directives and math) reads as more than text
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~$!@&{}])")
_AUTOLINK = re.compile(r"(?i)(?<=\bwww)\.|:(?=//)")  # www.x and x:// become links without any brackets
_BLOCK_START = re.compile(r"^(\s*)(?:([-+=])|(\d+)([.)]))")  # a list or a heading when the text starts a block


def the_hub() -> hub.Hub:
    """The hub this session uses: the local one of ``HUB_HOME`` and ``HUB_REGISTRY_URL``, as for the
    CLI, or with ``HUB_ENDPOINT`` set the session's own remote hub (:func:`webui.auth.session_hub`)."""
    return session_hub()


def query_param(name: str) -> str | None:
    """A page's query parameter (``/model?ref=acme/x:2``), or None."""
    value = st.query_params.get(name)
    return value or None


def md(text: Any) -> str:
    """``text`` escaped for Markdown, so that it shows as typed: no link, image, HTML, table cell,
    emphasis, badge or formula can come out of it. One line (line breaks become spaces), for a
    table cell as for a paragraph.

    Every text a user or a file chose (tags, task, license, description, class labels, column
    names, error messages that quote them) goes through this before ``st.markdown``,
    ``st.error`` and the like render it; names and references are checked characters already.
    """
    text = " ".join(str(text).splitlines())
    text = _AUTOLINK.sub(lambda m: "\\" + m.group(), _MARKDOWN_SPECIAL.sub(r"\\\1", text))
    return _BLOCK_START.sub(lambda m: m[1] + (f"\\{m[2]}" if m[2] else f"{m[3]}\\{m[4]}"), text, count=1)


def _link_text(label: str) -> str:
    """A link's text: its brackets, backslashes and line breaks escaped (a link can't hold another)."""
    return re.sub(r"([\\\[\]])", r"\\\1", " ".join(label.splitlines()))


def model_link(ref: str, label: str | None = None) -> str:
    """A Markdown link to a model's page."""
    return f"[{_link_text(label or ref)}](/model?ref={quote(ref, safe='')})"


def job_link(job_id: str, label: str | None = None) -> str:
    """A Markdown link to a job's page."""
    return f"[{_link_text(label or job_id)}](/job?id={quote(job_id, safe='')})"


def status_badge(status: str) -> str:
    """A coloured Markdown badge for a job state."""
    return f":{STATUS_COLOURS.get(status, 'gray')}-badge[{status}]"


def card_body(text: str) -> str:
    """A model card's Markdown without its YAML front matter."""
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            return text[end + 4 :].lstrip("\n")
    return text


def show_error(error: Exception) -> None:
    """An error next to the field that caused it: one line, no traceback, the text escaped
    (messages quote what was given: a file's values, names, labels)."""
    st.error(md(error), icon=":material/error:")


def store_upload(uploaded: Any, *, allowed: tuple[str, ...]) -> Path:
    """Put an uploaded file where workers can read it: ``$HUB_HOME/uploads/<sha256>/<name>``.

    Checks come first: the size against ``HUB_UI_MAX_UPLOAD_MB`` and the suffix
    against ``allowed``; nothing is written when either fails.

    Raises:
        InvalidArgumentError: too big, empty, or of a type the field does not take.
    """
    name = _SAFE_NAME.sub("_", PurePosixPath(uploaded.name).name).lstrip(".") or "upload"
    if not name.lower().endswith(allowed):
        raise InvalidArgumentError(f"{uploaded.name}: this field takes {', '.join(allowed)} files")
    if uploaded.size > MAX_UPLOAD_MB * 1_000_000:
        raise InvalidArgumentError(f"{uploaded.name} is {human_size(uploaded.size)}; uploads are limited to {MAX_UPLOAD_MB} MB "
                                   "(HUB_UI_MAX_UPLOAD_MB); use the finetune or hub command line for bigger files")
    data = uploaded.getvalue()
    if not data:
        raise InvalidArgumentError(f"{uploaded.name} is empty")
    folder = uploads_folder(the_hub().home) / hashlib.sha256(data).hexdigest()[:16]
    target = folder / name
    if not target.is_file():  # another session may be writing the same upload: each writes a file of its own
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{name}.{uuid.uuid4().hex}.partial"
        try:
            partial.write_bytes(data)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)  # gone already when the rename happened; a full disk leaves nothing
    return target


def private_folder(target: Path) -> Path:
    """A new, empty folder beside ``target`` that no other session uses (made with the usual
    permissions, unlike ``tempfile.mkdtemp``'s owner-only ones), to be renamed to ``target``."""
    staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex}")
    staging.mkdir()
    return staging


def max_unzipped_bytes() -> int:
    """The most a zip may unpack to in all: four uploads' worth (``4 * HUB_UI_MAX_UPLOAD_MB``)."""
    return 4 * MAX_UPLOAD_MB * 1_000_000


def extract_zip(path: Path) -> Path:
    """Unpack an uploaded zip beside it, refusing entries that would leave the folder or blow up.

    Before a byte is unpacked, the central directory's entries are checked: at most
    ``MAX_ZIP_FILES`` files, at most :func:`max_unzipped_bytes` in all, and at most
    ``MAX_ZIP_RATIO`` times the zip's own size (a zip bomb packs far more). Sizes a zip
    declares can lie, so they are enforced again while unpacking, byte by byte.

    The zip is unpacked into a folder of its own, then renamed into place in one step: two
    sessions unpacking the same upload at once both succeed, the second finding the first's
    folder, and nobody ever sees half a folder.

    Returns:
        The folder it unpacked to (the zip's single top folder, if it has one).

    Raises:
        UnsafeFormatError: not a zip, an absolute or ``..`` path, a link, too many files or bytes,
            or an entry that is damaged, encrypted or bigger than its header says (nothing is unpacked).
    """
    target = path.with_suffix("")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UnsafeFormatError(f"{path.name} is not a zip file") from None
    with archive:
        entries = [e for e in archive.infolist() if not e.is_dir() and not e.filename.startswith("__MACOSX/")]
        _check_zip_entries(path, entries)
        if not target.is_dir():
            staging = private_folder(target)
            try:
                _unpack(path, archive, entries, staging)
                rename_into_place(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename happened
    children = [c for c in target.iterdir() if not c.name.startswith(".")]
    return children[0] if len(children) == 1 and children[0].is_dir() else target


def _check_zip_entries(path: Path, entries: list[zipfile.ZipInfo]) -> None:
    """The limits and path rules, from the central directory alone."""
    total, size = sum(e.file_size for e in entries), path.stat().st_size
    if len(entries) > MAX_ZIP_FILES or total > max_unzipped_bytes():
        raise UnsafeFormatError(f"{path.name} unpacks to {len(entries)} files, {human_size(total)}; that is over the limit "
                                f"of {MAX_ZIP_FILES:,} files and {human_size(max_unzipped_bytes())} (4 x HUB_UI_MAX_UPLOAD_MB)")
    if total > MAX_ZIP_RATIO * size:
        raise UnsafeFormatError(f"{path.name} unpacks to {human_size(total)}, {total // max(size, 1):,} times its own "
                                f"{human_size(size)}; that is over the limit of {MAX_ZIP_RATIO} times (models and "
                                "images barely compress, so this is padding or a zip bomb); zip the files themselves")
    for entry in entries:
        parts = PurePosixPath(entry.filename).parts
        if entry.filename.startswith("/") or ".." in parts or (entry.external_attr >> 16) & 0o170000 == 0o120000:
            raise UnsafeFormatError(f"{path.name}: entry {entry.filename!r} would leave the folder or is a link")


def _unpack(path: Path, archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], folder: Path) -> None:
    """Write ``entries`` under ``folder``, counting bytes: an entry that yields more than its declared
    size, or a zip that yields more than the limit in all, stops the unpacking."""
    left = max_unzipped_bytes()
    for entry in entries:
        parts = [part for part in PurePosixPath(entry.filename).parts if part not in ("", ".")]
        if not parts:
            continue
        destination = folder.joinpath(*parts)
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(entry) as source, open(destination, "wb") as out:
                written = 0
                while chunk := source.read(UNZIP_CHUNK):
                    written += len(chunk)
                    left -= len(chunk)
                    if written > entry.file_size or left < 0:
                        raise UnsafeFormatError(f"{path.name}: entry {entry.filename!r} unpacks to more than the "
                                                f"{human_size(entry.file_size)} its header says; zip the folder again")
                    out.write(chunk)
        except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
            # a damaged or encrypted entry, or one whose bytes don't match its header (zipfile checks the CRC)
            raise UnsafeFormatError(f"{path.name} can't be unpacked ({exc}); zip the folder again") from None
        except (FileExistsError, NotADirectoryError, IsADirectoryError):  # "a" both a file and a folder
            raise UnsafeFormatError(f"{path.name}: entry {entry.filename!r} is both a file and a folder; "
                                    "zip the folder again") from None


def rename_into_place(staging: Path, target: Path) -> None:
    """Rename a folder made under a private name to ``target``, in one step; a ``target`` that is
    already there holds the same files (its name comes from the uploads' hashes), made by another session."""
    try:
        os.rename(staging, target)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not target.is_dir():
            raise
