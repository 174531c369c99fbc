"""How sizes, tables and JSON read for people, the same in the command lines and the web UI."""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["human_size", "format_table", "print_json"]


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """``rows`` under ``header`` in left-aligned columns two spaces apart (the CLIs' listings)."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows])


def print_json(value: Any) -> None:
    """Indented for a terminal, compact (and several times faster to encode) for a pipe."""
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(value, indent=indent, separators=None if indent else (",", ":")) + "\n")


def human_size(size: int | float) -> str:
    """``size`` bytes in decimal units: ``512 B``, ``1.5 KB``, ``2.0 GB`` (at most TB).

    Args:
        size: a number of bytes, 0 or more.

    Returns:
        The size, one decimal above bytes.
    """
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
