"""Architectures by name, timm-style: builders registered with a decorator.

A builder is ``fn(**config) -> nn.Module``. ``create`` is the one build path:
it checks the config against the builder's signature, builds, and records the
architecture and config on the module (``module.hub_architecture``) so that
``publish`` knows them. Built-in architectures (``mlp``, ``convnet``) load on
first use; installed packages add theirs through the entry-point group
``modelhub.architectures`` (each entry point names a builder or a module that
registers builders when imported).
"""

from __future__ import annotations

import difflib
import inspect
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from hub.errors import ArchitectureError, ArchitectureNotFoundError, InvalidArgumentError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["register_architecture", "create", "create_empty", "list_architectures", "get_architecture", "ArchitectureSpec", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "modelhub.architectures"
Builder = TypeVar("Builder", bound=Callable[..., "nn.Module"])
_builders: dict[str, Callable[..., nn.Module]] = {}
_loaded = False
_load_lock = threading.RLock()


@dataclass(frozen=True)
class ArchitectureSpec:
    """What a module was built from: an architecture name and its config."""

    name: str
    config: dict[str, Any]


def register_architecture(name: str, *, overwrite: bool = False) -> Callable[[Builder], Builder]:
    """Register ``fn(**config) -> nn.Module`` under ``name``.

    Args:
        name: lowercase name, e.g. ``"mlp"``.
        overwrite: replace an existing builder of that name instead of raising.

    Raises:
        InvalidArgumentError: the name is taken (and ``overwrite`` is False) or malformed.
    """
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise InvalidArgumentError(f"architecture name {name!r} is invalid; use letters, digits, '_', '-' or '.'")

    def decorator(builder: Builder) -> Builder:
        if not overwrite and name in _builders and _builders[name] is not builder:
            raise InvalidArgumentError(f"architecture {name!r} is already registered; pass overwrite=True to replace it")
        _builders[name] = builder
        return builder

    return decorator


def _load_plugins() -> None:
    global _loaded
    with _load_lock:
        if _loaded:
            return
        _loaded = True
        import hub.builtin_architectures  # noqa: F401  (registers mlp, convnet)
        from importlib.metadata import entry_points

        for entry in entry_points(group=ENTRY_POINT_GROUP):
            target = entry.load()
            if callable(target) and not inspect.ismodule(target) and entry.name not in _builders:
                _builders[entry.name] = target


def list_architectures() -> list[str]:
    """Names of every registered architecture, sorted."""
    _load_plugins()
    return sorted(_builders)


def get_architecture(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name``.

    Raises:
        ArchitectureNotFoundError: none is, with the closest names.
    """
    _load_plugins()
    try:
        return _builders[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), _builders, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ArchitectureNotFoundError(
            f"no architecture named {name!r}; {hint}known: {', '.join(sorted(_builders))}. "
            f"Register one with @hub.register_architecture or install the package that provides it"
        ) from None


def check_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Check ``config`` fits architecture ``name`` (known keys, JSON-serializable).

    Returns:
        The full config, the builder's defaults filled in, as JSON values.

    Raises:
        ArchitectureNotFoundError: unknown architecture.
        ArchitectureError: an unknown or missing key, or a value that is not JSON.
    """
    builder = get_architecture(name)
    if not isinstance(config, dict):
        raise ArchitectureError(f"config for {name!r} must be a dict, not {type(config).__name__}").about("config")
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ArchitectureError(f"config for {name!r} must hold only JSON values (numbers, strings, lists, dicts): {exc}").about(
            "config") from None
    try:
        bound = inspect.signature(builder).bind(**config)
    except TypeError as exc:
        params = ", ".join(inspect.signature(builder).parameters)
        raise ArchitectureError(f"config does not fit architecture {name!r}: {exc}; its parameters are: {params}").about(
            "config") from None
    bound.apply_defaults()
    return json.loads(json.dumps(bound.arguments))  # defaults filled in, tuples as lists: what is stored


def create(name: str, **config: Any) -> nn.Module:
    """Build architecture ``name`` with ``config``; the module remembers both.

    Returns:
        The module (built on the current default device, e.g. inside ``torch.device("meta")``).

    Raises:
        ArchitectureNotFoundError: no such architecture.
        ArchitectureError: the config does not fit, or the builder failed.
    """
    full_config = check_config(name, config)
    try:
        module = get_architecture(name)(**config)
    except (TypeError, ValueError) as exc:
        raise ArchitectureError(f"building {name!r} with {config} failed: {exc}") from exc
    module.hub_architecture = ArchitectureSpec(name, full_config)
    return module


_building_empty = threading.local()
_patched = False


def _install_empty_parameters_hook() -> None:
    """Wrap ``nn.Module.register_parameter`` once: inside :func:`create_empty`, on this thread
    only, every new parameter is moved to the meta device as it is registered."""
    global _patched
    with _load_lock:
        if _patched:
            return
        from torch import nn

        register = nn.Module.register_parameter

        def register_parameter(self: nn.Module, name: str, param: Any) -> None:
            register(self, name, param)
            if param is not None and not param.is_meta and getattr(_building_empty, "active", False):
                self._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        _patched = True


def create_empty(name: str, **config: Any) -> nn.Module:
    """Build architecture ``name`` with its parameters on the meta device and its buffers real.

    Parameters take no memory and get no initialisation (they are replaced by
    stored weights); buffers the module computes for itself (``position_ids``,
    masks, ...) are built for real on the CPU, since checkpoints don't hold them.

    Raises:
        ArchitectureNotFoundError, ArchitectureError: see :func:`create`.
    """
    _install_empty_parameters_hook()
    _building_empty.active = True
    try:
        return create(name, **config)
    finally:
        _building_empty.active = False
