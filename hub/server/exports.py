"""Routes for a version's exports (``/api/v1/models/{name}/-/versions/{n}/exports``): list them, read one,
download its files, and keep one a client made (``hub export`` against a server, :mod:`hub.exports`).

Reads answer only what the caller may read (a private model is a 404 worded as a missing one);
keeping an export needs write permission on the model's namespace, its files uploaded first
(``POST .../-/uploads``, ``PATCH /api/v1/uploads/{sha256}``), and records the token's user as its author.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from hub.access import ANONYMOUS
from hub.errors import InvalidArgumentError, ModelNotFoundError
from hub.exports import FORMATS, record_of, with_digest
from hub.reference import validate_name, validate_version
from hub.server.blobs import blob_response
from hub.server.context import ServerContext, context, json_body, principal
from hub.settings import acting_as

__all__ = ["router"]

router = APIRouter(tags=["exports"])
_RECORD = {"type": "object", "additionalProperties": True, "description": "an ExportRecord record (hub.entities)"}


def _version(server: ServerContext, who: Any, name: str, n: str) -> Any:
    """``name:n`` if ``who`` may read it.

    Raises:
        InvalidReferenceError: a malformed name or version.
        ModelNotFoundError: ``who`` may not read the model (worded as a missing one), or no such version.
    """
    validate_name(name)
    server.access.require_read(who, name)
    try:
        return server.hub.info(f"{name}:{validate_version(n)}")
    except ModelNotFoundError as error:
        if type(error) is ModelNotFoundError:
            raise server.access.not_found(who, name) from None
        raise


def _format(format: str) -> str:
    if format not in FORMATS:
        raise InvalidArgumentError(f"export format {format!r} is unknown; use one of {', '.join(FORMATS)}")
    return format


@router.get("/models/{name:path}/-/versions/{n}/exports", responses={200: {"content": {"application/json": {"schema": {"type": "array", "items": _RECORD}}}}})
def list_exports(name: str, n: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """The exports of ``name:n``, by format."""
    version = _version(server, who, name, n)
    return JSONResponse([r.to_dict() for r in server.hub.list_exports(version.ref)])


@router.get("/models/{name:path}/-/versions/{n}/exports/{format}", responses={200: {"content": {"application/json": {"schema": _RECORD}}}})
def get_export(name: str, n: str, format: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """The export of ``name:n`` in ``format`` (404 when there is none)."""
    version = _version(server, who, name, n)
    return JSONResponse(server.hub.export_record(version.ref, _format(format)).to_dict())


@router.get("/models/{name:path}/-/versions/{n}/exports/{format}/files/{path:path}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "one range"}})
@router.head("/models/{name:path}/-/versions/{n}/exports/{format}/files/{path:path}", response_class=Response)
async def get_export_file(name: str, n: str, format: str, path: str, request: Request, server: ServerContext = Depends(context),
                          who: Any = Depends(principal)) -> Response:
    """A file of the export (``model.onnx``, an external-data file): its blob's bytes, as ``GET /blobs/{sha256}`` sends them."""

    def find() -> tuple[str, bool]:
        version = _version(server, who, name, n)
        record = server.hub.export_record(version.ref, _format(format))
        entry = next((f for f in record.files if f.path == path), None)
        if entry is None:
            raise ModelNotFoundError(f"the {format} export of {version.ref} has no file {path!r}; it has "
                                     f"{', '.join(f.path for f in record.files)}")
        return entry.sha256, server.access.can_read(ANONYMOUS, name)

    sha256, public = await run_in_threadpool(find)
    return blob_response(request, server.hub.blobs, sha256, public=public)


@router.post("/models/{name:path}/-/versions/{n}/exports", status_code=201,
             responses={201: {"content": {"application/json": {"schema": _RECORD}}}})
def commit_export(name: str, n: str, body: Any = Depends(json_body), server: ServerContext = Depends(context),
                  who: Any = Depends(principal)) -> JSONResponse:
    """Keep an export a client made (an ExportRecord whose files it uploaded): the token's user becomes its author."""
    validate_name(name)
    number = validate_version(n)
    if not isinstance(body, dict):
        raise InvalidArgumentError("the body must be an ExportRecord object (ExportRecord.to_dict())")
    record = record_of(body)
    server.access.require_write(who, name)  # after the checks: a bad request claims no namespace
    with acting_as(who.user):
        version = _version(server, who, name, str(number))
        record = with_digest(replace(record, created_by=who.user))
        kept = server.hub.exports.commit_record(version, record)
    return JSONResponse(kept.to_dict(), status_code=201)
