"""Signing in with a user name and password (``POST /api/v1/login``): the web UI's way to a token.

The answer is a short-lived API token (:data:`SESSION_EXPIRY`) of the user, with the scope
:meth:`hub.access.Access.login` gives (``admin`` for an admin user, else ``write``); the client then
sends it as ``Authorization: Bearer`` like any other token, and ``hub token revoke`` ends it. A wrong
user name or password is a 401, slowed down like a bad token when one client address sends several.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from hub.errors import AuthenticationError, InvalidArgumentError
from hub.server.context import ServerContext, context, json_body

__all__ = ["router", "SESSION_EXPIRY", "MAX_FIELD_CHARS"]

SESSION_EXPIRY = "12h"  # how long a sign-in's token lives
MAX_FIELD_CHARS = 1024  # a longer user name or password is refused before it is hashed

router = APIRouter(tags=["session"])


def _field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"the body's {key!r} must be a non-empty string: send "
                                   '{"user": "NAME", "password": "..."}')
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidArgumentError(f"the body's {key!r} is longer than {MAX_FIELD_CHARS} characters")
    return value


@router.post("/login", responses={200: {"description": '{"token", "user", "scope", "expires_at"}'},
                                  401: {"description": "a wrong user name or password"}})
async def login(request: Request, server: ServerContext = Depends(context), body: Any = Depends(json_body)) -> JSONResponse:
    """Sign in with ``{"user", "password"}``: a new API token of that user, living 12 hours.

    Raises:
        InvalidArgumentError: the body is not an object of two non-empty strings (400).
        AuthenticationError: unknown user, no password set, or a wrong one (401, one message for all).
    """
    from starlette.concurrency import run_in_threadpool

    if not isinstance(body, dict):
        raise InvalidArgumentError('the body must be a JSON object: {"user": "NAME", "password": "..."}')
    user, password = _field(body, "user"), _field(body, "password")
    try:
        who = await run_in_threadpool(server.access.login, user, password)
    except AuthenticationError:
        delay = server.throttle.failed(request.client.host if request.client else "?")
        if delay:
            await asyncio.sleep(delay)
        raise
    assert who.user is not None and who.scope is not None
    token, info = await run_in_threadpool(server.access.create_token, who.user, who.scope, expires=SESSION_EXPIRY)
    return JSONResponse({"token": token, "user": info.user, "scope": info.scope,
                         "expires_at": info.expires_at.isoformat() if info.expires_at else None})
