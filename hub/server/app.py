"""The application: :func:`create_app` builds the FastAPI app over a :class:`~hub.api.Hub`, with its
routes (:mod:`hub.server.models`, :mod:`hub.server.blobs`, :mod:`hub.server.uploads`), error
translation (:mod:`hub.server.errors`) and the routes plugins add (entry point group ``modelhub.server``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI

from hub.errors import InvalidArgumentError
from hub.server import blobs, exports, hf, models, session, uploads
from hub.server.context import ServerContext, context, json_body, principal, require_write_scope
from hub.server.errors import install_handlers

if TYPE_CHECKING:
    from hub.api import Hub

__all__ = ["create_app", "ServerContext", "context", "principal", "json_body", "require_write_scope", "PLUGIN_GROUP", "API_PREFIX"]

PLUGIN_GROUP = "modelhub.server"
API_PREFIX = "/api/v1"
logger = logging.getLogger("hub.server")


def _load_plugins(app: FastAPI, server: ServerContext) -> None:
    """Call ``register(app, context)`` of each entry point of group ``modelhub.server`` (the
    fine-tuning package's job routes). One that can't be imported is logged and skipped."""
    from hub.architectures import load_entry_points

    def skipped(name: str, value: str, error: ImportError) -> None:
        logger.warning("server plugin %s = %s skipped: %s", name, value, error)

    plugins = load_entry_points(PLUGIN_GROUP, skip_broken=skipped)
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

    app.include_router(blobs.router, prefix=API_PREFIX)  # before models': its GET /models/{name:path} takes any path under it
    app.include_router(exports.router, prefix=API_PREFIX)  # before models': its GET /models/{name:path} takes any path
    app.include_router(models.router, prefix=API_PREFIX)
    app.include_router(uploads.router, prefix=API_PREFIX)
    app.include_router(session.router, prefix=API_PREFIX)
    _load_plugins(app, server)
    hf.register(app, server)  # last: its /{namespace}/{model}/resolve/... routes take any path
    return app
