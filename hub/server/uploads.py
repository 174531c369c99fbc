"""Publishing over HTTP, content-addressed: which blobs the server lacks, resumable uploads, the commit.

1. ``POST /api/v1/models/{name}/-/uploads`` ``{"blobs": [{"sha256", "size"}, ...]}`` answers
   ``{"missing": [...]}``: the client uploads only those (republishing unchanged weights uploads none).
2. ``HEAD /api/v1/uploads/{sha256}`` says how much of a blob arrived (``Upload-Offset``);
   ``PATCH`` with ``Upload-Offset`` and ``Upload-Length`` streams the next bytes. Once whole, the
   bytes are hashed and become a blob; partial uploads live in the store, so any server process
   continues one.
   ``POST /api/v1/models/{name}/-/blobs`` stores a body whose sha256 the client does not know yet (it
   sends a weight file while it builds it) and answers the sha256 and size it hashed to.
3. ``POST /api/v1/models/{name}/-/versions`` commits the manifest (:meth:`hub.publisher.Publisher.publish_stored`):
   every blob is claimed, and the registry reserves the number atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from hub.errors import InvalidArgumentError
from hub.reference import validate_alias, validate_name, validate_version
from hub.server.context import ServerContext, context, json_body, principal, require_write_scope
from hub.server.errors import error_response
from hub.settings import acting_as

__all__ = ["router", "check_digest", "into_store", "UPLOAD_PIECE"]

router = APIRouter(tags=["publishing"])
UPLOAD_PIECE = 4 * 1024 * 1024  # bytes of a request body handed to the store (a worker thread) at a time
_DIGEST = re.compile(r"[0-9a-f]{64}")


def check_digest(sha256: str) -> str:
    """``sha256`` when it is 64 lowercase hex digits.

    Raises:
        InvalidArgumentError: anything else.
    """
    if not _DIGEST.fullmatch(sha256):
        shown = f"{sha256[:80]!r}{'...' if len(sha256) > 80 else ''}"
        raise InvalidArgumentError(f"{shown} is not a sha256: blobs are named by 64 lowercase hex digits")
    return sha256


def _header_int(request: Request, name: str) -> int:
    raw = request.headers.get(name)
    if raw is None or not raw.isdigit() or len(raw) > 18:
        raise InvalidArgumentError(f"header {name} must be a whole number of bytes, got {raw!r}")
    return int(raw)


_NEEDS_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["blobs"], "properties": {"blobs": {"type": "array", "items": {
        "type": "object", "required": ["sha256", "size"],
        "properties": {"sha256": {"type": "string"}, "size": {"type": "integer", "minimum": 0}}}}}}}}}}


@router.post("/models/{name:path}/-/uploads", openapi_extra=_NEEDS_BODY,
             responses={200: {"description": '{"missing": [sha256, ...]}'}})
def negotiate(name: str, body: Any = Depends(json_body), server: ServerContext = Depends(context),
              who: Any = Depends(principal)) -> JSONResponse:
    """Which of a version's blobs the server lacks (or holds at another size): upload only those."""
    validate_name(name)
    blobs = body.get("blobs") if isinstance(body, dict) else None
    if not isinstance(blobs, list) or not all(isinstance(b, dict) and set(b) == {"sha256", "size"} for b in blobs):
        raise InvalidArgumentError('the body must be {"blobs": [{"sha256": "<64 hex>", "size": <bytes>}, ...]}')
    wanted: dict[str, int] = {}
    for blob in blobs:
        digest, size = check_digest(str(blob["sha256"])), blob["size"]
        if type(size) is not int or size < 0:
            raise InvalidArgumentError(f"blob {digest}: size must be a whole number of bytes, got {size!r}")
        wanted.setdefault(digest, size)
    server.access.require_write(who, name)  # after the checks: a bad request claims no namespace
    return JSONResponse({"missing": [digest for digest, size in wanted.items() if server.hub.blobs.size(digest) != size]})


