"""Architectures by name, timm-style: the registry of model families, and the one build path.

Each name has a :class:`hub.families.ModelFamily` (:mod:`hub.families`). A builder
``fn(**config) -> nn.Module`` registered with the decorator becomes a
:class:`~hub.families.BuilderFamily`. ``create`` is the one build path: it checks the
config with the family, builds, and records the architecture and config on the module
(``module.hub_architecture``) so that ``publish`` knows them. Built-in families (``mlp``,
``convnet``, ``transformers``) load on first use; installed packages add theirs through the
entry-point group ``modelhub.architectures`` (each entry point names a builder, a
``ModelFamily`` instance, or a module that registers them when imported).
"""

from __future__ import annotations

import difflib
import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from hub.errors import ArchitectureNotFoundError, InvalidArgumentError
from hub.families.base import ArchitectureSpec, BuilderFamily, ModelFamily

if TYPE_CHECKING:
    from torch import nn

__all__ = ["register_architecture", "create", "create_empty", "list_architectures", "get_architecture", "check_config",
           "ArchitectureSpec", "ENTRY_POINT_GROUP", "add_family", "get_family", "load_entry_points"]

ENTRY_POINT_GROUP = "modelhub.architectures"
Builder = TypeVar("Builder", bound=Callable[..., "nn.Module"])
_builders: dict[str, ModelFamily] = {}  # every architecture's family, by name
_loaded = False
_load_lock = threading.RLock()


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise InvalidArgumentError(f"architecture name {name!r} is invalid; use letters, digits, '_', '-' or '.'")
    return name


def add_family(family: ModelFamily, *, overwrite: bool = False) -> ModelFamily:
    """Put ``family`` in the registry under ``family.name`` (see :func:`hub.families.register_family`).

    Raises:
        InvalidArgumentError: not a ModelFamily, a malformed name, or one taken (without ``overwrite``).
    """
    if not isinstance(family, ModelFamily):
        raise InvalidArgumentError(f"{family!r} is not a hub.families.ModelFamily; register a builder with @hub.register_architecture")
    name = _check_name(family.name)
    existing = _builders.get(name)
    same = existing is family or (isinstance(existing, BuilderFamily) and isinstance(family, BuilderFamily)
                                  and existing.builder is family.builder)
    if not overwrite and existing is not None and not same:
        raise InvalidArgumentError(f"architecture {name!r} is already registered; pass overwrite=True to replace it")
    if not same:
        _builders[name] = family
    return _builders[name]


def register_architecture(name: str, *, overwrite: bool = False) -> Callable[[Builder], Builder]:
    """Register ``fn(**config) -> nn.Module`` under ``name``.

    Args:
        name: lowercase name, e.g. ``"mlp"``.
        overwrite: replace an existing builder of that name instead of raising.

    Raises:
        InvalidArgumentError: the name is taken (and ``overwrite`` is False) or malformed.
    """
    _check_name(name)

    def decorator(builder: Builder) -> Builder:
        add_family(BuilderFamily(name, builder), overwrite=overwrite)
        return builder

    return decorator


def load_entry_points(group: str, *, skip_broken: Callable[[str, str, ImportError], None] | None = None) -> list[tuple[str, str, Any]]:
    """``(name, value, loaded object)`` of each entry point of ``group``, by name: modelhub loads plugins
    here only (architectures here, ``hub gc``'s collectors for :mod:`hub.gc_roots`, ``hub serve``'s routes).

    Args:
        skip_broken: called with ``(name, value, error)`` for an entry point that can't be imported,
            which is then left out; default: the ImportError is raised.
    """
    from importlib.metadata import entry_points

    loaded = []
    for entry in sorted(entry_points(group=group), key=lambda entry: entry.name):
        value = getattr(entry, "value", entry.name)
        try:
            loaded.append((entry.name, value, entry.load()))
        except ImportError as error:
            if skip_broken is None:
                raise
            skip_broken(entry.name, value, error)
    return loaded


def _load_plugins() -> None:
    global _loaded
    with _load_lock:
        if _loaded:
            return
        _loaded = True
        from hub.families.builtin import BUILTIN_FAMILIES

        for family in BUILTIN_FAMILIES:
            _builders.setdefault(family.name, family)
        for name, _, target in load_entry_points(ENTRY_POINT_GROUP):
            if name in _builders:
                continue
            if isinstance(target, ModelFamily):
                _builders[name] = target
            elif callable(target) and not inspect.ismodule(target):
                _builders[name] = BuilderFamily(name, target)


def list_architectures() -> list[str]:
    """Names of every registered architecture, sorted."""
    _load_plugins()
    return sorted(_builders)


def get_family(name: str) -> ModelFamily:
    """The family registered under ``name``.

    Raises:
        ArchitectureNotFoundError: none is, with the closest names.
    """
    _load_plugins()
    try:
        return _builders[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), _builders, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ArchitectureNotFoundError(
            f"no architecture named {name!r}; {hint}known: {', '.join(sorted(_builders))}. "
            f"Register one with @hub.register_architecture or install the package that provides it"
        ) from None


def get_architecture(name: str) -> Callable[..., nn.Module]:
    """A function building architecture ``name`` from its config: ``fn(**config) -> nn.Module``.

    Raises:
        ArchitectureNotFoundError: none is registered, with the closest names.
    """
    family = get_family(name)
    return family.builder if isinstance(family, BuilderFamily) else lambda **config: family.build(config)


def check_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Check ``config`` fits architecture ``name`` (known keys, JSON-serializable).

    Returns:
        The full config, the defaults filled in, as JSON values.

    Raises:
        ArchitectureNotFoundError: unknown architecture.
        ArchitectureError: an unknown or missing key, or a value that is not JSON.
    """
    return get_family(name).check_config(config)


def _build(name: str, config: dict[str, Any], *, empty: bool) -> nn.Module:
    family = get_family(name)
    full_config = family.check_config(config)
    module = family.build(config, empty=empty)
    module.hub_architecture = ArchitectureSpec(name, full_config)
    return module


def create(name: str, **config: Any) -> nn.Module:
    """Build architecture ``name`` with ``config``; the module remembers both.

    Returns:
        The module (built on the current default device, e.g. inside ``torch.device("meta")``).

    Raises:
        ArchitectureNotFoundError: no such architecture.
        ArchitectureError: the config does not fit, or the builder failed.
    """
    return _build(name, config, empty=False)


def create_empty(name: str, **config: Any) -> nn.Module:
    """Build architecture ``name`` with its parameters on the meta device and its buffers real.

    Parameters take no memory and get no initialisation (they are replaced by
    stored weights); buffers the module computes for itself (``position_ids``,
    masks, ...) are built for real, since checkpoints don't hold them (a family may
    leave them for :meth:`~hub.families.ModelFamily.finish` to compute after loading).

    Raises:
        ArchitectureNotFoundError, ArchitectureError: see :func:`create`.
    """
    return _build(name, config, empty=True)
