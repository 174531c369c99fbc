"""The Git LFS side of Hugging Face uploads: the batch API, the upload targets it hands out, verify.

1. ``POST /{repo_id}.git/info/lfs/objects/batch`` (``application/vnd.git-lfs+json``, a token with
   write permission on ``repo_id``) ``{"operation": "upload", "transfers": [...], "objects": [{"oid",
   "size"}]}``: an object the store holds (that sha256 at that size) gets no ``actions``, so the client
   uploads nothing; any other gets ``actions.upload`` (a ``PUT`` of the whole body, or, when the client
   offers ``multipart`` and the object is at least :func:`hub.settings.hf_multipart_bytes`, one ``PUT``
   per part and a completion ``POST``) and ``actions.verify``. Never ``xet``.
2. The client sends those ``PUT``\\ s and the completion *without* its ``Authorization`` header, so each
   URL carries a grant (:func:`make_grant`): the token's id, an expiry and an HMAC-SHA256 over the repo,
   oid, size, part size and expiry, keyed by the token's stored secret hash
   (:meth:`hub.access.Access.signing_key`). Any server process over the same registry checks it, and a
   revoked or expired token voids it.
3. A whole body is streamed into the store (:func:`hub.server.uploads.into_store`), checked against its
   sha256 as it arrives: bytes that hash to something else, or run past the size, store nothing. A part
   is stored as a blob of its own (its ETag is its sha256); the completion joins the parts in order into
   the object, checked the same way, and removes the parts no version uses.

An uploaded object is a blob no version references until a commit claims it; ``hub gc`` removes it after
``--min-age`` (1 h), as it does blobs uploaded over the native API.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from hub.errors import InvalidArgumentError, PermissionDeniedError
from hub.server.context import ServerContext, context, json_body
from hub.server.hf.commits import hf_errors
from hub.server.hf.repos import hf_principal, model_name
from hub.server.uploads import check_digest, into_store
from hub.settings import hf_multipart_bytes
from hub.storage.base import read_chunks

__all__ = ["router", "make_grant", "check_grant", "GRANT_S", "LFS_JSON"]

router = APIRouter(tags=["huggingface"])
GRANT_S = 3600  # how long an upload grant is good for (checked when each request arrives)
LFS_JSON = "application/vnd.git-lfs+json"
_LFS = "/{repo_id:path}.git/info/lfs"


def _sign(key: bytes, repo_id: str, oid: str, size: int, chunk: int, expiry: int) -> str:
    return hmac.new(key, f"hf-lfs-upload\n{repo_id}\n{oid}\n{size}\n{chunk}\n{expiry}".encode(), hashlib.sha256).hexdigest()


def make_grant(key: bytes, token_id: str, repo_id: str, oid: str, size: int, chunk: int, *, now: float | None = None) -> str:
    """The grant that lets a request without a token upload object ``oid`` of ``size`` bytes to ``repo_id``.

    Args:
        key: the token's signing key (:meth:`hub.access.Access.signing_key`).
        token_id: the token's id (public: it names the key, it is no secret).
        repo_id, oid, size: what may be uploaded, and where.
        chunk: the part size of a multipart upload; 0 for one whole body.
        now: the time (default: now); the grant expires :data:`GRANT_S` seconds later.

    Returns:
        ``<token id>.<expiry, unix seconds>.<chunk>.<hex HMAC-SHA256>``.
    """
    expiry = int(now if now is not None else time.time()) + GRANT_S
    return f"{token_id}.{expiry}.{chunk}.{_sign(key, repo_id, oid, size, chunk, expiry)}"


def check_grant(server: ServerContext, grant: str | None, repo_id: str, oid: str, size: int) -> int:
    """Check the grant an upload request carries (see :func:`make_grant`).

    Returns:
        Its part size (0: one whole body).

    Raises:
        PermissionDeniedError: no grant, a malformed or forged one, one for another object or repo, one
            that expired, or one whose token was revoked or expired.
    """
    again = "ask the LFS batch API for a new one (run the upload again)"
    fields = (grant or "").split(".")
    if len(fields) != 4 or not (fields[1].isdigit() and fields[2].isdigit()) or len(fields[1]) > 12 or len(fields[2]) > 15:
        raise PermissionDeniedError(f"this upload URL has no valid grant (?grant=...); {again}")
    token_id, expiry, chunk, signature = fields[0], int(fields[1]), int(fields[2]), fields[3]
    if expiry < time.time():
        raise PermissionDeniedError(f"this upload URL's grant expired at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expiry))}; {again}")
    key = server.access.signing_key(token_id)
    if key is None or not hmac.compare_digest(signature, _sign(key, repo_id, oid, size, chunk, expiry)):
        raise PermissionDeniedError(f"this upload URL's grant is not valid for {oid} ({size} bytes) in {repo_id}, or its "
                                    f"token was revoked or expired; {again}")
    return chunk


def _object(item: Any) -> tuple[str, int]:
    if not isinstance(item, dict) or not isinstance(item.get("oid"), str):
        raise InvalidArgumentError(f'each LFS object must be {{"oid": "<sha256>", "size": <bytes>}}, got {str(item)[:200]}')
    oid, size = check_digest(item["oid"]), item.get("size")
    if type(size) is not int or size < 0:
        raise InvalidArgumentError(f"LFS object {oid}: size must be a whole number of bytes, got {size!r}")
    return oid, size


def _objects(body: Any) -> tuple[list[tuple[str, int]], bool]:
    """The batch request's ``(oid, size)`` objects, and whether the client takes multipart transfers.

    Raises:
        InvalidArgumentError: a body that is not an LFS upload batch, a malformed oid or size.
    """
    if not isinstance(body, dict) or not isinstance(body.get("objects"), list):
        raise InvalidArgumentError('an LFS batch request is {"operation": "upload", "objects": [{"oid", "size"}, ...]}')
    if body.get("operation", "upload") != "upload":
        raise InvalidArgumentError(f"LFS batch operation {body.get('operation')!r} is not served here: only upload "
                                   "(downloads go through /{repo_id}/resolve/{revision}/{path})")
    if body.get("hash_algo", "sha256") != "sha256":
        raise InvalidArgumentError(f"LFS hash_algo {body.get('hash_algo')!r} is not served: objects are named by sha256")
    transfers = body.get("transfers") or ["basic"]
    return [_object(item) for item in body["objects"]], isinstance(transfers, list) and "multipart" in transfers


def _base(request: Request, repo_id: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/{repo_id}.git/info/lfs/objects"


@router.post(f"{_LFS}/objects/batch", responses={200: {"description": "the LFS batch answer: objects with upload actions, "
                                                                      "none for those the store holds"}})
def batch(repo_id: str, request: Request, body: Any = Depends(json_body), server: ServerContext = Depends(context),
          who: Any = Depends(hf_principal)) -> JSONResponse:
    """Which objects to upload, and where (URLs carrying a grant): nothing for those the store holds."""
    with hf_errors():
        return _batch(model_name(repo_id), request, body, server, who)


def _batch(repo_id: str, request: Request, body: Any, server: ServerContext, who: Any) -> JSONResponse:
    objects, multipart = _objects(body)
    server.access.require_write(who, repo_id)  # after the checks: a bad request claims no namespace
    key = server.access.signing_key(who.token_id)
    if key is None:
        raise PermissionDeniedError("this token can't sign upload grants (it was revoked or expired just now)")
    threshold, base, now = hf_multipart_bytes(), _base(request, repo_id), time.time()
    answered, chose_multipart = [], False
    for oid, size in objects:
        if server.hub.blobs.size(oid) == size:
            answered.append({"oid": oid, "size": size})  # held: no actions, the client uploads nothing
            continue
        chunk = threshold if multipart and size >= threshold else 0
        grant = make_grant(key, who.token_id, repo_id, oid, size, chunk, now=now)
        upload: dict[str, Any] = {"href": f"{base}/{oid}/{size}?grant={grant}", "expires_in": GRANT_S}
        if chunk:
            chose_multipart = True
            upload["header"] = {"chunk_size": str(chunk), **{str(n): f"{base}/{oid}/{size}/part/{n}?grant={grant}"
                                                               for n in range(1, math.ceil(size / chunk) + 1)}}
        answered.append({"oid": oid, "size": size, "authenticated": True, "actions": {
            "upload": upload, "verify": {"href": f"{base}/{oid}/{size}/verify?grant={grant}", "expires_in": GRANT_S}}})
    return JSONResponse({"transfer": "multipart" if chose_multipart else "basic", "objects": answered, "hash_algo": "sha256"},
                        media_type=LFS_JSON)


def _hf(route: Any) -> Any:
    """``route`` (an async route) with its hub errors answered as the Hugging Face Hub words them."""
    @functools.wraps(route)
    async def answer(*args: Any, **kwargs: Any) -> Any:
        with hf_errors():
            return await route(*args, **kwargs)
    return answer


def _capped(chunks: Iterable[bytes], size: int, what: str) -> Iterator[bytes]:
    """``chunks``, refused once they pass ``size`` bytes (nothing is stored then)."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > size:
            raise InvalidArgumentError(f"{what} runs past its {size} bytes; nothing was stored, upload it again")
        yield chunk


