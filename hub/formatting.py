"""How sizes read for people, the same in the command line and the web UI."""

from __future__ import annotations

__all__ = ["human_size"]


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
