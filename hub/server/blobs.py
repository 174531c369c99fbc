"""``GET|HEAD /api/v1/blobs/{sha256}``: a blob's bytes, streamed from the store's file, with ranges and caching.

A blob is readable by whoever can read some live version that names it (as a file or as its
manifest); to anyone else it is a 404, as a blob that is not there. Its sha256 is its strong
``ETag`` and it never changes, so it is cacheable for a year (``immutable``; ``private`` where no
anonymous reader could read it).
"""

from __future__ import annotations

import mmap
import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from hub.access import ANONYMOUS
from hub.errors import IntegrityError, ModelNotFoundError, VersionNotFoundError
from hub.reference import validate_name, validate_version
from hub.server.context import ServerContext, context, principal
from hub.server.errors import error_body
from hub.server.uploads import check_digest

__all__ = ["router", "BlobResponse", "BytesStore", "CHUNK_BYTES", "blob_response"]

router = APIRouter(tags=["blobs"])
CHUNK_BYTES = 4 * 1024 * 1024  # one read from the file, one send to the socket
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class BlobResponse(Response):
    """Bytes ``start`` to ``end`` (exclusive) of a blob: from a memory map of its local file, or, for a
    store that has none (:meth:`BlobStore.local_path` None), read by ranges off the event loop."""

    def __init__(self, store: Any, digest: str, start: int, end: int, status_code: int, headers: dict[str, str], *,
                 head: bool) -> None:
        super().__init__(status_code=status_code, headers=headers)
        self.store, self.digest, self.start, self.end, self.head = store, digest, start, end, head
        local = store.local_path(digest)
        self.path = str(local) if local is not None else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.headers["content-length"] = str(self.end - self.start)
        if self.head or self.end == self.start:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if self.path is None:
            await self._send_read(send)
            return
        with open(self.path, "rb") as file:  # before the headers go: a failure here is still an error response
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        view = piece = None
        try:
            if hasattr(mmap, "MADV_SEQUENTIAL"):
                mapped.madvise(mmap.MADV_SEQUENTIAL)
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            view = memoryview(mapped)
            offset = self.start
            while offset < self.end:  # the socket is written straight from the page cache, no copy here
                piece = view[offset:min(offset + CHUNK_BYTES, self.end)]
                offset += len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": offset < self.end})
        finally:
            view = piece = None
            try:
                mapped.close()
            except BufferError:  # the server still holds a piece to write: the map goes with it
                pass

    async def _send_read(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        offset = self.start
        while offset < self.end:
            piece = await run_in_threadpool(self.store.read_range, self.digest, offset, min(CHUNK_BYTES, self.end - offset))
            if not piece:
                raise IntegrityError(f"blob {self.digest} ended at {offset} bytes, {self.end} expected")
            offset += len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": offset < self.end})


def _range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``(start, end)`` of a one-range ``Range`` header; None to send it all (no header, or one this
    ignores: several ranges, another unit); ``"unsatisfiable"`` for a range beyond the blob."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = int(last)
        return (max(0, size - count), size) if count > 0 and size > 0 else "unsatisfiable"
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if last and int(last) < start:
        return None
    return (start, end) if start < size else "unsatisfiable"


def _not_here(sha256: str) -> JSONResponse:
    return JSONResponse(error_body("NotFound", f"no blob {sha256} here that you can read; blobs are named by the "
                                               "files and manifests of versions (GET /api/v1/models/{name}/-/latest)"),
                        status_code=404)


_BLOB_RESPONSES: dict[str, Any] = {"response_class": Response, "responses": {
    200: {"content": {"application/octet-stream": {}}}, 206: {"description": "one range"},
    304: {"description": "If-None-Match matched"}, 404: {"description": "no such readable blob"},
    416: {"description": "the range is beyond the blob"}}}


@router.get("/blobs/{sha256}", operation_id="get_blob", **_BLOB_RESPONSES)
@router.head("/blobs/{sha256}", operation_id="head_blob", **_BLOB_RESPONSES)
async def get_blob(sha256: str, request: Request, server: ServerContext = Depends(context),
                   who: Any = Depends(principal)) -> Response:
    """The blob's bytes (``Range: bytes=a-b`` for one range), ``ETag`` its sha256, cacheable forever."""
    check_digest(sha256)
    readable, public = await run_in_threadpool(_visibility, server, who, sha256)
    if not readable or server.hub.blobs.size(sha256) is None:
        return _not_here(sha256)
    return blob_response(request, server.hub.blobs, sha256, public=public)


@router.get("/models/{name:path}/-/versions/{n}/files/{path:path}", operation_id="get_file", **_BLOB_RESPONSES)
@router.head("/models/{name:path}/-/versions/{n}/files/{path:path}", operation_id="head_file", **_BLOB_RESPONSES)
async def get_file(name: str, n: str, path: str, request: Request, server: ServerContext = Depends(context),
                   who: Any = Depends(principal)) -> Response:
    """A file of version ``n`` by its path in the version (``README.md``, ``config.json``, a weights
    file): its blob's bytes, as ``GET /blobs/{sha256}`` sends them."""
    sha256, public = await run_in_threadpool(_file_of, server, who, name, n, path)
    if server.hub.blobs.size(sha256) is None:
        return _not_here(sha256)
    return blob_response(request, server.hub.blobs, sha256, public=public)


def blob_response(request: Request, store: Any, sha256: str, *, public: bool, etag: str | None = None,
                  headers: dict[str, str] | None = None, immutable: bool = True) -> Response:
    """The answer for a stored blob: 304 for its ETag, 206 for one range, 416 beyond it, else all of it.

    Args:
        store: the blob store (anything with ``size``, ``local_path`` and ``read_range`` of a digest).
        public: whether anonymous readers may read it (``Cache-Control: public``, else ``private``).
        etag: its ``ETag`` without quotes (default its sha256): what ``If-None-Match`` and ``If-Range`` match.
        headers: more headers for every answer (the Hugging Face routes' ``X-Repo-Commit``, ...).
        immutable: cacheable for a year (a blob by its digest); else each use revalidates (``no-cache``).
    """
    size = store.size(sha256)
    tag = f'"{etag or sha256}"'
    caching = "max-age=31536000, immutable" if immutable else "no-cache"
    headers = {**(headers or {}), "etag": tag, "accept-ranges": "bytes", "content-type": "application/octet-stream",
               "cache-control": f"{'public' if public else 'private'}, {caching}"}
    wanted = request.headers.get("if-none-match")
    if wanted and any(given.strip().removeprefix("W/") in (tag, "*") for given in wanted.split(",")):
        return Response(status_code=304, headers=headers)
    if_range = request.headers.get("if-range")
    span = _range(request.headers.get("range"), size) if if_range in (None, tag) else None
    head = request.method == "HEAD"
    if span == "unsatisfiable":
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
    if span is None:
        return BlobResponse(store, sha256, 0, size, 200, headers, head=head)
    start, end = span
    return BlobResponse(store, sha256, start, end, 206, {**headers, "content-range": f"bytes {start}-{end - 1}/{size}"}, head=head)


class BytesStore:
    """Bytes held in memory, as :func:`blob_response` reads a store: one "blob" (a generated file) to send."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def size(self, digest: str) -> int:
        """Its size, whatever the digest."""
        return len(self.data)

    def local_path(self, digest: str) -> None:
        """None: it has no file."""
        return None

    def read_range(self, digest: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start``."""
        return self.data[start:start + length]


def _file_of(server: ServerContext, who: Any, name: str, n: str, path: str) -> tuple[str, bool]:
    """The sha256 of file ``path`` of ``name:n``, and whether anonymous readers may read it.

    Raises:
        InvalidReferenceError: a malformed name or version.
        ModelNotFoundError: ``who`` may not read the model (worded as a missing one), or no such version or file.
    """
    validate_name(name)
    server.access.require_read(who, name)
    try:
        version = server.hub.info(f"{name}:{validate_version(n)}")
    except ModelNotFoundError as error:
        if type(error) is ModelNotFoundError:  # the registry's hint may name any model
            raise server.access.not_found(who, name) from None
        raise
    entry = next((f for f in version.files if f.path == path), None)
    if entry is None:
        raise VersionNotFoundError(f"{version.ref} has no file {path!r}; it has {', '.join(f.path for f in version.files)}")
    return entry.sha256, server.access.can_read(ANONYMOUS, name)


def _visibility(server: ServerContext, who: Any, sha256: str) -> tuple[bool, bool]:
    """Whether ``who`` may read the blob, and whether anyone may (anonymous readers too)."""
    if not server.access.can_read_blob(who, sha256):
        return False, False
    if who.user is None:
        return True, True
    return True, server.access.can_read_blob(ANONYMOUS, sha256)
