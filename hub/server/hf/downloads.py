"""The Hugging Face Hub's download routes, so that huggingface_hub, transformers and sentence-transformers
read this hub with ``HF_ENDPOINT=<server>`` (docs/HF.md).

- ``HEAD|GET /{repo_id}/resolve/{revision}/{path}``: a file of the version (:func:`hub.server.hf.repos.hf_layout`),
  streamed from the store as ``GET /api/v1/blobs`` streams it (ranges, 206, 416), with ``X-Repo-Commit``, an
  ``ETag`` (an LFS file's sha256, a git file's git sha1) and for LFS files ``X-Linked-Etag``/``X-Linked-Size``.
- ``GET /api/models/{repo_id}[/revision/{revision}]``: the model's info (``sha``, ``siblings``, ``cardData``, ...).
- ``GET /api/models/{repo_id}/tree/{revision}[/{path}]``: the files and folders, ``recursive``, paged by ``Link``.
- ``GET /api/models/{repo_id}/refs``, ``GET /api/whoami-v2``, ``GET /api/models`` (a list, ``search``/``author``).

Nothing about Xet is ever sent: ``xet-read-token`` is a 404, so every client stays on plain HTTP.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import timezone
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.convertors import Convertor, register_url_convertor

from hub.access import ANONYMOUS
from hub.errors import InvalidArgumentError
from hub.server.blobs import BytesStore, blob_response
from hub.server.context import ServerContext, context
from hub.server.hf.repos import (DEFAULT_REVISION, ENTRY_NOT_FOUND, HfError, HfFile, commit_id, hf_layout, hf_principal,
                                 resolve_revision)

if TYPE_CHECKING:
    from datetime import datetime

    from hub.access import Principal
    from hub.entities import ModelVersion

__all__ = ["router", "model_info", "tree_entries", "iso_z"]


class _RepoConvertor(Convertor):
    """A repo id in a path: ``model`` or ``namespace/model`` (one slash at most)."""

    regex = "[^/]+(?:/[^/]+)?"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("hfrepo", _RepoConvertor())
router = APIRouter(tags=["huggingface"])
_LIST_LIMIT = 1000  # models in one page of GET /api/models
_FILE_RESPONSES: dict[str, Any] = {"response_class": Response, "responses": {
    200: {"content": {"application/octet-stream": {}}}, 206: {"description": "one range"},
    401: {"description": "RepoNotFound: a private model, anonymous"}, 404: {"description": "RepoNotFound, RevisionNotFound, EntryNotFound"},
    416: {"description": "the range is beyond the file"}}}


def iso_z(when: datetime) -> str:
    """``when`` in UTC as the Hugging Face Hub writes times: ``2026-12-01T09:30:00.000Z``."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _public(server: ServerContext, name: str) -> bool:
    return server.access.can_read(ANONYMOUS, name)


@router.get("/{repo_id:hfrepo}/resolve/{revision}/{path:path}", operation_id="hf_resolve", **_FILE_RESPONSES)
@router.head("/{repo_id:hfrepo}/resolve/{revision}/{path:path}", operation_id="hf_resolve_head", **_FILE_RESPONSES)
def resolve(repo_id: str, revision: str, path: str, request: Request, server: ServerContext = Depends(context),
            who: Principal = Depends(hf_principal)) -> Response:
    """A file of the version ``revision`` names, as ``hub download`` writes it; ``Range: bytes=a-b`` for one range."""
    version = resolve_revision(server, who, repo_id, revision)
    commit = commit_id(version)
    file = next((f for f in hf_layout(server.hub, version) if f.path == path), None)
    if file is None:
        raise HfError(404, ENTRY_NOT_FOUND, f"{version.ref} (commit {commit}) has no file {path!r}", commit=commit)
    headers = {"x-repo-commit": commit}
    if file.lfs:
        headers.update({"x-linked-etag": f'"{file.sha256}"', "x-linked-size": str(file.size)})
    store = server.hub.blobs if file.blob is not None else BytesStore(file.data or b"")
    return blob_response(request, store, file.blob or file.sha256, public=_public(server, version.name),
                         etag=file.sha256 if file.lfs else file.git_oid, headers=headers, immutable=revision == commit)