@router.head("/uploads/{sha256}", responses={200: {"description": "Upload-Offset (and Upload-Complete: 1 once stored)"}})
def upload_status(sha256: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> Response:
    """How many bytes of the blob arrived: ``Upload-Offset`` (its size and ``Upload-Complete: 1`` once stored)."""
    require_write_scope(who)
    check_digest(sha256)
    stored = server.hub.blobs.size(sha256)
    if stored is not None:
        return Response(status_code=200, headers={"Upload-Offset": str(stored), "Upload-Complete": "1"})
    return Response(status_code=200, headers={"Upload-Offset": str(server.hub.blobs.upload_offset(sha256))})


async def _pieces(request: Request) -> AsyncIterator[list[bytes]]:
    """The request body as lists of chunks of about :data:`UPLOAD_PIECE` bytes together (not joined:
    the store writes a list with one ``writev``); what arrived before the client went away first."""
    parts: list[bytes] = []
    held = 0
    try:
        async for chunk in request.stream():
            if chunk:
                parts.append(chunk)
                held += len(chunk)
            if held >= UPLOAD_PIECE:
                yield parts
                parts, held = [], 0
    except ClientDisconnect:
        if parts:
            yield parts
        raise
    if parts:
        yield parts


READ_AHEAD = 2  # pieces received ahead of the store's writes (double buffering)


async def _receive(request: Request, queue: asyncio.Queue, *, whole: bool = False) -> bool:
    """Put the body's pieces on ``queue`` (at most :data:`READ_AHEAD` waiting), then None when it ended or
    the client went away (what arrived first), or the exception that stopped it.

    Args:
        whole: only a whole body is of use: the client going away is put as :class:`ClientDisconnect`.

    Returns:
        Whether the client went away.
    """
    went_away = False
    try:
        async for piece in _pieces(request):
            await queue.put(piece)
    except ClientDisconnect as error:
        if whole:
            await queue.put(error)
            return True
        went_away = True
    except Exception as error:  # the store's thread raises it
        await queue.put(error)
        return False
    await queue.put(None)
    return went_away


def _pull(queue: asyncio.Queue) -> Iterator[bytes]:
    """The chunks :func:`_receive` puts on ``queue``, read from a worker thread (the store's writes and
    hashing run there, off the event loop, while the loop receives the next pieces)."""
    while (piece := anyio.from_thread.run(queue.get)) is not None:
        if isinstance(piece, Exception):
            raise piece
        yield from piece


async def into_store(request: Request, work: Any, *, whole: bool = False) -> tuple[Any, bool]:
    """``work(chunks)`` on a worker thread, ``chunks`` the request body as the event loop receives it
    (:data:`READ_AHEAD` pieces ahead): receiving, writing and hashing at once.

    Returns:
        ``(what work returned, whether the client went away)``.
    """
    queue: asyncio.Queue = asyncio.Queue(maxsize=READ_AHEAD)
    receiving = asyncio.ensure_future(_receive(request, queue, whole=whole))
    try:
        result = await run_in_threadpool(work, _pull(queue))
    finally:
        receiving.cancel()  # done by now, unless the store stopped early (a wrong offset): the rest is not read
        with contextlib.suppress(asyncio.CancelledError):
            await receiving
    return result, not receiving.cancelled() and receiving.result()


@router.patch("/uploads/{sha256}", status_code=204,
              openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {}}}},
              responses={204: {"description": "Upload-Offset: the new offset; Upload-Complete: 1 once stored"},
                         409: {"description": "Upload-Offset is not the server's (its header has the right one)"}})
