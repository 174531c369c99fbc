"""Every exception modelhub raises, in one tree under :class:`HubError`.

Each class also inherits the standard exception that fits, so existing
``except LookupError`` / ``except ValueError`` clauses keep working. Every
message says what was wrong and what to do about it.
"""

from __future__ import annotations

import errno as _errno
import os as _os
from collections.abc import Callable as _Callable

__all__ = [
    "HubError",
    "HubNotFoundError",
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
    "ExportError",
    "RegistryError",
    "DamagedRegistryError",
    "ReindexRefusedError",
    "UnrelatedStoreError",
    "SchemaOutdatedError",
    "StorageError",
    "NoSpaceError",
    "ReadOnlyError",
    "AuthenticationError",
    "PermissionDeniedError",
    "MissingBlobsError",
    "UserNotFoundError",
    "NamespaceNotFoundError",
    "TokenNotFoundError",
    "RemoteError",
    "OfflineError",
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
    """Base class of every error raised by modelhub.

    ``settings`` names the settings the message tells its reader to change, ``{setting: how the
    message spells it}`` (``{"label_column": "DataSpec(label_column=...)"}``): the message is in the
    Python API's terms, and :meth:`worded` puts it in another's, such as the command line's flags.
    """

    settings: dict[str, str] = {}

    def about(self, *names: str, **spelled: str) -> HubError:
        """Record the settings the message names, and return the error (to raise).

        Args:
            names: settings spelled in the message as they are named (``about("epochs")``).
            spelled: settings spelled otherwise, ``setting="text in the message"``
                (``about(label_column="DataSpec(label_column=...)")``).
        """
        self.settings = {**self.settings, **{name: name for name in names}, **spelled}
        return self

    def worded(self, name: _Callable[[str], str | None]) -> str:
        """The message with each setting it names spelled ``name(setting)`` (left as it is where that
        is None): the command line's ``--label-column`` for the Python API's ``label_column``.
        The first place the message spells a setting is the one replaced."""
        text = str(self)
        for setting, spelled in self.settings.items():
            other = name(setting)
            if other is not None:
                text = text.replace(spelled, other, 1)
        return text


class HubNotFoundError(HubError, LookupError):
    """There is no hub where ``HUB_HOME`` (and ``HUB_REGISTRY_URL``) point: a command that reads
    one says so, and creates nothing (see :meth:`hub.Hub.check_exists`)."""


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


class ExportError(HubError, ValueError):
    """A version could not be exported (the exporter's own reason), or its export's outputs are
    not those of the PyTorch model within the tolerance; nothing was stored."""


class DeviceError(HubError, ValueError):
    """The requested device is malformed or not available on this machine."""


# --- registry database -----------------------------------------------------


class RegistryError(HubError, RuntimeError):
    """The registry database could not be reached or refused an operation."""


class DamagedRegistryError(RegistryError):
    """The registry's SQLite file is damaged (truncated, overwritten, not a database);
    ``hub reindex`` moves it aside and rebuilds it from the store."""


class UnrelatedStoreError(RegistryError):
    """The store (``HUB_HOME``) holds none of the versions the registry has: it is empty or another
    hub's, so ``reindex`` and ``gc`` there would wipe the registry or delete the other hub's blobs."""


class ReindexRefusedError(RegistryError):
    """``hub reindex`` would drop or change registry rows the store has no evidence against
    (an empty or unrelated store, a version the two disagree on); ``--force`` overrides."""


class SchemaOutdatedError(RegistryError):
    """The registry database schema is older (or newer) than this modelhub."""


# --- the disk under the hub --------------------------------------------------


class StorageError(HubError, OSError):
    """The hub's files can't be written: no space left, a read-only file system, no permission.

    ``errno`` and ``filename`` are those of the failure; the message names the path, the cause and the remedy.
    """

    def __init__(self, message: str, *, errno: int | None = None, path: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno
        self.strerror = _os.strerror(errno) if errno is not None else None
        self.filename = str(path) if path is not None else None

    def __str__(self) -> str:
        return self.message


class NoSpaceError(StorageError):
    """No space left on the device (or the disk quota is used up) where the hub writes."""


class ReadOnlyError(StorageError):
    """The hub's folder or registry file is on a read-only file system, or this user may not write it."""


_NO_SPACE = {_errno.ENOSPC, getattr(_errno, "EDQUOT", _errno.ENOSPC)}
_READ_ONLY = {_errno.EROFS, _errno.EACCES, _errno.EPERM}
_WRITABLE_HOME = (
    "publish, tag, delete, gc and reindex need a writable HUB_HOME; list, info, versions, verify, download, load "
    "and `gc --dry-run` work on a read-only one"
)


def storage_error(error: BaseException, path: object = None) -> StorageError | None:
    """The :class:`StorageError` that explains ``error`` (an ``OSError``), or None when it is not about the disk.

    The one place that words these failures, for the ``Hub`` and the CLI alike:
    ``ENOSPC``/``EDQUOT`` give :class:`NoSpaceError`, ``EROFS``/``EACCES``/``EPERM`` :class:`ReadOnlyError`.

    Args:
        error: the failure.
        path: where it happened, when ``error`` does not say (a write's ``ENOSPC`` names no file).
    """
    if isinstance(error, StorageError):
        return error
    code = getattr(error, "errno", None)
    if not isinstance(error, OSError) or code not in _NO_SPACE | _READ_ONLY:
        return None
    where = getattr(error, "filename", None) or path or "the hub's folder"
    if code in _NO_SPACE:
        what = "disk quota exceeded" if code != _errno.ENOSPC else "no space left on device"
        return NoSpaceError(f"{what} at {where}: free space, then retry (`hub gc` frees unreferenced blobs)",
                            errno=code, path=where)
    if code == _errno.EROFS:
        return ReadOnlyError(f"read-only file system: {where} can't be written; {_WRITABLE_HOME}", errno=code, path=where)
    return ReadOnlyError(f"permission denied: {where}; ask its owner for access, or use a HUB_HOME of your own; "
                         f"{_WRITABLE_HOME}", errno=code, path=where)


# --- the server and its clients ----------------------------------------------


class AuthenticationError(HubError, PermissionError):
    """No token where one is needed, or one that is unknown, expired or revoked (HTTP 401)."""


class PermissionDeniedError(HubError, PermissionError):
    """The token is valid but lacks the scope or the namespace role this needs (HTTP 403)."""


class MissingBlobsError(HubError, ValueError):
    """A version was committed before the server held every blob it names (upload them first).

    Args:
        digests: the sha256 of each blob the server lacks.
    """

    def __init__(self, digests: list[str] | tuple[str, ...], message: str | None = None) -> None:
        self.digests = tuple(digests)
        shown = ", ".join(d[:12] for d in self.digests[:5]) + (" ..." if len(self.digests) > 5 else "")
        super().__init__(message or f"the server lacks {len(self.digests)} blob(s) this version names ({shown}); "
                                    "upload them (PATCH /api/v1/uploads/{sha256}), then commit again")


class UserNotFoundError(HubError, LookupError):
    """No hub user by that name (``hub user list`` shows them; ``hub user create NAME`` adds one)."""


class NamespaceNotFoundError(HubError, LookupError):
    """No namespace record by that name (``hub namespace list``; ``hub namespace create NAME --owner USER``)."""


class TokenNotFoundError(HubError, LookupError):
    """No API token with that id (``hub token list`` shows them)."""


class RemoteError(HubError, ConnectionError):
    """The hub server (``HUB_ENDPOINT``) could not be reached, or answered what a hub server does not."""


class OfflineError(RemoteError):
    """``HUB_OFFLINE=1`` and what was asked for is not in the local cache (load it once online, by ``name:N``)."""


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
