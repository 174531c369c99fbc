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
    "FinetuneError",
    "DataError",
    "EmptyDataError",
    "ColumnNotFoundError",
    "InvalidValueError",
    "LabelError",
    "TooFewRowsError",
    "ShapeMismatchError",
    "UnreadableDataError",
    "ConfigError",
    "JobNotFoundError",
    "JobStateError",
    "TrainingError",
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


# --- fine-tuning -----------------------------------------------------------


class FinetuneError(HubError):
    """Base class of every error raised by the ``finetune`` package."""


class DataError(FinetuneError, ValueError):
    """A data file can't be used for training; the message names the file, row and column where it can.

    Args:
        message: what is wrong and what to do.
        file, row, column: where (rows count from 1, the header not counted).
    """

    def __init__(self, message: str, *, file: object = None, row: int | None = None, column: str | None = None) -> None:
        self.file, self.row, self.column = (str(file) if file is not None else None), row, column
        where = ", ".join(
            part for part in (self.file, f"row {row}" if row is not None else None,
                              f"column {column!r}" if column is not None else None) if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class EmptyDataError(DataError):
    """The data file (or folder) holds no rows."""


class ColumnNotFoundError(DataError, LookupError):
    """A column the task needs is not in the table (the message names the closest match)."""


class InvalidValueError(DataError):
    """A value is missing, not a number, NaN or infinite."""


class LabelError(DataError):
    """Labels the model's output head can't hold (too many classes, unseen names, non-numeric targets)."""


class TooFewRowsError(DataError):
    """Fewer rows than one batch, or too few to split off a validation set."""


class ShapeMismatchError(DataError):
    """The data's features don't fit the model's input."""


class UnreadableDataError(DataError):
    """The file can't be read: unknown format, bad encoding, a broken image, invalid JSON."""


class ConfigError(FinetuneError, ValueError):
    """A fine-tuning setting is out of range or unknown."""


class JobNotFoundError(FinetuneError, LookupError):
    """No fine-tuning job has that id."""


class JobStateError(FinetuneError, RuntimeError):
    """The job is not in a state that allows this (e.g. cancelling a finished job)."""


class TrainingError(FinetuneError, RuntimeError):
    """Training could not go on (the loss became NaN, the model has no trainable parameters, ...)."""
