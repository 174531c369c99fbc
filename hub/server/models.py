"""Routes for models, versions, aliases and lineage (``/api/v1/models``, ``/api/v1/facets``, ``/api/v1/whoami``).

Reads answer only what the caller may read: a private model it can't read is a 404 worded as a
missing one. Writes (aliases, deleting a version) need write permission on the model's namespace
and run as the token's user, whom alias history records.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from hub.catalog import SORTS
from hub.errors import InvalidArgumentError, ModelNotFoundError
from hub.reference import validate_alias, validate_name, validate_version
from hub.server.context import ServerContext, context, json_body, principal
from hub.settings import acting_as

__all__ = ["router"]

router = APIRouter(tags=["models"])
_VERSION = {"type": "object", "additionalProperties": True, "description": "a ModelVersion record (hub.entities)"}
_CHANGE = {"type": "object", "additionalProperties": True, "description": "an AliasChange record (hub.entities)"}


def _json(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status)


@contextmanager
def _reading(server: ServerContext, who: Any, name: str) -> Iterator[None]:
    """Check ``name`` and that ``who`` may read it; inside, a "model not found" names no model ``who`` can't read.

    Raises:
        InvalidReferenceError: a malformed name (``..``, ``/``, uppercase, NUL, too long, ...).
        ModelNotFoundError: ``who`` may not read it (worded as for a model that does not exist), or it is not there.
    """
    validate_name(name)
    server.access.require_read(who, name)
    try:
        yield
    except ModelNotFoundError as error:
        if type(error) is ModelNotFoundError:  # the registry's hint may name any model
            raise server.access.not_found(who, name) from None
        raise


@contextmanager
def _writing(server: ServerContext, who: Any, name: str) -> Iterator[None]:
    """Check ``name`` and that ``who`` may write it; inside, the hub acts as ``who``'s user (alias history
    records it), and a "model not found" names no model ``who`` can't read.

    Raises:
        InvalidReferenceError, AuthenticationError (anonymous), PermissionDeniedError (read scope, another namespace).
    """
    validate_name(name)
    server.access.require_write(who, name)
    with _reading(server, who, name), acting_as(who.user):
        yield


@router.get("/whoami")
def whoami(who: Any = Depends(principal)) -> dict[str, Any]:
    """Who the request's token is: ``{"user", "scope", "namespace"}`` (all null: anonymous)."""
    return {"user": who.user, "scope": who.scope, "namespace": who.namespace}


@router.get("/models", responses={200: {"description": '{"models": [ModelSummary], "total": int}'}})
def list_models(search: str | None = None, task: str | None = None, tag: str | None = None, license: str | None = None,
                sort: str = "name", limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0),
                server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """One page of the models the caller can read, and how many there are in all."""
    if sort not in SORTS:
        raise InvalidArgumentError(f"sort {sort!r} is unknown; use one of {', '.join(SORTS)}")
    readable = server.access.read_filter(who)
    scope = {"readable": readable} if readable is not None else {}
    registry = server.hub.registry
    models = registry.list_models(search, task=task, tag=tag, license=license, sort=sort, limit=limit, offset=offset, **scope)
    total = registry.count_models(search, task=task, tag=tag, license=license, **scope)
    return _json({"models": [m.to_dict() for m in models], "total": total})