def _exactly(size: int, what: str) -> Any:
    """A check for :meth:`BlobStore.write`: the stored bytes are ``size`` long."""
    def check(stored: Any) -> None:
        if os.path.getsize(stored) != size:
            raise InvalidArgumentError(f"{what} is {os.path.getsize(stored)} bytes, not {size}; nothing was stored, upload it again")
    return check


async def _store_body(request: Request, server: ServerContext, size: int, what: str, expected: str | None) -> tuple[str, int] | None:
    """The request body stored as a blob (checked against ``expected`` and ``size``), or None when the client went away."""
    store = server.hub.blobs
    try:
        stored, _ = await into_store(request, lambda chunks: store.write(_capped(chunks, size, what), expected_sha256=expected,
                                                                         check=_exactly(size, what)), whole=True)
    except ClientDisconnect:
        return None
    return stored


@router.put(f"{_LFS}/objects/{{oid}}/{{size}}", responses={200: {"description": "stored"}})
@_hf
async def put_object(repo_id: str, oid: str, size: int, request: Request, grant: str | None = None,
                     server: ServerContext = Depends(context)) -> Response:
    """The basic transfer: the whole object as the body, stored when it hashes to ``oid`` (else 400, nothing stored)."""
    check_digest(oid)
    if await run_in_threadpool(check_grant, server, grant, repo_id, oid, size):
        raise InvalidArgumentError(f"this grant is for a multipart upload of {oid}: PUT its parts, then POST the completion")
    if await run_in_threadpool(server.hub.blobs.size, oid) == size:
        return Response(status_code=200)
    if await _store_body(request, server, size, f"object {oid}", oid) is None:
        return Response(status_code=400)  # no one reads it; nothing was kept
    return Response(status_code=200)


