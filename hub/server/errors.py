"""How the server words a failure: each :class:`hub.errors.HubError` as its status code and JSON body.

Every error response is ``{"error": {"type": <class name>, "message": ..., ...extra}}`` (the
contract in docs/SERVER.md): a client maps ``type`` back to the ``hub.errors`` class of that name.
"""

from __future__ import annotations

import logging
from typing import Any

from hub import errors as e

__all__ = ["status_of", "error_body", "error_response", "install_handlers", "MAX_JSON_BYTES"]

MAX_JSON_BYTES = 16 * 1024 * 1024  # a JSON request body larger than this gets 413

logger = logging.getLogger("hub.server")

# Checked in order: the first class an error is an instance of gives its status.
_STATUS: tuple[tuple[type[e.HubError], int], ...] = (
    (e.AuthenticationError, 401),
    (e.PermissionDeniedError, 403),
    (e.ModelNotFoundError, 404),  # also VersionNotFoundError, AliasNotFoundError
    (e.JobNotFoundError, 404),
    (e.VersionExistsError, 409),
    (e.JobStateError, 409),
    (e.MissingBlobsError, 409),
    (e.InvalidReferenceError, 400),
    (e.InvalidArgumentError, 400),
    (e.InvalidSourceError, 400),
    (e.UnsafeFormatError, 400),
    (e.IntegrityError, 400),
    (e.ConfigError, 400),
    (e.DataError, 400),
    (e.NoSpaceError, 507),
)


def status_of(error: e.HubError) -> int:
    """The HTTP status of ``error`` (500 for a HubError with none of its own)."""
    return next((status for cls, status in _STATUS if isinstance(error, cls)), 500)


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"type": kind, "message": message, **extra}}


def error_response(error: e.HubError, *, status: int | None = None, headers: dict[str, str] | None = None) -> Any:
    """The response for ``error``: its status (or ``status``), its type and message, ``digests`` for a
    :class:`MissingBlobsError`, ``settings`` where it names some, and ``WWW-Authenticate`` on a 401."""
    from fastapi.responses import JSONResponse

    extra: dict[str, Any] = {}
    if isinstance(error, e.MissingBlobsError):
        extra["digests"] = list(error.digests)
    if error.settings:
        extra["settings"] = dict(error.settings)
    code = status or getattr(error, "http_status", None) or status_of(error)
    all_headers = dict(headers or {})
    if code == 401:
        all_headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(type(error).__name__, str(error), **extra), status_code=code, headers=all_headers)


def install_handlers(app: Any) -> None:
    """Turn what a route raises into the contract's error responses: a HubError by its class, a request
    FastAPI could not validate as InvalidArgumentError (400), an unknown route as NotFound (404), anything
    else as InternalError (500, logged here with its traceback; no request header is ever logged)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    async def hub_error(request: Any, exc: e.HubError) -> Any:
        if getattr(exc, "http_status", None) is None and status_of(exc) >= 500:
            logger.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(exc)

    async def invalid_request(request: Any, exc: RequestValidationError) -> Any:
        problems = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg', '')}" for d in exc.errors()[:5])
        return JSONResponse(error_body("InvalidArgumentError", f"the request is not valid ({problems}); "
                                       "see /api/v1/openapi.json for what this route takes"), status_code=400)

    async def http_error(request: Any, exc: HTTPException) -> Any:
        if exc.status_code == 404:
            body = error_body("NotFound", f"no route {request.url.path}; the API is under /api/v1 "
                                          "(see /api/v1/openapi.json)")
        elif exc.status_code == 405:
            body = error_body("MethodNotAllowed", f"{request.method} is not allowed on {request.url.path}")
        else:
            body = error_body("HTTPError", str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def unexpected(request: Any, exc: Exception) -> Any:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("InternalError", f"the server failed on {request.method} {request.url.path} "
                                                        f"({type(exc).__name__}); its log has the details"), status_code=500)

    app.add_exception_handler(e.HubError, hub_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
