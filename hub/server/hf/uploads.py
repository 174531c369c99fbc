"""Hugging Face uploads into ``hub serve``: create a repo, preupload, validate a card's YAML; the LFS and commit routes.

What ``HfApi.create_repo``, ``upload_folder``, ``create_commit`` and ``push_to_hub`` call, with
``HF_ENDPOINT`` the server and ``HF_TOKEN`` a write token (``HF_HUB_DISABLE_XET=1`` where ``hf_xet``
is installed):

- ``POST /api/repos/create``: checks write permission on the name; a model records nothing until its
  first commit (modelhub has no empty models). ``409`` with ``url`` once the model has versions.
- ``POST /api/models/{repo_id}/preupload/{revision}``: each file is ``lfs`` or ``regular`` by the rule
  of :attr:`hub.files.HfFile.lfs`; a file the latest version holds at that path gets its ``oid``, so
  the client leaves out what did not change.
- The LFS batch API and the upload targets: :mod:`hub.server.hf.lfs`.
- ``POST /api/models/{repo_id}/commit/main``, the next version: :mod:`hub.server.hf.commits`.
- ``POST /api/validate-yaml``: the card's front matter parsed as ``import_hf`` reads it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from hub.errors import InvalidArgumentError, PermissionDeniedError
from hub.files import HfFile
from hub.server.context import ServerContext, context, json_body
from hub.server.hf import commits, lfs
from hub.server.hf.commits import base_url, hf_errors, latest_version, require_main
from hub.server.hf.repos import commit_id, hf_layout, hf_principal, model_name

__all__ = ["router"]

router = APIRouter(tags=["huggingface"])
router.include_router(lfs.router)
router.include_router(commits.router)


@router.post("/api/repos/create", responses={200: {"description": '{"url": "<endpoint>/<repo_id>"}'},
                                            409: {"description": "the model has versions (the body still has url)"}})
def create_repo(request: Request, body: Any = Depends(json_body), server: ServerContext = Depends(context),
                who: Any = Depends(hf_principal)) -> JSONResponse:
    """Check that the caller may write the model and set its visibility if asked (and allowed); nothing
    else is recorded until its first commit."""
    with hf_errors():
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise InvalidArgumentError('the body must be {"name": "<model>", "organization": "<namespace>" or null, "type": "model"}')
        if body.get("type") not in (None, "model"):
            raise InvalidArgumentError(f"this hub holds models, not {body.get('type')}s: create a repo of type model")
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        name = model_name(repo_id)
        server.access.require_write(who, name)
        url = f"{base_url(request)}/{repo_id}"
        if latest_version(server, name) is not None:
            return JSONResponse({"url": url, "error": f"{name} already exists (it has versions)"}, status_code=409)
        visibility = body.get("visibility") or {True: "private", False: "public"}.get(body.get("private"))  # type: ignore[call-overload]
        headers = {}
        if visibility in ("private", "public"):
            if _may_set_visibility(server, who, name):
                server.access.set_visibility(name, visibility, kind="model")
            else:
                headers["X-HF-Warning"] = (f"visibility; {name} keeps its namespace's visibility: only an owner of the "
                                           "namespace or an admin sets a model's (hub visibility)")
        return JSONResponse({"url": url, "name": repo_id}, headers=headers)


def _may_set_visibility(server: ServerContext, who: Any, name: str) -> bool:
    """Admins, and owners of the model's namespace, set its visibility."""
    from hub.errors import AuthenticationError, NamespaceNotFoundError

    namespace = name.split("/")[0] if "/" in name else None
    try:
        server.access.require_admin(who, namespace)
        return True
    except (AuthenticationError, PermissionDeniedError):
        pass
    if namespace is None:
        return False
    try:
        return who.user in server.access.get_namespace(namespace).owners
    except NamespaceNotFoundError:
        return False


def _remote_oid(existing: HfFile | None, lfs_mode: bool) -> str | None:
    """What the client compares with its file's oid: the sha256 (LFS) or the git sha1 (regular) of the
    file the latest version holds at that path, when it is of the same kind."""
    if existing is None or existing.lfs != lfs_mode:
        return None
    return existing.sha256 if lfs_mode else existing.git_oid


@router.post("/api/models/{repo_id:path}/preupload/{revision}",
             responses={200: {"description": '{"files": [{"path", "uploadMode": "lfs"|"regular", "shouldIgnore", "oid"}]}'}})
def preupload(repo_id: str, revision: str, create_pr: str | None = None, body: Any = Depends(json_body),
              server: ServerContext = Depends(context), who: Any = Depends(hf_principal)) -> JSONResponse:
    """How each file is to be sent (LFS or in the commit), and the oid of the file the latest version holds there."""
    with hf_errors():
        name = model_name(repo_id)
        require_main(revision, create_pr)
        files = body.get("files") if isinstance(body, dict) else None
        if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str)
                                                  and type(f.get("size")) is int and f["size"] >= 0 for f in files):
            raise InvalidArgumentError('the body must be {"files": [{"path": "...", "size": <bytes>, "sample": "<base64>"}, ...]}')
        server.access.require_write(who, name)
        latest = latest_version(server, name)
        held = {f.path: f for f in hf_layout(server.hub, latest)} if latest is not None else {}
        answered = []
        for file in files:
            lfs_mode = HfFile(file["path"], file["size"], "", None).lfs
            answered.append({"path": file["path"], "uploadMode": "lfs" if lfs_mode else "regular", "shouldIgnore": False,
                             "oid": _remote_oid(held.get(file["path"]), lfs_mode)})
        return JSONResponse({"files": answered, "commitOid": commit_id(latest) if latest is not None else None})


@router.post("/api/validate-yaml", responses={200: {"description": '{"errors": [], "warnings": []}'},
                                             400: {"description": '{"errors": [{"message"}]}: the YAML does not parse'}})
def validate_yaml(body: Any = Depends(json_body)) -> JSONResponse:
    """Parse a card's YAML front matter as the hub reads it (``import_hf``, a commit's ``README.md``)."""
    from hub.huggingface import card_fields

    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, str):
        return JSONResponse({"errors": [{"message": 'the body must be {"content": "<README.md text>", "repoType": "model"}'}],
                             "error": "no content"}, status_code=400)
    try:
        card_fields(content)
    except InvalidArgumentError as error:
        return JSONResponse({"errors": [{"message": str(error)}], "error": str(error)}, status_code=400)
    return JSONResponse({"errors": [], "warnings": []})
