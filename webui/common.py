"""What the web UI's pages share: the hub they talk to, links between pages, uploads, formatting.

Pages call only the public ``hub`` and ``finetune`` APIs; this module adds no
business logic, only the glue a browser needs (uploaded bytes onto disk, links).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import streamlit as st

import hub
from hub.errors import InvalidArgumentError, UnsafeFormatError
from hub.settings import current_user

__all__ = [
    "MAX_UPLOAD_MB", "the_hub", "human_size", "model_link", "job_link", "status_badge", "card_body",
    "store_upload", "extract_zip", "show_error", "query_param", "current_user",
]

MAX_UPLOAD_MB = int(os.environ.get("HUB_UI_MAX_UPLOAD_MB", "200"))
MAX_ZIP_FILES = 10_000
STATUS_COLOURS = {"queued": "gray", "running": "blue", "succeeded": "green", "failed": "red", "cancelled": "orange"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def the_hub() -> hub.Hub:
    """The hub every page uses: ``HUB_HOME`` and ``HUB_REGISTRY_URL``, as for the CLI."""
    return hub.default_hub()


def query_param(name: str) -> str | None:
    """A page's query parameter (``/model?ref=acme/x:2``), or None."""
    value = st.query_params.get(name)
    return value or None


def human_size(size: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def model_link(ref: str, label: str | None = None) -> str:
    """A Markdown link to a model's page."""
    return f"[{label or ref}](/model?ref={quote(ref, safe='')})"


def job_link(job_id: str, label: str | None = None) -> str:
    """A Markdown link to a job's page."""
    return f"[{label or job_id}](/job?id={quote(job_id, safe='')})"


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
    """An error next to the field that caused it: one line, no traceback."""
    st.error(str(error), icon=":material/error:")


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
    folder = the_hub().home / "uploads" / hashlib.sha256(data).hexdigest()[:16]
    target = folder / name
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{name}.partial"
        partial.write_bytes(data)
        os.replace(partial, target)
    return target


def extract_zip(path: Path) -> Path:
    """Unpack an uploaded zip beside it, refusing entries that would leave the folder or blow up.

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
        total = sum(e.file_size for e in entries)
        if len(entries) > MAX_ZIP_FILES or total > 4 * MAX_UPLOAD_MB * 1_000_000:
            raise UnsafeFormatError(f"{path.name} unpacks to {len(entries)} files, {human_size(total)}; that is over the limit")
        for entry in entries:
            parts = PurePosixPath(entry.filename).parts
            if entry.filename.startswith("/") or ".." in parts or (entry.external_attr >> 16) & 0o170000 == 0o120000:
                raise UnsafeFormatError(f"{path.name}: entry {entry.filename!r} would leave the folder or is a link")
        if not target.is_dir():
            staging = target.with_name(f".{target.name}.partial")
            try:
                archive.extractall(staging, members=entries)
            except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
                # a damaged or encrypted entry, or one that unpacks to more than its header says
                shutil.rmtree(staging, ignore_errors=True)
                raise UnsafeFormatError(f"{path.name} can't be unpacked ({exc}); zip the folder again") from None
            os.replace(staging, target)
    children = [c for c in target.iterdir() if not c.name.startswith(".")]
    return children[0] if len(children) == 1 and children[0].is_dir() else target
