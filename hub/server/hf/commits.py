"""Hugging Face commits into ``hub serve``: ``POST /api/models/{repo_id}/commit/main``, one version each.

The body is NDJSON (what huggingface_hub sends): a ``header`` line (``summary``, ``description``,
``parentCommit``), then one line per operation: ``file`` (``path``, ``content`` base64), ``lfsFile``
(``path``, ``oid`` sha256, ``size``; uploaded first through :mod:`hub.server.hf.lfs`), ``deletedFile``,
``deletedFolder``. The JSON form (``summary``, ``files``, ``lfsFiles``, ``deletedFiles``, ``deletedFolders``)
is taken too. The new version is the latest version's files as Hugging Face clients see them
(:func:`hub.server.hf.repos.hf_layout`) with those changes, published as a Hugging Face folder is
(:func:`hub.huggingface.publish_hf_files`: the architecture from ``config.json``, the card's YAML,
``modelhub.json`` honoured) as the token's user; stored blobs are claimed, not copied. A
``parentCommit`` that is not main's, or a commit that another one overtook while it was made, is a 412.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.errors import HubError, InvalidArgumentError, ModelNotFoundError
from hub.files import HfFile
from hub.limits import loads
from hub.manifest import check_relative_path
from hub.server.context import ServerContext, context
from hub.server.hf.repos import DEFAULT_REVISION, ENTRY_NOT_FOUND, HfError, commit_id, hf_layout, hf_principal, model_name
from hub.server.uploads import check_digest
from hub.settings import acting_as

__all__ = ["router", "hf_errors", "base_url", "require_main", "latest_version", "MAX_COMMIT_BYTES"]

router = APIRouter(tags=["huggingface"])
MAX_COMMIT_BYTES = 256 * 1024 * 1024  # a commit's NDJSON body (regular files travel in it, base64)


@contextmanager
def hf_errors() -> Iterator[None]:
    """Inside, a hub error is answered as the Hugging Face Hub words a failure (:meth:`HfError.of`)."""
    try:
        yield
    except HubError as error:
        raise HfError.of(error) from None


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def require_main(revision: str | None, create_pr: str | None) -> None:
    """Only ``main`` takes commits.

    Raises:
        HfError: 400 for another revision or a pull request.
    """
    if create_pr not in (None, "", "0", "false"):
        raise HfError(400, None, "pull requests are not supported here: commit to main (create_pr=False)")
    if revision not in (None, "", DEFAULT_REVISION):
        raise HfError(400, None, f"only main takes commits (a commit to main publishes the next version), not {revision!r}; "
                                 "aliases move with `hub tag NAME:N ALIAS`")


def latest_version(server: ServerContext, name: str) -> Any:
    """The model's latest live version, or None when it has none."""
    try:
        return server.hub.info(name)
    except ModelNotFoundError:
        return None


async def _read_body(request: Request) -> bytes:
    """The request body, at most :data:`MAX_COMMIT_BYTES`.

    Raises:
        HfError: 413, a larger body.
    """
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_COMMIT_BYTES:
            raise HfError(413, None, f"a commit's body may be at most {MAX_COMMIT_BYTES // 2**20} MiB; send large files "
                                     "through LFS (the client does for files of 10 MB and weights)")
        parts.append(chunk)
    return b"".join(parts)


def _operations(raw: bytes, content_type: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """A commit's header and operations, from its NDJSON (or JSON) body.

    Raises:
        InvalidArgumentError: a body that is not a commit.
    """
    try:
        if "ndjson" in content_type or raw.lstrip().startswith(b'{"key"'):
            items = [loads(line) for line in raw.splitlines() if line.strip()]
        else:  # the JSON form: {"summary", "description", "files", "lfsFiles", "deletedFiles", "deletedFolders"}
            body = loads(raw)
            keys = {"files": "file", "lfsFiles": "lfsFile", "deletedFiles": "deletedFile", "deletedFolders": "deletedFolder"}
            items = [{"key": "header", "value": {k: body.get(k) for k in ("summary", "description", "parentCommit")}}]
            items += [{"key": key, "value": value} for field, key in keys.items() for value in body.get(field) or []]
    except (ValueError, RecursionError, AttributeError) as exc:
        raise InvalidArgumentError(f"the commit body is not NDJSON of {{\"key\", \"value\"}} lines ({str(exc)[:200]})") from None
    if not items or not all(isinstance(i, dict) and isinstance(i.get("value"), dict) for i in items) or items[0].get("key") != "header":
        raise InvalidArgumentError('a commit is NDJSON: first {"key": "header", "value": {"summary": ...}}, then one line per operation')
    operations = [(item.get("key"), item["value"]) for item in items[1:]]
    for key, value in operations:
        if key not in ("file", "lfsFile", "deletedFile", "deletedFolder") or not isinstance(value.get("path"), str):
            raise InvalidArgumentError(f"commit operation {key!r} is not one of file, lfsFile, deletedFile, deletedFolder "
                                       "with a path")
    return items[0]["value"], operations


def _apply(files: dict[str, Any], operations: list[tuple[str, dict[str, Any]]], server: ServerContext) -> dict[str, Any]:
    """``files`` (``{path: HfFile or (sha256, size) or bytes}``) with the commit's operations applied.

    Raises:
        HfError: 404 EntryNotFound: a file or folder to delete is not there; 400 an lfsFile not uploaded.
        InvalidArgumentError, UnsafeFormatError: bad content or path.
    """
    missing = []
    for key, value in operations:
        path = value["path"].strip("/") if key == "deletedFolder" else value["path"]
        check_relative_path(path)
        if key == "file":
            if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
                raise InvalidArgumentError(f"file {path}: content must be base64 text (encoding base64)")
            try:
                files[path] = base64.b64decode(value["content"], validate=True)
            except binascii.Error:
                raise InvalidArgumentError(f"file {path}: its content is not base64") from None
        elif key == "lfsFile":
            oid, size = value.get("oid"), value.get("size")
            if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str):
                raise InvalidArgumentError(f"lfsFile {path}: give its sha256 as oid (algo sha256)")
            held = server.hub.blobs.size(check_digest(oid))
            if held is None or (size is not None and held != size):
                missing.append(f"{path} (sha256 {oid}, {size} bytes)")
            files[path] = (oid, held)
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HfError(404, ENTRY_NOT_FOUND, f"can't delete {path}: the model's latest version has no such file")
        else:
            gone = [p for p in files if p.startswith(path + "/")]
            if not gone:
                raise HfError(404, ENTRY_NOT_FOUND, f"can't delete folder {path}: the model's latest version has no files there")
            for p in gone:
                del files[p]
    if missing:
        raise HfError(400, None, f"these LFS files were not uploaded: {', '.join(missing)}; upload them through the LFS batch "
                                 "API first (the client does), then commit")
    return files


