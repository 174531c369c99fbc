"""What the Hugging Face routes share: a revision resolved to a version, its commit id, its files, the errors.

A Hugging Face repo is a model; a revision names one of its live versions: ``main`` (and no revision)
the latest, ``vN`` version N, a 40-hex commit id the one version whose manifest digest starts with it
(:func:`commit_id`), anything else an alias. A version's files are :meth:`hub.files.Files.layout`'s,
the very files ``hub download`` writes. Failures are :class:`HfError`, answered with the status and
``X-Error-Code`` that make a Hugging Face client raise its own typed error.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from threading import Lock
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from hub.errors import (AuthenticationError, HubError, IntegrityError, InvalidReferenceError, ModelNotFoundError,
                        PermissionDeniedError)
from hub.files import HfFile
from hub.reference import validate_alias, validate_name

if TYPE_CHECKING:
    from hub.access import Principal
    from hub.api import Hub
    from hub.entities import ModelVersion
    from hub.server.context import ServerContext

__all__ = ["HfError", "HfFile", "commit_id", "resolve_revision", "hf_layout", "model_name", "hf_principal",
           "install_handler", "error_response", "BAD_TOKEN",
           "DEFAULT_REVISION", "REPO_NOT_FOUND", "REVISION_NOT_FOUND", "ENTRY_NOT_FOUND"]

DEFAULT_REVISION = "main"
REPO_NOT_FOUND, REVISION_NOT_FOUND, ENTRY_NOT_FOUND = "RepoNotFound", "RevisionNotFound", "EntryNotFound"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_VERSION = re.compile(r"v([1-9][0-9]{0,8})")
_LAYOUTS_KEPT = 256  # layouts remembered per process, by manifest digest


class HfError(Exception):
    """A failure as the Hugging Face Hub answers it.

    Args:
        status: the HTTP status.
        code: ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), or None.
        message: what was wrong and what to do (``X-Error-Message`` and the body's ``error``).
        commit: ``X-Repo-Commit`` to send (an EntryNotFound's, so a client caches the miss), or None.
        detail: more for the body's ``error`` than ``message`` says (default ``message``).
    """

    def __init__(self, status: int, code: str | None, message: str, *, commit: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit
        self.detail = detail or message

    @classmethod
    def of(cls, error: HubError) -> HfError:
        """The answer for a hub error: 401 for a bad token (no code: the client says the token is
        bad), 403 for a write it may not do, 404 RepoNotFound for a model not there, else the hub's status."""
        from hub.server.errors import status_of

        if isinstance(error, AuthenticationError):
            return cls(401, None, str(error))
        if isinstance(error, PermissionDeniedError):
            return cls(403, None, str(error))
        if type(error) is ModelNotFoundError:
            return cls(404, REPO_NOT_FOUND, str(error))
        return cls(status_of(error), None, str(error))


BAD_TOKEN = "Invalid credentials in Authorization header"  # the X-Error-Message a client reads as a bad token


async def hf_principal(request: Request) -> Principal:
    """Who sent ``request`` (a FastAPI dependency, :func:`hub.server.context.principal` for the Hugging Face
    routes): a bad token is a 401 whose ``X-Error-Message`` tells the client its token is bad.

    Raises:
        HfError: 401, a malformed, unknown, expired or revoked token.
    """
    from hub.server.context import principal

    try:
        return await principal(request)
    except AuthenticationError as error:
        raise HfError(401, None, BAD_TOKEN, detail=str(error)) from None


def commit_id(version: ModelVersion) -> str:
    """The Hugging Face commit id of ``version``: the first 40 hex of its manifest's sha256 (the same after a reindex)."""
    return version.digest[:40]


def model_name(repo_id: str) -> str:
    """The hub's model name for a Hugging Face repo id (names are lowercase; ids are matched without case).

    Raises:
        HfError: 404 RepoNotFound: not a name this hub could hold.
    """
    try:
        return validate_name(repo_id.lower())
    except InvalidReferenceError as error:
        raise HfError(404, REPO_NOT_FOUND, f"{repo_id!r} is not a model here ({error})") from None


def _repo_not_found(server: ServerContext, who: Principal, name: str) -> HfError:
    """What a caller who may not read ``name`` (or asks for a model not there) gets: 401 anonymous, else 404;
    the same for a private model and a missing one, as huggingface.co answers."""
    message = str(server.access.not_found(who, name))
    if who.user is None:
        return HfError(401, REPO_NOT_FOUND, f"{message}; if it is private, send a token (HF_TOKEN)")
    return HfError(404, REPO_NOT_FOUND, message)


def resolve_revision(server: ServerContext, who: Principal, repo_id: str, revision: str | None) -> ModelVersion:
    """The live version of model ``repo_id`` that ``revision`` names, if ``who`` may read it.

    Args:
        repo_id: ``namespace/model`` or ``model``.
        revision: ``main`` or None (the latest version), ``vN`` (version N), a 40-hex commit id (the
            version whose manifest digest starts with it), or an alias (``production``).

    Raises:
        HfError: 401/404 RepoNotFound: ``who`` may not read the model, or it has no live version;
            404 RevisionNotFound: no live version by that revision.
    """
    name = model_name(repo_id)
    if not server.access.can_read(who, name):
        raise _repo_not_found(server, who, name)
    revision = DEFAULT_REVISION if revision in (None, "") else revision
    hub = server.hub
    try:
        if revision == DEFAULT_REVISION:
            return hub.info(name)
        if (number := _VERSION.fullmatch(revision)) is not None:
            return hub.info(f"{name}:{number.group(1)}")
        if _COMMIT.fullmatch(revision):
            found = [v for v in hub.list_versions(name) if v.digest.startswith(revision)]
            if len(found) == 1:
                return found[0]
            raise HfError(404, REVISION_NOT_FOUND, f"{name} has no version with commit id {revision}")
        return hub.info(f"{name}@{validate_alias(revision, allow_latest=True)}")
    except InvalidReferenceError:
        raise HfError(404, REVISION_NOT_FOUND, f"{revision!r} is not a revision of {name}: use main, vN, a commit id "
                                               "or an alias") from None
    except ModelNotFoundError as error:
        if type(error) is ModelNotFoundError:
            if revision == DEFAULT_REVISION and server.access.can_write(who, name):  # created, never committed to: an empty repo
                raise HfError(404, ENTRY_NOT_FOUND, f"{name} has no versions yet; a commit to main publishes its first") from None
            raise _repo_not_found(server, who, name) from None
        raise HfError(404, REVISION_NOT_FOUND, f"{error}; revisions are main, vN, a commit id or an alias") from None


_layouts: OrderedDict[tuple[int, str], list[HfFile]] = OrderedDict()
_layouts_lock = Lock()


def hf_layout(hub: Hub, version: ModelVersion) -> list[HfFile]:
    """The files of ``version`` as ``hub download`` writes them (:meth:`hub.files.Files.layout`), each
    plain git file with its git sha1; remembered per process by manifest digest (a version never changes).

    Raises:
        IntegrityError: a stored file is missing or corrupt.
    """
    key = (id(hub), version.digest)
    with _layouts_lock:
        if key in _layouts:
            _layouts.move_to_end(key)
            return _layouts[key]
    files = []
    for file in hub.files.layout(version):
        if not file.lfs and file.git_sha1 is None and file.blob is not None:
            try:
                file = file.with_git_sha1(hub.blobs.read_verified(file.blob, file.size))
            except IntegrityError as exc:
                raise IntegrityError(f"{version.ref}: file {file.path!r}: {exc}; run `hub verify`") from None
        files.append(file)
    with _layouts_lock:
        _layouts[key] = files
        while len(_layouts) > _LAYOUTS_KEPT:
            _layouts.popitem(last=False)
    return files


def error_response(error: HfError) -> Any:
    """The JSON answer for ``error``: ``{"error": detail}``, ``X-Error-Code``, ``X-Error-Message``, ``X-Repo-Commit``."""
    from fastapi.responses import JSONResponse

    headers = {"X-Error-Message": error.message.encode("ascii", "replace").decode()[:1000].replace("\n", " ")}
    if error.code:
        headers["X-Error-Code"] = error.code
    if error.commit:
        headers["X-Repo-Commit"] = error.commit
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": error.detail}, status_code=error.status, headers=headers)


def install_handler(app: Any) -> None:
    """Answer every :class:`HfError` a route raises with :func:`error_response`."""

    async def hf_error(request: Any, exc: HfError) -> Any:
        return error_response(exc)

    app.add_exception_handler(HfError, hf_error)
