"""``hub serve``: the hub over HTTP, a JSON API under ``/api/v1`` (see docs/SERVER.md).

    from hub.server import create_app
    app = create_app(hub.Hub("/srv/hub"))      # an ASGI app (FastAPI), for uvicorn or any ASGI server

The server holds no state of its own: every process over one registry and one store serves the
same hub (partial uploads live in the store). FastAPI is imported only when this package's names are.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.server.app import ServerContext, create_app
    from hub.server.running import serve

__all__ = ["create_app", "ServerContext", "serve"]

_LAZY = {"create_app": "hub.server.app", "ServerContext": "hub.server.app", "serve": "hub.server.running"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hub.server' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