_CARDS: dict[str, dict[str, Any]] = {}  # a card's front matter by the sha256 of its README.md (content never changes)
_CARDS_KEPT = 4096


def _card(server: ServerContext, version: ModelVersion) -> dict[str, Any]:
    """The card's YAML front matter (as ``import_hf`` reads it), {} without a card or valid YAML; parsed
    once per card (by its blob's sha256), as YAML parsing is most of a model-info request's time."""
    from hub.huggingface import card_fields

    entry = next((f for f in version.files if f.path == "README.md"), None)
    if entry is None:
        return {}
    fields = _CARDS.get(entry.sha256)
    if fields is None:
        text = server.hub.files.read_card(version.ref)
        try:
            fields = card_fields(text) if text else {}
        except InvalidArgumentError:
            fields = {}
        if len(_CARDS) >= _CARDS_KEPT:
            _CARDS.clear()
        _CARDS[entry.sha256] = fields
    return copy.deepcopy(fields)


def _library(version: ModelVersion, card: dict[str, Any]) -> str | None:
    paths = {f.path for f in version.files}
    if "modules.json" in paths or "config_sentence_transformers.json" in paths:
        return "sentence-transformers"
    named = card.get("library_name") or version.metadata.get("library_name")
    if isinstance(named, str) and named:
        return named
    return "transformers" if isinstance(version.config.get("hf_config"), dict) else None


def _sibling(file: HfFile, *, blobs: bool) -> dict[str, Any]:
    if not blobs:
        return {"rfilename": file.path}
    entry: dict[str, Any] = {"rfilename": file.path, "size": file.size, "blobId": file.git_oid}
    if file.lfs:
        entry["lfs"] = {"sha256": file.sha256, "size": file.size, "pointerSize": len(file.lfs_pointer)}
    return entry


def model_info(server: ServerContext, version: ModelVersion, *, blobs: bool = False) -> dict[str, Any]:
    """What ``GET /api/models/{repo_id}`` answers for ``version`` (``blobs``: siblings with size, blobId, lfs).

    Raises:
        IntegrityError: a stored file is missing or corrupt.
    """
    files = hf_layout(server.hub, version)
    card = _card(server, version)
    library = _library(version, card)
    tags = [*version.tags, *(t for t in card.get("tags") or [] if isinstance(t, str))]
    tags += [library] if library else []
    tags += ["safetensors"] if any(f.path.endswith(".safetensors") for f in files) else []
    tags += [f"license:{version.license}"] if version.license else []
    first = server.hub.list_versions(version.name)[0]
    namespace = version.name.partition("/")[0] if "/" in version.name else None
    info: dict[str, Any] = {
        "_id": commit_id(first), "id": version.name, "modelId": version.name, "author": namespace,
        "sha": commit_id(version), "lastModified": iso_z(version.created_at), "createdAt": iso_z(first.created_at),
        "private": not _public(server, version.name), "gated": False, "disabled": False, "downloads": 0, "likes": 0,
        "library_name": library, "tags": list(dict.fromkeys(tags)), "pipeline_tag": version.task, "cardData": card,
        "siblings": [_sibling(f, blobs=blobs) for f in files], "usedStorage": sum(f.size for f in files),
    }
    hf_config = version.config.get("hf_config")
    if isinstance(hf_config, dict):
        info["config"] = {k: hf_config[k] for k in ("architectures", "model_type") if k in hf_config}
    return info


def _info_answer(server: ServerContext, who: Principal, repo_id: str, revision: str | None, request: Request) -> JSONResponse:
    version = resolve_revision(server, who, repo_id, revision)
    info = model_info(server, version, blobs=_flag(request.query_params.get("blobs")))
    expand = request.query_params.getlist("expand") or request.query_params.getlist("expand[]")
    if expand:
        info = {key: value for key, value in info.items() if key in ("_id", "id") or key in expand}
    return JSONResponse(info)


