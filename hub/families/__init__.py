"""Model families by architecture name: look one up, register one, describe a version with it.

    family = family_for("mlp")                       # a ModelFamily
    model_spec_of(hub.info("acme/iris")).head        # "layers.2"

Each architecture name has one :class:`ModelFamily` (``mlp``, ``convnet`` and
``transformers`` are built in, loaded on first use). A plain builder registered with
``@hub.register_architecture`` gets a :class:`BuilderFamily`; a package adds a family with
:func:`register_family` or through the entry-point group ``modelhub.architectures`` (an entry
point names a builder, a ``ModelFamily`` instance, or a module that registers them). The
registry itself is :mod:`hub.architectures`' (one table, for both views; imported when first
asked, as it imports the built-in families); importing this package loads neither torch nor
transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub.families.base import BuilderFamily, ModelFamily, ModelSpec
from hub.input_facts import METADATA_KEY, InputSpec, merged_input

if TYPE_CHECKING:
    from hub.entities import ModelVersion

__all__ = ["ModelFamily", "ModelSpec", "BuilderFamily", "register_family", "family_for", "list_families", "model_spec_of",
           "known_family", "inferred_input", "input_spec_of"]

_NO_FAMILY = ModelFamily()  # describes a version whose architecture is unknown here: what its config says


def register_family(family: ModelFamily, *, overwrite: bool = False) -> ModelFamily:
    """Register ``family`` under ``family.name``.

    Args:
        family: the family (a :class:`ModelFamily` instance).
        overwrite: replace an architecture of that name instead of raising.

    Returns:
        ``family``.

    Raises:
        InvalidArgumentError: not a ModelFamily, the name is malformed, or it is taken (and
            ``overwrite`` is False).
    """
    from hub.architectures import _load_plugins, add_family

    _load_plugins()
    return add_family(family, overwrite=overwrite)


def family_for(architecture: str) -> ModelFamily:
    """The family of architecture ``architecture``.

    Raises:
        ArchitectureNotFoundError: none is registered, with the closest names.
    """
    from hub.architectures import get_family

    return get_family(architecture)


def list_families() -> list[ModelFamily]:
    """Every registered family, by architecture name."""
    from hub.architectures import list_architectures

    return [family_for(name) for name in list_architectures()]


def known_family(architecture: str | None) -> ModelFamily:
    """The family of ``architecture``, or one that knows nothing for none or an unknown one (a
    version published with a package that is not installed here is still described)."""
    from hub.architectures import list_architectures

    if architecture and architecture in list_architectures():
        return family_for(architecture)
    return _NO_FAMILY


def inferred_input(architecture: str | None, config: Mapping[str, Any], files: Sequence[str] = ()) -> InputSpec:
    """What the family of ``architecture`` says of the input of a model built from ``config``."""
    return known_family(architecture).input_of(config, files)


def input_spec_of(version: ModelVersion) -> InputSpec:
    """The input facts ``version`` records, each one it leaves out taken from its family's."""
    inferred = inferred_input(version.architecture, version.config, [f.path for f in version.files])
    return merged_input(version.metadata.get(METADATA_KEY), inferred)


def model_spec_of(version: ModelVersion) -> ModelSpec:
    """What ``version``'s family knows of it, with the input facts it records.

    A version without an architecture, or with one not registered here, gets a spec with what
    its config and metadata say (``family`` is ``""``).
    """
    family = known_family(version.architecture)
    spec = family.spec(version.architecture, version.config, files=[f.path for f in version.files], task=version.task)
    return replace(spec, input=input_spec_of(version))
