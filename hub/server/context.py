"""What every route depends on: the :class:`ServerContext` (the hub and its access policy), who is
asking (:func:`principal`, from the ``Authorization`` header, with bad tokens slowed down), and a JSON
request body of at most 16 MiB (:func:`json_body`). FastAPI dependencies: ``Depends(principal)``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import Request

from hub.access import Throttle
from hub.errors import AuthenticationError, InvalidArgumentError, PermissionDeniedError
from hub.server.errors import MAX_JSON_BYTES

if TYPE_CHECKING:
    from hub.access import Principal
    from hub.api import Hub

__all__ = ["ServerContext", "context", "principal", "json_body", "require_write_scope"]


class ServerContext:
    """What routes share: the hub and its access policy.

    Args:
        hub: the :class:`~hub.api.Hub` served.

    Attributes:
        hub: that hub.
        access: its :class:`hub.access.Access` (tokens, namespaces, who may read and write what).
        throttle: what slows down repeated bad tokens from one client address (per process).
    """

    def __init__(self, hub: Hub) -> None:
        from hub.access import Access

        self.hub = hub
        self.access = Access(hub.db)
        self.throttle = Throttle()

    def principal(self, request: Request) -> Principal:
        """Who sent ``request``: its ``Authorization`` header authenticated (none: anonymous).

        Raises:
            AuthenticationError: a malformed, unknown, expired or revoked token.
        """
        return self.access.authenticate(request.headers.get("authorization"))


def context(request: Request) -> ServerContext:
    """The :class:`ServerContext` of the app serving ``request`` (a FastAPI dependency)."""
    return request.app.state.context


async def principal(request: Request) -> Any:
    """Who sent ``request`` (a FastAPI dependency); a bad token's 401 comes late when the same client
    address sent several bad ones in the last minute (awaited, so no other client waits).

    Raises:
        AuthenticationError: see :meth:`ServerContext.principal`.
    """
    known = getattr(request.state, "principal", None)
    if known is not None:
        return known
    server: ServerContext = request.app.state.context
    try:
        if request.headers.get("authorization"):
            from starlette.concurrency import run_in_threadpool

            found = await run_in_threadpool(server.principal, request)
        else:
            found = server.principal(request)  # anonymous: no database
    except AuthenticationError:
        delay = server.throttle.failed(request.client.host if request.client else "?")
        if delay:
            await asyncio.sleep(delay)
        raise
    request.state.principal = found
    return found


def require_write_scope(who: Principal) -> None:
    """Refuse anonymous callers (401) and read-only tokens (403): for writes not tied to one model (uploads by digest).

    Raises:
        AuthenticationError, PermissionDeniedError.
    """
    if who.user is None:
        raise AuthenticationError("this needs a token with write scope: send `Authorization: Bearer <token>` "
                                  "(create one with `hub token create --user NAME --scope write`)")
    if who.scope not in ("write", "admin"):
        raise PermissionDeniedError(f"this token has {who.scope} scope; uploads need write scope "
                                    "(create one with `hub token create --user NAME --scope write`)")


async def json_body(request: Request) -> Any:
    """The request's JSON body (a FastAPI dependency), read up to :data:`MAX_JSON_BYTES`.

    Raises:
        InvalidArgumentError: more than 16 MiB (answered 413), not JSON, or nested too deep (400).
    """
    from hub.limits import loads

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise _too_large(int(declared))
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BYTES:
            raise _too_large(size)
        parts.append(chunk)
    try:
        return loads(b"".join(parts))
    except (ValueError, RecursionError) as exc:
        raise InvalidArgumentError(f"the request body is not valid JSON ({str(exc)[:200]}); send a JSON object "
                                   "with Content-Type: application/json") from None


def _too_large(size: int) -> InvalidArgumentError:
    error = InvalidArgumentError(f"the request body is {'more than ' if size > MAX_JSON_BYTES else ''}{size:,} bytes; "
                                 f"JSON bodies may be at most {MAX_JSON_BYTES // (1024 * 1024)} MiB")
    error.http_status = 413  # type: ignore[attr-defined]
    return error