@router.get("/api/models/{repo_id:hfrepo}/revision/{revision:path}", operation_id="hf_model_info_revision")
def model_info_revision(repo_id: str, revision: str, request: Request, server: ServerContext = Depends(context),
                        who: Principal = Depends(hf_principal)) -> JSONResponse:
    """The model at ``revision`` (``main``, ``vN``, a commit id, an alias); ``?blobs=true``, ``?expand=``."""
    return _info_answer(server, who, repo_id, revision, request)


def tree_entries(files: list[HfFile], folder: str, *, recursive: bool) -> list[dict[str, Any]]:
    """The tree listing of ``folder`` ("" the top) among ``files``: its files and folders (``recursive``:
    everything below it), folders first at each level as git lists them, each folder with a stable ``oid``.

    Raises:
        HfError: 404 EntryNotFound: no such folder.
    """
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    below = [f for f in files if f.path.startswith(prefix)]
    if prefix and not below:
        raise HfError(404, ENTRY_NOT_FOUND, f"there is no folder {folder!r}")
    folders: dict[str, list[HfFile]] = {}
    for file in below:
        parts = file.path[len(prefix):].split("/")[:-1]
        for depth in range(1, len(parts) + 1 if recursive else min(1, len(parts)) + 1):
            folders.setdefault(prefix + "/".join(parts[:depth]), []).append(file)
    entries: list[dict[str, Any]] = []
    for path, inside in folders.items():
        oid = hashlib.sha1("".join(f"{f.path}\0{f.git_oid}\n" for f in inside).encode()).hexdigest()
        entries.append({"type": "directory", "oid": oid, "size": 0, "path": path})
    for file in below:
        if recursive or "/" not in file.path[len(prefix):]:
            entry: dict[str, Any] = {"type": "file", "oid": file.git_oid, "size": file.size, "path": file.path}
            if file.lfs:
                entry["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": len(file.lfs_pointer)}
            entries.append(entry)
    return sorted(entries, key=lambda e: (e["path"].count("/"), e["type"] != "directory", e["path"]))


def _tree_answer(server: ServerContext, who: Principal, repo_id: str, revision: str, path: str, request: Request) -> JSONResponse:
    from hub.settings import hf_tree_page_size

    version = resolve_revision(server, who, repo_id, revision)
    commit = commit_id(version)
    try:
        entries = tree_entries(hf_layout(server.hub, version), path, recursive=_flag(request.query_params.get("recursive")))
    except HfError as error:
        raise HfError(error.status, error.code, f"{version.ref} (commit {commit}): {error.message}", commit=commit) from None
    if _flag(request.query_params.get("expand")):
        last = {"id": commit, "title": f"{version.ref}", "date": iso_z(version.created_at)}
        entries = [{**entry, "lastCommit": last} for entry in entries]
    size, cursor = hf_tree_page_size(), request.query_params.get("cursor") or "0"
    start = int(cursor) if cursor.isdigit() else 0
    headers = {"x-repo-commit": commit}
    if start + size < len(entries):
        following = request.url.include_query_params(cursor=str(start + size))
        headers["link"] = f'<{following}>; rel="next"'
    return JSONResponse(entries[start:start + size], headers=headers)


@router.get("/api/models/{repo_id:hfrepo}/tree/{revision}", operation_id="hf_tree")
def tree(repo_id: str, revision: str, request: Request, server: ServerContext = Depends(context),
         who: Principal = Depends(hf_principal)) -> JSONResponse:
    """The top of the version's tree (``?recursive=true``: every file and folder), one page; ``Link`` names the next."""
    return _tree_answer(server, who, repo_id, revision, "", request)


@router.get("/api/models/{repo_id:hfrepo}/tree/{revision}/{path:path}", operation_id="hf_tree_path")
def tree_path(repo_id: str, revision: str, path: str, request: Request, server: ServerContext = Depends(context),
              who: Principal = Depends(hf_principal)) -> JSONResponse:
    """A folder of the version's tree, as :func:`tree` lists the top."""
    return _tree_answer(server, who, repo_id, revision, path, request)


