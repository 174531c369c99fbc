"""modelhub: publish PyTorch models once, load them anywhere in one line.

    import hub
    hub.publish(model, "acme/digits-cnn", aliases=["production"])
    model = hub.load("acme/digits-cnn@production")

The module-level functions use a default :class:`Hub` built from ``HUB_HOME``
and ``HUB_REGISTRY_URL`` (with ``HUB_ENDPOINT`` set, a :class:`hub.remote.RemoteHub`
against that server, ``HUB_HOME`` its cache); ``hub.Hub(home, registry_url)`` gives an explicit one.
Importing ``hub`` is light: torch, SQLAlchemy and the rest load only when a
call needs them (names below are imported on first use).
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from hub.errors import *  # noqa: F403
from hub.errors import __all__ as _errors

if TYPE_CHECKING:
    from hub.api import Hub
    from hub.architectures import create, list_architectures, register_architecture
    from hub.entities import AliasChange, ExportRecord, FileEntry, GcReport, ModelSummary, ModelVersion, VerifyReport
    from hub.families import ModelFamily, ModelSpec, list_families, register_family
    from hub.inputs import InputSpec
    from hub.reference import Reference, parse_reference

__version__ = "0.1.0"

# The default hub's methods, exposed as module functions.
_DELEGATED = (
    "publish", "load", "load_state_dict", "info", "list_models", "list_versions", "set_alias", "delete_alias",
    "alias_history", "delete_version", "download", "verify", "gc", "reindex", "import_hf", "load_tokenizer",
    "count_models", "model_facets", "list_children", "read_card", "input_spec", "model_spec",
    "export", "load_export", "list_exports", "export_record", "download_export",
)
_LAZY = {
    "Hub": "hub.api", "GcReport": "hub.entities",
    "ModelVersion": "hub.entities", "ModelSummary": "hub.entities", "FileEntry": "hub.entities",
    "AliasChange": "hub.entities", "ExportRecord": "hub.entities", "VerifyReport": "hub.entities", "InputSpec": "hub.inputs",
    "Reference": "hub.reference", "parse_reference": "hub.reference",
    "register_architecture": "hub.architectures", "create": "hub.architectures", "list_architectures": "hub.architectures",
    "ModelSpec": "hub.families", "ModelFamily": "hub.families", "register_family": "hub.families", "list_families": "hub.families",
}

__all__ = [*_DELEGATED, *_LAZY, "default_hub", *_errors]

_default: tuple[tuple[Any, ...], Hub] | None = None
_default_lock = threading.Lock()


def default_hub() -> Hub:
    """The :class:`Hub` the module functions use, rebuilt when ``HUB_HOME`` or ``HUB_REGISTRY_URL`` change:
    a :class:`hub.remote.RemoteHub` when ``HUB_ENDPOINT`` is set (with ``HUB_TOKEN``, ``HUB_OFFLINE``,
    and ``HUB_HOME`` as its cache), else a local one."""
    from hub import settings

    global _default
    key = (*settings.location(), settings.endpoint(), settings.token(), settings.offline())
    with _default_lock:
        if _default is None or _default[0] != key:
            if _default is not None:
                _default[1].close()
            if key[2] is not None:
                from hub.remote import RemoteHub

                made: Hub = RemoteHub(key[2], key[3], offline=key[4])
            else:
                from hub.api import Hub

                made = Hub()
            _default = (key, made)
        return _default[1]


def _delegate(name: str) -> Any:
    """``hub.<name>(...)``: the default hub's method, with its signature and docstring."""
    import functools
    import inspect

    from hub.api import Hub

    method = getattr(Hub, name)

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(default_hub(), name)(*args, **kwargs)

    parameters = list(inspect.signature(method).parameters.values())[1:]
    call.__signature__ = inspect.signature(method).replace(parameters=parameters)  # type: ignore[attr-defined]
    call.__module__ = __name__
    return call


def __getattr__(name: str) -> Any:
    if name in _DELEGATED:
        value = _delegate(name)
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'hub' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