def _stage(server: ServerContext, files: dict[str, Any], folder: Path) -> tuple[dict[str, Path], dict[str, tuple[str, int]]]:
    """The files as a folder: stored blobs linked (claimed by the publish, never copied), held bytes written.

    Returns:
        ``({path: file in folder}, {path: (sha256, size)} of the stored ones)``.
    """
    local, stored = {}, {}
    for path, file in files.items():
        if isinstance(file, HfFile):
            file = file.data if file.blob is None else (file.blob, file.size)
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(file, bytes):
            target.write_bytes(file)
        else:
            blob = server.hub.blobs.local_path(file[0])
            if blob is not None:
                os.symlink(blob, target)
            else:
                server.hub.blobs.copy_to(file[0], target, size=file[1])
            stored[path] = file
        local[path] = target
    return local, stored


def _fence(base: Any) -> Any:
    """A check run as the version is reserved: no other version came after ``base`` meanwhile."""
    def check(session: Any) -> None:
        from sqlalchemy import text

        newer = session.execute(text(
            "SELECT COUNT(*) FROM model_versions v JOIN registered_models m ON m.id = v.model_id "
            "WHERE m.name = :name AND v.deleted_at_ms IS NULL AND v.version > :base"),
            {"name": base[0], "base": base[1]}).scalar()
        if newer != 1:
            raise HfError(412, None, f"main of {base[0]} moved while this commit was made (another commit came first); "
                                     "commit again on top of it")
    return check


def _commit(server: ServerContext, who: Any, name: str, header: dict[str, Any], operations: list[tuple[str, dict[str, Any]]],
            base_url: str) -> dict[str, Any]:
    from hub.huggingface import publish_hf_files
    from hub.publishing import LocalFiles

    server.access.require_write(who, name)
    latest = latest_version(server, name)
    parent = header.get("parentCommit")
    if parent is not None and (not isinstance(parent, str) or latest is None or len(parent) < 7
                               or not commit_id(latest).startswith(parent.lower())):
        now = commit_id(latest) if latest is not None else "nothing (no versions yet)"
        raise HfError(412, None, f"parentCommit {str(parent)[:40]} is not main of {name}, which is at {now}: another commit "
                                 "moved main; commit again on top of it")
    files: dict[str, Any] = {f.path: f for f in hf_layout(server.hub, latest)} if latest is not None else {}
    files = _apply(files, operations, server)
    summary, description = header.get("summary"), header.get("description")
    metadata = {"source": "huggingface commit", **({"commit_summary": summary[:1000]} if isinstance(summary, str) and summary else {}),
                **({"commit_description": description[:10000]} if isinstance(description, str) and description else {})}
    with tempfile.TemporaryDirectory(prefix="hub-hf-commit-") as folder, acting_as(who.user):
        local, stored = _stage(server, files, Path(folder))
        version = publish_hf_files(server.hub, LocalFiles(local, f"the commit to {name}", stored), name, metadata=metadata,
                                   _fence=_fence((name, latest.version if latest is not None else 0)))
    return {"commitUrl": f"{base_url}/{name}/commit/{commit_id(version)}", "commitOid": commit_id(version),
            "pullRequestUrl": None}


@router.post("/api/models/{repo_id:path}/commit/{revision}",
             openapi_extra={"requestBody": {"required": True, "content": {"application/x-ndjson": {}}}},
             responses={200: {"description": '{"commitUrl", "commitOid", "pullRequestUrl": null}'},
                        412: {"description": "parentCommit is not main's"}})
async def commit(repo_id: str, revision: str, request: Request, create_pr: str | None = None,
                 server: ServerContext = Depends(context), who: Any = Depends(hf_principal)) -> JSONResponse:
    """Publish the latest version's files with the commit's changes as the next version (as its token's user)."""
    with hf_errors():
        name = model_name(repo_id)
        require_main(revision, create_pr)
        header, operations = _operations(await _read_body(request), request.headers.get("content-type", ""))
        answer = await run_in_threadpool(_commit, server, who, name, header, operations, base_url(request))
    return JSONResponse(answer)
