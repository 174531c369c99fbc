"""modelhub: publish PyTorch models once, load them anywhere in one line.

    import hub
    hub.publish(model, "acme/digits-cnn", aliases=["production"])
    model = hub.load("acme/digits-cnn@production")

The module-level functions use a default :class:`Hub` built from ``HUB_HOME``
and ``HUB_REGISTRY_URL``; ``hub.Hub(home, registry_url)`` gives an explicit one.
Importing ``hub`` is light: torch and SQLAlchemy load only when a call needs them.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
from typing import Any

from hub.api import GcReport, Hub
from hub.architectures import create, list_architectures, register_architecture
from hub.entities import AliasChange, FileEntry, ModelSummary, ModelVersion, VerifyReport
from hub.errors import *  # noqa: F403
from hub.errors import __all__ as _errors
from hub.reference import Reference, parse_reference

__version__ = "0.1.0"

__all__ = [
    "Hub", "ModelVersion", "ModelSummary", "FileEntry", "AliasChange", "VerifyReport", "GcReport", "Reference",
    "publish", "load", "load_state_dict", "info", "list_models", "list_versions", "set_alias", "delete_alias",
    "alias_history", "delete_version", "download", "verify", "gc", "reindex",
    "register_architecture", "create", "list_architectures", "parse_reference", "default_hub",
    *_errors,
]

_default: tuple[tuple[str | None, str | None], Hub] | None = None
_default_lock = threading.Lock()


def default_hub() -> Hub:
    """The :class:`Hub` the module functions use, rebuilt when ``HUB_HOME`` or ``HUB_REGISTRY_URL`` change."""
    global _default
    key = (os.environ.get("HUB_HOME"), os.environ.get("HUB_REGISTRY_URL"))
    with _default_lock:
        if _default is None or _default[0] != key:
            if _default is not None:
                _default[1].close()
            _default = (key, Hub())
        return _default[1]


def _delegate(name: str) -> Any:
    method = getattr(Hub, name)

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(default_hub(), name)(*args, **kwargs)

    parameters = list(inspect.signature(method).parameters.values())[1:]
    call.__signature__ = inspect.signature(method).replace(parameters=parameters)  # type: ignore[attr-defined]
    call.__module__ = __name__
    return call


publish = _delegate("publish")
load = _delegate("load")
load_state_dict = _delegate("load_state_dict")
info = _delegate("info")
list_models = _delegate("list_models")
list_versions = _delegate("list_versions")
set_alias = _delegate("set_alias")
delete_alias = _delegate("delete_alias")
alias_history = _delegate("alias_history")
delete_version = _delegate("delete_version")
download = _delegate("download")
verify = _delegate("verify")
gc = _delegate("gc")
reindex = _delegate("reindex")
