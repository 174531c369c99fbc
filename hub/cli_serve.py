"""The ``hub`` CLI's serve commands (to be written)."""

from __future__ import annotations

from typing import Any

__all__ = ["add_commands"]


def add_commands(commands: Any, command: Any) -> None:
    """Add this module's subcommands: ``commands`` is the subparsers object, ``command`` is
    ``functools.partial(hub.cli.add_command, commands)``."""
