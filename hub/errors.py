"""Every exception modelhub raises, in one tree under :class:`HubError`.

Each class also inherits the standard exception that fits, so existing
``except LookupError`` / ``except ValueError`` clauses keep working. Every
message says what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "HubError",
    "InvalidReferenceError",
    "InvalidArgumentError",
    "InvalidSourceError",
    "ModelNotFoundError",
    "VersionNotFoundError",
    "AliasNotFoundError",
    "VersionExistsError",
    "ArchitectureNotFoundError",
    "ArchitectureError",
    "WeightsMismatchError",
    "IntegrityError",
    "UnsafeFormatError",
    "DeviceError",
    "RegistryError",
    "SchemaOutdatedError",
]


class HubError(Exception):
    """Base class of every error raised by modelhub."""


# --- input -----------------------------------------------------------------


class InvalidReferenceError(HubError, ValueError):
    """A model name, reference, version or alias is malformed."""


class InvalidArgumentError(HubError, ValueError):
    """An argument has the wrong type or value (metrics, metadata, tags, ...)."""


class InvalidSourceError(HubError, ValueError):
    """What was given to ``publish`` is not a module, state dict, file or folder of weights."""


# --- lookups ---------------------------------------------------------------


class ModelNotFoundError(HubError, LookupError):
    """No model of that name is registered."""


class VersionNotFoundError(ModelNotFoundError):
    """The model exists but not that version (or it was deleted)."""


class AliasNotFoundError(ModelNotFoundError):
    """The model exists but has no such alias."""


class VersionExistsError(HubError, ValueError):
    """An explicit ``version=`` was asked for that the model already has."""


# --- architectures and weights ---------------------------------------------


class ArchitectureNotFoundError(HubError, LookupError):
    """No architecture is registered under that name."""


class ArchitectureError(HubError, ValueError):
    """An architecture could not be built from the given config."""


class WeightsMismatchError(HubError, ValueError):
    """Stored weights do not fit the module (missing, unexpected or mis-shaped tensors)."""


class IntegrityError(HubError, OSError):
    """Stored bytes are missing, truncated or do not hash to what the manifest says."""


class UnsafeFormatError(HubError, ValueError):
    """A file is in a format that could run code (pickle) or is not valid safetensors."""


class DeviceError(HubError, ValueError):
    """The requested device is malformed or not available on this machine."""


# --- registry database -----------------------------------------------------


class RegistryError(HubError, RuntimeError):
    """The registry database could not be reached or refused an operation."""


class SchemaOutdatedError(RegistryError):
    """The registry database schema is older (or newer) than this modelhub."""
