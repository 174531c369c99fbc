"""The application: :func:`create_app` builds the FastAPI app over a :class:`~hub.api.Hub`, with its
routes (:mod:`hub.server.models`, :mod:`hub.server.blobs`, :mod:`hub.server.uploads`), error
translation (:mod:`hub.server.errors`) and the routes plugins add (entry point group ``modelhub.server``).

Routes depend on :func:`context` (the :class:`ServerContext`), :func:`principal` (who is asking,
from the ``Authorization`` header) and :func:`json_body` (a JSON request body, at most 16 MiB).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request

from hub.errors import AuthenticationError, InvalidArgumentError, PermissionDeniedError
from hub.server.errors import MAX_JSON_BYTES, install_handlers

if TYPE_CHECKING:
    from hub.access import Principal
    from hub.api import Hub

__all__ = ["create_app", "ServerContext", "context", "principal", "json_body", "require_write_scope",
           "PLUGIN_GROUP", "API_PREFIX"]

PLUGIN_GROUP = "modelhub.server"
API_PREFIX = "/api/v1"
logger = logging.getLogger("hub.server")


class _Throttle:
    """Slows down repeated bad tokens from one client address: after ``free`` failures within
    ``window`` seconds, each further one waits, doubling from ``first`` up to ``most`` seconds."""

    def __init__(self, free: int = 5, window: float = 60.0, first: float = 0.125, most: float = 2.0) -> None:
        self.free, self.window, self.first, self.most = free, window, first, most
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def failed(self, address: str) -> float:
        """Record a failure from ``address``; return how many seconds its answer should wait."""
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 10_000:  # forget the quiet ones
                self._failures = {a: q for a, q in self._failures.items() if q and q[-1] > now - self.window}
            times = self._failures.setdefault(address, collections.deque())
            while times and times[0] < now - self.window:
                times.popleft()
            times.append(now)
            excess = len(times) - self.free
        return 0.0 if excess <= 0 else min(self.most, self.first * 2 ** (excess - 1))


class ServerContext:
    """What routes share: the hub and its access policy.

    Args:
        hub: the :class:`~hub.api.Hub` served.

    Attributes:
        hub: that hub.
        access: its :class:`hub.access.Access` (tokens, namespaces, who may read and write what).
    """

    def __init__(self, hub: Hub) -> None:
        from hub.access import Access

        self.hub = hub
        self.access = Access(hub.db)
        self.throttle = _Throttle()

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


def _load_plugins(app: FastAPI, server: ServerContext) -> None:
    """Call ``register(app, context)`` of each entry point of group ``modelhub.server`` (the
    fine-tuning package's job routes). One that can't be imported is logged and skipped."""
    from importlib.metadata import entry_points

    from hub.architectures import load_entry_points

    try:
        plugins = load_entry_points(PLUGIN_GROUP)
    except ImportError as exc:  # one broken plugin: load the others one by one
        logger.warning("a %s plugin could not be imported (%s); loading the others", PLUGIN_GROUP, exc)
        plugins = []
        for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda entry: entry.name):
            try:
                plugins.append((entry.name, entry.value, entry.load()))
            except ImportError as error:
                logger.warning("server plugin %s = %s skipped: %s", entry.name, entry.value, error)
    for name, value, register in plugins:
        if not callable(register):
            raise InvalidArgumentError(f"entry point {name} = {value} ({PLUGIN_GROUP}) is not a function register(app, context)")
        register(app, server)


def create_app(hub: Hub | None = None) -> FastAPI:
    """The hub server's ASGI application.

    Args:
        hub: the hub to serve; default the local hub of ``HUB_HOME`` and ``HUB_REGISTRY_URL``
            (``HUB_ENDPOINT`` plays no part: a server serves its own store), whose registry is created
            when it has no tables yet.

    Returns:
        A FastAPI app: the routes of docs/SERVER.md, and those of ``modelhub.server`` plugins.

    Raises:
        SchemaOutdatedError: the registry needs `hub db upgrade`.
    """
    from hub import __version__
    from hub.server import blobs, models, uploads

    if hub is None:
        from hub.api import Hub

        hub = Hub()
        hub.db.ensure_schema()
    app = FastAPI(title="modelhub", version=__version__, openapi_url=f"{API_PREFIX}/openapi.json",
                  docs_url=f"{API_PREFIX}/docs", redoc_url=None,
                  description="A self-hosted hub for pretrained PyTorch models (docs/SERVER.md).")
    server = ServerContext(hub)
    app.state.context = server
    install_handlers(app)

    @app.get("/healthz", tags=["server"])
    def healthz() -> dict[str, str]:
        """The server is up."""
        return {"status": "ok", "version": __version__}

    app.include_router(models.router, prefix=API_PREFIX)
    app.include_router(blobs.router, prefix=API_PREFIX)
    app.include_router(uploads.router, prefix=API_PREFIX)
    _load_plugins(app, server)
    return app