@router.put(f"{_LFS}/objects/{{oid}}/{{size}}/part/{{number}}", responses={200: {"description": "stored; ETag: the part's sha256"}})
@_hf
async def put_part(repo_id: str, oid: str, size: int, number: int, request: Request, grant: str | None = None,
                   server: ServerContext = Depends(context)) -> Response:
    """One part of a multipart transfer (any order, in parallel): stored as a blob, its ETag its sha256."""
    check_digest(oid)
    chunk = await run_in_threadpool(check_grant, server, grant, repo_id, oid, size)
    parts = math.ceil(size / chunk) if chunk else 0
    if not 1 <= number <= parts:
        raise InvalidArgumentError(f"object {oid} has parts 1 to {parts} in this upload, not {number}")
    length = min(chunk, size - (number - 1) * chunk)
    stored = await _store_body(request, server, length, f"part {number} of object {oid}", None)
    if stored is None:
        return Response(status_code=400)
    return Response(status_code=200, headers={"ETag": f'"{stored[0]}"'})


def _part_digests(body: Any, oid: str, size: int, chunk: int) -> list[tuple[str, int]]:
    """The completion's parts as ``(sha256, size)``, in order.

    Raises:
        InvalidArgumentError: not ``{"oid", "parts": [{"partNumber", "etag"}]}`` for every part of this object.
    """
    parts = body.get("parts") if isinstance(body, dict) else None
    if not isinstance(parts, list) or body.get("oid") != oid or not all(isinstance(p, dict) for p in parts):
        raise InvalidArgumentError(f'the completion must be {{"oid": "{oid}", "parts": [{{"partNumber": n, "etag": "..."}}, ...]}}')
    count = math.ceil(size / chunk)
    numbers = sorted(p.get("partNumber") for p in parts if type(p.get("partNumber")) is int)
    if numbers != list(range(1, count + 1)):
        raise InvalidArgumentError(f"the completion of object {oid} must list parts 1 to {count}, each once")
    ordered = sorted(parts, key=lambda p: p["partNumber"])
    return [(check_digest(str(p.get("etag", "")).strip('"')), min(chunk, size - i * chunk)) for i, p in enumerate(ordered)]


