"""The ``hub`` package's settings, read from the environment in this module alone.

``HUB_HOME``          where blobs, refs and the default SQLite registry live
                      (default ``~/.cache/modelhub``).
``HUB_REGISTRY_URL``  SQLAlchemy URL of the registry database
                      (default ``sqlite:///$HUB_HOME/registry.db``).
``HUB_USER``          the name recorded in alias history (default: the login name).
                      A server acts for each request's token (:func:`acting_as`), whatever this says.
``HUB_ENDPOINT``      the URL of a hub server (``hub serve``): when set, the API and CLIs work
                      against it, with ``HUB_HOME`` as their local cache.
``HUB_TOKEN``         the API token sent to that server (``hub token create``).
``HUB_OFFLINE``       ``1``: with ``HUB_ENDPOINT`` set, read only the local cache (pinned
                      versions and last-seen aliases), never the server.
``HUB_DEFAULT_VISIBILITY``  ``private`` (default) or ``public``: what a namespace a server
                      creates on its first publish lets anonymous clients read.
``HUB_HF_MULTIPART_MB``  a server's Hugging Face LFS uploads of at least this many MiB go in
                      parts of this size (multipart transfer; default 64).

The typed readers (:func:`as_float`, :func:`as_int`) serve the other packages' settings modules
too (``finetune.settings``, ``webui.settings``): a bad value is an error that names the variable,
the value and what to set, raised when the setting is read.
"""

from __future__ import annotations

import getpass
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from hub.errors import HubError, InvalidArgumentError

__all__ = ["DEFAULT_HOME", "GC_MIN_AGE_S", "hub_home", "registry_url", "current_user", "acting_as", "location", "endpoint", "token", "offline", "default_visibility", "hf_multipart_bytes", "hf_tree_page_size", "as_float", "as_int"]

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


def location() -> tuple[str | None, str | None]:
    """``$HUB_HOME`` and ``$HUB_REGISTRY_URL`` as they are set now (None where unset): what the
    default hub is built from, so a change of either means another hub."""
    return os.environ.get("HUB_HOME"), os.environ.get("HUB_REGISTRY_URL")


_ACTING: ContextVar[str | None] = ContextVar("hub_acting_user", default=None)


@contextmanager
def acting_as(user: str) -> Iterator[None]:
    """Record ``user`` as the one acting (publishes, alias history, jobs) inside the block, in this
    thread or task alone: how ``hub serve`` writes each request in its token's name."""
    token = _ACTING.set(user)
    try:
        yield
    finally:
        _ACTING.reset(token)


def current_user() -> str:
    """Who is acting, for alias history: the user of :func:`acting_as`, else ``$HUB_USER`` or the login name."""
    if (user := _ACTING.get()) is not None:
        return user
    try:
        return os.environ.get("HUB_USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def endpoint() -> str | None:
    """``$HUB_ENDPOINT`` without a trailing slash, or None when unset or empty (a local hub).

    Raises:
        InvalidArgumentError: not an ``http://`` or ``https://`` URL.
    """
    value = (os.environ.get("HUB_ENDPOINT") or "").strip().rstrip("/")
    if not value:
        return None
    if not value.startswith(("http://", "https://")) or len(value.split("//", 1)[1]) == 0:
        raise InvalidArgumentError(f"HUB_ENDPOINT={value!r} is not a URL; set it to the server's, e.g. "
                                   "HUB_ENDPOINT=http://hub.example:8000, or unset it for a local hub")
    return value


def token() -> str | None:
    """``$HUB_TOKEN``, or None when unset or empty (anonymous)."""
    return os.environ.get("HUB_TOKEN", "").strip() or None


def offline() -> bool:
    """Whether ``$HUB_OFFLINE`` asks for the local cache alone (``1``, ``true``, ``yes``, ``on``).

    Raises:
        InvalidArgumentError: a value that is neither true nor false.
    """
    raw = os.environ.get("HUB_OFFLINE", "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise InvalidArgumentError(f"HUB_OFFLINE={raw!r} is neither true nor false; set HUB_OFFLINE=1 or unset it")


def default_visibility() -> str:
    """``$HUB_DEFAULT_VISIBILITY``: ``"private"`` (default) or ``"public"``.

    Raises:
        InvalidArgumentError: another value.
    """
    value = os.environ.get("HUB_DEFAULT_VISIBILITY", "private").strip().lower()
    if value not in ("private", "public"):
        raise InvalidArgumentError(f"HUB_DEFAULT_VISIBILITY={value!r}: set it to private or public")
    return value


def hf_multipart_bytes() -> int:
    """``$HUB_HF_MULTIPART_MB`` in bytes (default 64 MiB): a Hugging Face client's LFS upload of at least
    this size is sent in parts of this size (the LFS batch API's multipart transfer).

    Raises:
        InvalidArgumentError: not a positive whole number.
    """
    return as_int("HUB_HF_MULTIPART_MB", 64, what="whole number of MiB") * 1024 * 1024


def hf_tree_page_size() -> int:
    """``$HUB_HF_TREE_PAGE_SIZE`` (default 1000): how many entries one page of a Hugging Face tree listing
    (``GET /api/models/{repo_id}/tree/...``) holds; the next page is named by its ``Link: rel="next"``.

    Raises:
        InvalidArgumentError: not a positive whole number.
    """
    return as_int("HUB_HF_TREE_PAGE_SIZE", 1000, what="whole number of entries")


def _read(variable: str, default: Any, convert: Callable[[str], Any], accept: Callable[[Any], bool], kind: str,
          error: type[HubError]) -> Any:
    """``$variable`` converted, ``default`` when it is unset; a value that does not convert or is not accepted
    raises ``error`` naming the variable, the value and what to set."""
    raw = os.environ.get(variable)
    if raw is None:
        return default
    try:
        value = convert(raw)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise error(f"{variable}={raw!r} is not a {kind}; set {variable} to one (e.g. {variable}={default:g}) or unset it")
    return value


def as_float(variable: str, default: float, *, positive: bool = True, what: str = "number",
             error: type[HubError] = InvalidArgumentError) -> float:
    """The environment variable ``variable`` as a finite number, ``default`` when it is unset.

    Args:
        variable: its name.
        default: the value when it is unset (an empty value is a bad value, not unset).
        positive: refuse 0 and below.
        what: what the number counts, for the error (``"number of seconds"``).
        error: the error class to raise (a package's own, e.g. ``ConfigError``).

    Returns:
        The value.

    Raises:
        InvalidArgumentError (or ``error``): not a number, NaN or infinite, or not positive when it must be.
    """
    return _read(variable, default, float, lambda value: math.isfinite(value) and (value > 0 or not positive),
                 f"positive {what}" if positive else f"finite {what}", error)


def as_int(variable: str, default: int, *, positive: bool = True, what: str = "whole number",
           error: type[HubError] = InvalidArgumentError) -> int:
    """The environment variable ``variable`` as a whole number, ``default`` when it is unset.

    Args:
        variable: its name.
        default: the value when it is unset (an empty value is a bad value, not unset).
        positive: refuse 0 and below (else refuse only negative numbers).
        what: what the number counts, for the error (``"whole number of megabytes"``).
        error: the error class to raise (a package's own).

    Returns:
        The value.

    Raises:
        InvalidArgumentError (or ``error``): not a whole number, or below 1 (0 where ``positive`` is false).
    """
    return _read(variable, default, int, lambda value: value >= (1 if positive else 0),
                 f"positive {what}" if positive else f"{what} (0 or more)", error)
