"""The ``hub`` CLI's ``serve`` command: the hub over HTTP (:mod:`hub.server`)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def cmd_serve(args: argparse.Namespace) -> int:
    from hub.server import serve

    serve(args.host, args.port, workers=args.workers, log_level=args.log_level)
    return 0


def add_commands(commands: Any, command: Any) -> None:
    """Add this module's subcommands: ``commands`` is the subparsers object, ``command`` is
    ``functools.partial(hub.cli.add_command, commands)``."""
    serve = command("serve", cmd_serve, "serve this hub (HUB_HOME, HUB_REGISTRY_URL) over HTTP: the JSON API "
                    "under /api/v1 that HUB_ENDPOINT clients use (docs/SERVER.md)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port, printed)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                       help="uvicorn's log level (default info: one line per request, never a header)")