def _assemble(server: ServerContext, oid: str, size: int, parts: list[tuple[str, int]]) -> None:
    store = server.hub.blobs
    missing = [n for n, (digest, length) in enumerate(parts, 1) if store.size(digest) != length]
    if missing:
        raise InvalidArgumentError(f"part(s) {missing} of object {oid} are not stored (or not whole); upload them again")

    def joined() -> Iterator[bytes]:
        for digest, _ in parts:
            with store.open(digest) as stream:
                yield from read_chunks(stream)

    store.write(_capped(joined(), size, f"object {oid}"), expected_sha256=oid, check=_exactly(size, f"object {oid}"))


@router.post(f"{_LFS}/objects/{{oid}}/{{size}}", responses={200: {"description": "the parts joined into the object"}})
@_hf
async def complete(repo_id: str, oid: str, size: int, grant: str | None = None, body: Any = Depends(json_body),
                   server: ServerContext = Depends(context)) -> JSONResponse:
    """The multipart completion ``{"oid", "parts": [{"partNumber", "etag"}]}``: the parts joined in order into
    the object, checked against its sha256 (400, nothing stored, when they don't hash to it)."""
    check_digest(oid)
    chunk = await run_in_threadpool(check_grant, server, grant, repo_id, oid, size)
    if not chunk:
        raise InvalidArgumentError(f"this grant is for one PUT of object {oid}, not a multipart upload")
    parts = _part_digests(body, oid, size, chunk)
    if await run_in_threadpool(server.hub.blobs.size, oid) != size:
        await run_in_threadpool(_assemble, server, oid, size, parts)
    leftover = {digest for digest, _ in parts} - {oid}
    return JSONResponse({"oid": oid, "size": size}, media_type=LFS_JSON,
                        background=BackgroundTask(server.hub.publisher.discard_unreferenced, leftover))


@router.post(f"{_LFS}/objects/{{oid}}/{{size}}/verify", responses={200: {"description": "stored"}, 404: {"description": "not stored"}})
@_hf
async def verify(repo_id: str, oid: str, size: int, grant: str | None = None, body: Any = Depends(json_body),
                 server: ServerContext = Depends(context)) -> JSONResponse:
    """``{"oid", "size"}``: 200 when the store holds that object at that size, 404 otherwise."""
    return await run_in_threadpool(_verify, repo_id, oid, size, grant, body, server)


def _verify(repo_id: str, oid: str, size: int, grant: str | None, body: Any, server: ServerContext) -> JSONResponse:
    check_digest(oid)
    check_grant(server, grant, repo_id, oid, size)
    if _object(body) != (oid, size):
        raise InvalidArgumentError(f"this verify URL is for object {oid} of {size} bytes, not {str(body)[:200]}")
    if server.hub.blobs.size(oid) != size:
        return JSONResponse({"message": f"object {oid} ({size} bytes) is not stored; upload it again"}, status_code=404,
                            media_type=LFS_JSON)
    return JSONResponse({"oid": oid, "size": size}, media_type=LFS_JSON)