@router.get("/facets")
def facets(server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """``{"task": [...], "tag": [...], "license": [...]}`` of the models the caller can read."""
    readable = server.access.read_filter(who)
    return _json(server.hub.registry.model_facets(**({"readable": readable} if readable is not None else {})))


@router.get("/models/{name:path}/-/versions/{n}/children", responses={200: {"content": {"application/json": {"schema": {"type": "array", "items": _VERSION}}}}})
def children(name: str, n: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """The live versions derived from ``name:n`` that the caller can read."""
    with _reading(server, who, name):
        found = server.hub.list_children(f"{name}:{validate_version(n)}")
        return _json([v.to_dict() for v in found if server.access.can_read(who, v.name)])


@router.get("/models/{name:path}/-/versions/{n}/manifest", response_class=Response,
            responses={200: {"content": {"application/json": {}}, "description": "the manifest blob's bytes"}})
def manifest(name: str, n: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> Response:
    """The version's manifest, byte for byte as stored (its sha256 is the version's ``digest``)."""
    with _reading(server, who, name):
        version = server.hub.info(f"{name}:{validate_version(n)}")
        return Response(server.hub.blobs.read_verified(version.digest), media_type="application/json",
                        headers={"ETag": f'"{version.digest}"'})


@router.get("/models/{name:path}/-/versions/{n}", responses={200: {"content": {"application/json": {"schema": _VERSION}}}})
def get_version(name: str, n: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """Version ``n`` of ``name``."""
    with _reading(server, who, name):
        return _json(server.hub.info(f"{name}:{validate_version(n)}").to_dict())


@router.delete("/models/{name:path}/-/versions/{n}", responses={200: {"description": '{"changes": [AliasChange]}'}})
def delete_version(name: str, n: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """Delete version ``n`` (its number is never reused); the aliases on it are removed: ``{"changes": [...]}``."""
    number = validate_version(n)
    hub = server.hub
    with _writing(server, who, name):
        version = hub.delete_version(f"{name}:{number}")
        changes = []
        for alias in version.aliases:
            history = hub.alias_history(name, alias)
            if history and history[-1].from_version == number and history[-1].to_version is None:
                changes.append(history[-1].to_dict())
    return _json({"changes": changes})


@router.get("/models/{name:path}/-/versions", responses={200: {"content": {"application/json": {"schema": {"type": "array", "items": _VERSION}}}}})
def list_versions(name: str, deleted: bool = False, server: ServerContext = Depends(context),
                  who: Any = Depends(principal)) -> JSONResponse:
    """Every live version of ``name``, oldest first."""
    if deleted:
        raise InvalidArgumentError("deleted versions are not listed over HTTP; ask for deleted=false (the default)")
    with _reading(server, who, name):
        return _json([v.to_dict() for v in server.hub.list_versions(name)])


@router.get("/models/{name:path}/-/aliases/{alias}/history", responses={200: {"content": {"application/json": {"schema": {"type": "array", "items": _CHANGE}}}}})
def alias_history(name: str, alias: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """Every move of ``alias`` (who, when, from, to), oldest first."""
    with _reading(server, who, name):
        return _json([c.to_dict() for c in server.hub.alias_history(name, alias)])


@router.get("/models/{name:path}/-/aliases/{alias}", responses={200: {"content": {"application/json": {"schema": _VERSION}}}})
def get_alias(name: str, alias: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """The version ``name@alias`` resolves to."""
    with _reading(server, who, name):
        return _json(server.hub.info(f"{name}@{validate_alias(alias, allow_latest=True)}").to_dict())


_ALIAS_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["version"], "properties": {"version": {"type": "integer", "minimum": 1}}}}}}}


@router.put("/models/{name:path}/-/aliases/{alias}", openapi_extra=_ALIAS_BODY,
            responses={200: {"description": '{"change": AliasChange | null}'}})
def set_alias(name: str, alias: str, body: Any = Depends(json_body), server: ServerContext = Depends(context),
              who: Any = Depends(principal)) -> JSONResponse:
    """Point ``alias`` at ``{"version": n}``: ``{"change": ...}`` (null: it pointed there already)."""
    validate_name(name)
    validate_alias(alias)
    if not isinstance(body, dict) or set(body) != {"version"}:  # checked first: a write (a namespace claimed) only for a sound request
        raise InvalidArgumentError('the body must be {"version": N}')
    version = validate_version(body["version"])
    with _writing(server, who, name):
        change = server.hub.set_alias(name, alias, version)
    return _json({"change": change.to_dict() if change is not None else None})


@router.delete("/models/{name:path}/-/aliases/{alias}", responses={200: {"description": '{"change": AliasChange}'}})
def delete_alias(name: str, alias: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """Remove ``alias`` from ``name``: ``{"change": ...}``."""
    validate_name(name)
    validate_alias(alias)
    with _writing(server, who, name):
        change = server.hub.delete_alias(name, alias)
    return _json({"change": change.to_dict() if change is not None else None})


@router.get("/models/{name:path}/-/latest", responses={200: {"content": {"application/json": {"schema": _VERSION}}}})
def latest(name: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """The version ``name`` resolves to (its highest live one)."""
    with _reading(server, who, name):
        return _json(server.hub.info(name).to_dict())


@router.get("/models/{name:path}", responses={200: {"description": "a ModelSummary record (hub.entities)"}})
def get_model(name: str, server: ServerContext = Depends(context), who: Any = Depends(principal)) -> JSONResponse:
    """The model ``name`` as listed: its latest live version and what describes it."""
    with _reading(server, who, name):
        found = [m for m in server.hub.registry.list_models(name, limit=None) if m.name == name]
        if not found:
            server.hub.info(name)  # raises ModelNotFoundError, worded as everywhere
            raise ModelNotFoundError(f"model {name!r} has no live version")
        return _json(found[0].to_dict())