@router.get("/api/models/{repo_id:hfrepo}/refs", operation_id="hf_refs")
def refs(repo_id: str, request: Request, server: ServerContext = Depends(context),
         who: Principal = Depends(hf_principal)) -> JSONResponse:
    """``main`` (the latest version) as the one branch; a tag per alias and per version (``v1``, ``v2``, ...)."""
    latest = resolve_revision(server, who, repo_id, DEFAULT_REVISION)
    versions = server.hub.list_versions(latest.name)

    def ref(name: str, kind: str, version: ModelVersion) -> dict[str, str]:
        return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": commit_id(version)}

    tags = [ref(alias, "tags", v) for v in versions for alias in sorted(v.aliases)]
    tags += [ref(f"v{v.version}", "tags", v) for v in versions]
    answer: dict[str, Any] = {"branches": [ref(DEFAULT_REVISION, "heads", latest)], "converts": [], "tags": tags}
    if _flag(request.query_params.get("include_prs")):
        answer["pullRequests"] = []
    return JSONResponse(answer)


@router.get("/api/models/{repo_id:hfrepo}/xet-read-token/{revision:path}", operation_id="hf_xet_read_token")
def xet_read_token(repo_id: str, revision: str) -> JSONResponse:
    """Always 404: this server has no Xet storage; every file is served over plain HTTP (``/resolve``)."""
    raise HfError(404, None, "this hub has no Xet storage: files are served by /{repo_id}/resolve/{revision}/{path}")


@router.get("/api/models/{repo_id:hfrepo}", operation_id="hf_model_info")
def model_info_latest(repo_id: str, request: Request, server: ServerContext = Depends(context),
                      who: Principal = Depends(hf_principal)) -> JSONResponse:
    """The model at ``main`` (its latest version): ``id``, ``sha``, ``siblings``, ``cardData``, ``tags``, ..."""
    return _info_answer(server, who, repo_id, None, request)


@router.get("/api/models", operation_id="hf_list_models")
def list_models(request: Request, search: str | None = None, author: str | None = None, limit: int | None = None,
                server: ServerContext = Depends(context), who: Principal = Depends(hf_principal)) -> JSONResponse:
    """The models the caller can read (``search`` in the name, ``author`` the namespace), a page of at most
    ``limit`` (or 1000), ``Link`` naming the next."""
    readable = server.access.read_filter(who)
    scope = {"readable": readable} if readable is not None else {}
    query = author.lower() + "/" if author else None
    start = int(request.query_params.get("cursor", "0")) if request.query_params.get("cursor", "0").isdigit() else 0
    size = max(1, min(limit or _LIST_LIMIT, _LIST_LIMIT))
    models = [m for m in server.hub.registry.list_models((search or "").lower() or None, limit=None, **scope)
              if m.latest_version is not None and (query is None or m.name.startswith(query))]
    page = [{"_id": m.name, "id": m.name, "modelId": m.name, "author": m.name.partition("/")[0] if "/" in m.name else None,
             "lastModified": iso_z(m.updated_at), "createdAt": iso_z(m.created_at), "private": not _public(server, m.name),
             "tags": list(m.tags), "pipeline_tag": m.task, "downloads": 0, "likes": 0}
            for m in models[start:start + size]]
    headers = {}
    if limit is None and start + size < len(models):
        headers["link"] = f'<{request.url.include_query_params(cursor=str(start + size))}>; rel="next"'
    return JSONResponse(page, headers=headers)


@router.get("/api/whoami-v2", operation_id="hf_whoami")
def whoami(server: ServerContext = Depends(context), who: Principal = Depends(hf_principal)) -> JSONResponse:
    """The token's user as the Hugging Face Hub describes one; 401 without a token."""
    if who.user is None:
        raise HfError(401, None, "send a token (HF_TOKEN, or Authorization: Bearer <token>) to be someone here")
    role = "read" if who.scope == "read" else "write"
    orgs = [{"type": "org", "name": ns.name} for ns in server.access.list_namespaces() if who.user in (*ns.owners, *ns.writers, *ns.readers)]
    return JSONResponse({"type": "user", "id": who.user, "name": who.user, "fullname": who.user, "isPro": False,
                         "orgs": orgs, "auth": {"type": "access_token",
                                                "accessToken": {"displayName": who.token_id or "token", "role": role}}})

