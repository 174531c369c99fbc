"""Model references: ``name``, ``name:VERSION`` and ``name@ALIAS``.

A name is ``model`` or ``namespace/model``. Each part is 1 to 64 characters of
lowercase ASCII letters, digits, ``.``, ``_`` and ``-``, starting with a letter
or a digit. Versions are positive integers given by the registry. Aliases
follow the part rule but start with a letter; ``latest`` is reserved and always
means the highest live version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hub.errors import InvalidReferenceError

__all__ = ["Reference", "parse_reference", "validate_name", "validate_alias", "validate_version", "folder_name", "LATEST", "MAX_VERSION"]

LATEST = "latest"
MAX_PART_LENGTH = 64
MAX_VERSION = 2**31 - 1  # the registry stores version numbers as 32-bit integers (PostgreSQL INTEGER)
NAME_PART = re.compile(r"[a-z0-9][a-z0-9._-]*", re.ASCII)  # one part of a name (also a namespace, a user)
_ALIAS = re.compile(r"[a-z][a-z0-9._-]*", re.ASCII)
_VERSION = re.compile(r"[1-9][0-9]*", re.ASCII)
NAME_FORM = "'model' or 'namespace/model' (lowercase letters, digits, '.', '_', '-'; each part starts with a letter or digit, at most 64 characters)"
REFERENCE_FORM = "'name', 'name:VERSION' (VERSION a positive integer) or 'name@ALIAS'"


@dataclass(frozen=True)
class Reference:
    """A parsed reference. At most one of ``version`` and ``alias`` is set; neither means latest."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def _check_part(part: str, whole: str, what: str) -> None:
    if not part:
        raise InvalidReferenceError(f"{what} {whole!r} has an empty part; expected {NAME_FORM}")
    if len(part) > MAX_PART_LENGTH:
        raise InvalidReferenceError(
            f"{what} {whole!r}: part {part[:20]!r}... is {len(part)} characters, at most {MAX_PART_LENGTH} allowed"
        )
    bad = next((ch for ch in part if not NAME_PART.fullmatch("a" + ch)), None)
    if bad is not None:
        shown = f"{bad!r} (U+{ord(bad):04X})" if not bad.isascii() else repr(bad)
        raise InvalidReferenceError(f"{what} {whole!r}: part {part!r} has the invalid character {shown}; expected {NAME_FORM}")
    if not NAME_PART.fullmatch(part):
        raise InvalidReferenceError(
            f"{what} {whole!r}: part {part!r} must start with a lowercase letter or digit; expected {NAME_FORM}"
        )


def validate_name(name: object) -> str:
    """Check a model name and return it.

    Raises:
        InvalidReferenceError: the name is not ``model`` or ``namespace/model`` in the allowed characters.
    """
    if not isinstance(name, str):
        raise InvalidReferenceError(f"a model name must be a string, not {type(name).__name__}; expected {NAME_FORM}")
    if not name:
        raise InvalidReferenceError(f"the model name is empty; expected {NAME_FORM}")
    parts = name.split("/")
    if len(parts) > 2:
        raise InvalidReferenceError(f"model name {name!r} has {len(parts)} parts; expected {NAME_FORM}")
    for part in parts:
        _check_part(part, name, "model name")
    return name


def validate_alias(alias: object, *, allow_latest: bool = False) -> str:
    """Check an alias name and return it.

    Raises:
        InvalidReferenceError: malformed, or ``latest`` where it can't be set by hand.
    """
    if not isinstance(alias, str) or not alias:
        raise InvalidReferenceError(f"alias {alias!r} is empty or not a string; expected a name like 'production'")
    if len(alias) > MAX_PART_LENGTH or not _ALIAS.fullmatch(alias):
        raise InvalidReferenceError(
            f"alias {alias!r} is invalid; expected a lowercase letter followed by letters, digits, '.', '_' or '-' "
            f"(at most {MAX_PART_LENGTH} characters)"
        )
    if alias == LATEST and not allow_latest:
        raise InvalidReferenceError("alias 'latest' is reserved (it always means the highest live version); pick another name")
    return alias


def validate_version(version: object) -> int:
    """Check a version number (a positive int, or its decimal string) and return it as an int.

    Raises:
        InvalidReferenceError: not a positive integer.
    """
    if isinstance(version, bool):
        raise InvalidReferenceError(f"version {version!r} is not a positive integer")
    if isinstance(version, str) and _VERSION.fullmatch(version):
        if len(version) > len(str(MAX_VERSION)):  # don't make an int of a million digits to say so
            raise InvalidReferenceError(f"version {version[:20]}... ({len(version)} digits) is too large; versions go up to {MAX_VERSION}")
        version = int(version)
    if isinstance(version, int):
        shown = version if version.bit_length() <= 64 else f"of {version.bit_length()} bits"  # str() of a huge int raises
        if version < 1:
            raise InvalidReferenceError(f"version {shown} is not a positive integer; versions start at 1")
        if version > MAX_VERSION:
            raise InvalidReferenceError(f"version {shown} is too large; versions go up to {MAX_VERSION}")
        return version
    shown = f"{version[:20]!r}... ({len(version)} characters)" if isinstance(version, str) and len(version) > 40 else repr(version)
    raise InvalidReferenceError(f"version {shown} is not a positive integer; expected 1, 2, 3, ...")


def parse_reference(text: object) -> Reference:
    """Parse ``name``, ``name:VERSION`` or ``name@ALIAS``.

    Args:
        text: the reference, or a :class:`Reference` (returned as is).

    Returns:
        The parsed :class:`Reference`.

    Raises:
        InvalidReferenceError: naming the bad part and the expected form.
    """
    if isinstance(text, Reference):
        return text
    if not isinstance(text, str):
        raise InvalidReferenceError(f"a reference must be a string, not {type(text).__name__}; expected {REFERENCE_FORM}")
    if not text:
        raise InvalidReferenceError(f"the reference is empty; expected {REFERENCE_FORM}")
    if ":" in text and "@" in text:
        raise InvalidReferenceError(f"reference {text!r} has both a version and an alias; expected {REFERENCE_FORM}")
    if ":" in text:
        name, _, version = text.partition(":")
        if not _VERSION.fullmatch(version):
            raise InvalidReferenceError(
                f"reference {text!r}: version {version!r} is not a positive integer; expected {REFERENCE_FORM}"
            )
        try:
            number = validate_version(version)
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(f"reference {text[:80]!r}: {exc}") from None
        return Reference(validate_name(name), version=number)
    if "@" in text:
        name, _, alias = text.partition("@")
        validate_name(name)
        try:
            validate_alias(alias, allow_latest=True)
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(f"reference {text!r}: {exc}") from None
        return Reference(name, alias=None if alias == LATEST else alias)
    return Reference(validate_name(text))


def folder_name(name: str) -> str:
    """One folder name for a model name: ``acme/digits`` -> ``acme+digits``.

    ``+`` is not allowed in names, so no two models share a folder (nesting
    ``acme/`` would put model ``acme``'s files inside model ``acme/x``'s path).
    """
    return validate_name(name).replace("/", "+")


def name_from_folder(folder: str) -> str:
    """The model name a :func:`folder_name` stands for.

    Raises:
        InvalidReferenceError: the folder is not one that ``folder_name`` makes.
    """
    return validate_name(folder.replace("+", "/"))
