"""The Hugging Face Hub's HTTP protocol in ``hub serve``: ``HF_ENDPOINT=<server>`` makes huggingface_hub,
transformers and sentence-transformers download from (:mod:`hub.server.hf.downloads`) and upload to this
hub, with its versions, aliases and permissions behind them (docs/HF.md).

Its routes are root-level (``/{namespace}/{model}/resolve/...``, ``/api/models/...``): :func:`register`
is called after every ``/api/v1`` router and plugin, so they shadow nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.server.context import ServerContext

__all__ = ["register"]


def register(app: Any, context: ServerContext) -> None:
    """Add the Hugging Face routes and their error handler to ``app``.

    Args:
        app: the FastAPI app of :func:`hub.server.app.create_app`.
        context: its :class:`~hub.server.context.ServerContext`.
    """
    from hub.server.hf import downloads, uploads
    from hub.server.hf.repos import install_handler

    install_handler(app)
    app.include_router(downloads.router)
    app.include_router(uploads.router)