async def upload(sha256: str, request: Request, server: ServerContext = Depends(context),
                 who: Any = Depends(principal)) -> Response:
    """Append the body (streamed) to the blob's upload at ``Upload-Offset``; ``Upload-Length`` is its size.
    When the upload is whole its sha256 is checked (400 IntegrityError, the upload dropped) and it is stored."""
    require_write_scope(who)
    check_digest(sha256)
    offset, total = _header_int(request, "upload-offset"), _header_int(request, "upload-length")
    store = server.hub.blobs
    stored = await run_in_threadpool(store.size, sha256)
    if stored is not None:
        return Response(status_code=204, headers={"Upload-Offset": str(stored), "Upload-Complete": "1"})
    try:
        reached, went_away = await into_store(request, lambda chunks: store.append_upload(sha256, offset, chunks, total))
    except InvalidArgumentError as error:
        if getattr(error, "offset", None) is None:
            raise
        return error_response(error, status=409, headers={"Upload-Offset": str(error.offset)})
    if went_away:
        return Response(status_code=400)  # no one reads it; what arrived is kept
    headers = {"Upload-Offset": str(reached)}
    if reached == total:
        headers["Upload-Complete"] = "1"
    return Response(status_code=204, headers=headers)


@router.post("/models/{name:path}/-/blobs", status_code=201,
             openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {}}}},
             responses={201: {"description": '{"sha256": s, "size": n}: the blob the body is, now stored'}})
async def upload_unnamed(name: str, request: Request, server: ServerContext = Depends(context),
                         who: Any = Depends(principal)) -> JSONResponse:
    """Store the body (streamed) as a blob for a version of ``name`` that is still being built: the
    server hashes it as it arrives and answers its sha256 and size (the client, which hashed what it
    sent, compares them). Not resumable: a body cut off leaves nothing (send it again by sha256)."""
    validate_name(name)
    server.access.require_write(who, name)  # before a byte is read
    store = server.hub.blobs
    try:
        (sha256, size), _ = await into_store(request, store.write_upload, whole=True)
    except ClientDisconnect:
        return Response(status_code=400)  # no one reads it; nothing was kept
    return JSONResponse({"sha256": sha256, "size": size}, status_code=201)


_COMMIT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["manifest"], "properties": {
        "manifest": {"type": "object", "description": "the manifest JSON as Manifest.to_json writes it"},
        "version": {"type": ["integer", "null"], "minimum": 1},
        "aliases": {"type": "array", "items": {"type": "string"}}}}}}}}


@router.post("/models/{name:path}/-/versions", status_code=201, openapi_extra=_COMMIT_BODY,
             responses={201: {"description": "the new ModelVersion"},
                        409: {"description": "MissingBlobsError (with digests) or VersionExistsError"}})
def commit(name: str, body: Any = Depends(json_body), server: ServerContext = Depends(context),
           who: Any = Depends(principal)) -> JSONResponse:
    """Publish a version whose blobs are uploaded: the server sets its number, time and author (the token's user)."""
    from hub.manifest import Manifest

    validate_name(name)
    if not isinstance(body, dict) or not isinstance(body.get("manifest"), dict) or not set(body) <= {"manifest", "version", "aliases"}:
        raise InvalidArgumentError('the body must be {"manifest": {...}, "version": N or null, "aliases": [...]}')
    aliases = body.get("aliases") or []
    if not isinstance(aliases, list):
        raise InvalidArgumentError(f"aliases must be a list of names, got {aliases!r}")
    record = {**body["manifest"], "version": 1, "created_at_ms": 0, "created_by": None}  # the server's to set
    draft = Manifest.from_json(json.dumps(record).encode(), source="the manifest sent")
    if draft.name != name:
        raise InvalidArgumentError(f"the manifest is for {draft.name!r}, but was sent to {name!r}; send it to "
                                   f"/api/v1/models/{draft.name}/-/versions")
    aliases = [validate_alias(alias) for alias in aliases]
    number = validate_version(body["version"]) if body.get("version") is not None else None
    server.access.require_write(who, name)  # after the checks: a bad request claims no namespace
    with acting_as(who.user):
        version = server.hub.publisher.publish_stored(draft, version=number, aliases=aliases)
    return JSONResponse(version.to_dict(), status_code=201)
