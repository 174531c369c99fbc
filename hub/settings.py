"""Settings read from the environment, in one place.

``HUB_HOME``          where blobs, refs and the default SQLite registry live
                      (default ``~/.cache/modelhub``).
``HUB_REGISTRY_URL``  SQLAlchemy URL of the registry database
                      (default ``sqlite:///$HUB_HOME/registry.db``).
``HUB_USER``          the name recorded in alias history (default: the login name).
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

DEFAULT_HOME = Path("~/.cache/modelhub")
# How old a file must be before ``gc`` removes it and ``verify`` lists it as a leftover (by default):
# younger ones may belong to a publish or an alias move still in flight.
GC_MIN_AGE_S = 3600.0


def hub_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The hub's home folder: ``home`` if given, else ``$HUB_HOME``, else ``~/.cache/modelhub``."""
    value = home if home is not None else os.environ.get("HUB_HOME") or DEFAULT_HOME
    return Path(value).expanduser().absolute()


def registry_url(home: Path, url: str | None = None) -> str:
    """The registry URL: ``url`` if given, else ``$HUB_REGISTRY_URL``, else SQLite in ``home``."""
    return url or os.environ.get("HUB_REGISTRY_URL") or f"sqlite:///{home / 'registry.db'}"


def current_user() -> str:
    """Who is acting, for alias history: ``$HUB_USER`` or the login name."""
    try:
        return os.environ.get("HUB_USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"
