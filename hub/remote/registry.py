"""The registry of a remote hub: :class:`hub.registry.RegistryStore`'s reads and alias writes, over HTTP.

Version records are immutable, so each one read (``name:N``) is kept as JSON under
``HUB_HOME/remote/<host_port>/versions/``, with the version each alias (and ``latest``) was last
seen to name under ``.../aliases/``: a second read of ``name:N`` asks the server nothing, and
``HUB_OFFLINE=1`` answers pinned versions and last-seen aliases from there alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hub.entities import AliasChange, ModelSummary, ModelVersion
from hub.errors import ModelNotFoundError, OfflineError, RemoteError
from hub.reference import LATEST, Reference, folder_name
from hub.remote.client import API, Client, endpoint_folder
from hub.storage.base import temp_file

__all__ = ["RemoteRegistry"]

_T = TypeVar("_T")
_PAGE = 1000  # the most models one page of GET /models holds


def _record(make: Callable[[Any], _T], value: Any, what: str) -> _T:
    try:
        return make(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RemoteError(f"{what}: the server answered a record this client can't read ({exc}); "
                          "check HUB_ENDPOINT, or update modelhub to the server's version") from None


def _keep(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (a reader sees the old text or
    the new), unless it holds that already: a warm load by alias rewrites nothing. Not fsynced: a
    record lost in a crash is asked of the server again."""
    try:
        if path.read_text() == text:
            return
    except (FileNotFoundError, UnicodeDecodeError):
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = temp_file(path.parent)
    try:
        with open(fd, "w") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _path(name: str) -> str:
    return f"{API}/models/{name}"


class RemoteRegistry:
    """A hub server's registry, read and written through its API, with the version cache.

    Args:
        client: the server's :class:`~hub.remote.client.Client`.
        cache: the cache folder (``HUB_HOME``); records go under ``remote/<host_port>/``.
    """

    def __init__(self, client: Client, cache: Path) -> None:
        self.client = client
        self.folder = cache / "remote" / endpoint_folder(client.endpoint)

    def __repr__(self) -> str:
        return f"RemoteRegistry({self.client.endpoint!r})"

    # --- the cache of records ------------------------------------------------------

    def _version_file(self, name: str, number: int) -> Path:
        return self.folder / "versions" / folder_name(name) / f"{number}.json"

    def _alias_file(self, name: str, alias: str) -> Path:
        return self.folder / "aliases" / folder_name(name) / f"{alias}.json"

    def cached_version(self, name: str, number: int) -> ModelVersion | None:
        """The record of ``name:number`` as last read, or None when it was never read here."""
        try:
            return ModelVersion.from_dict(json.loads(self._version_file(name, number).read_text()))
        except (OSError, ValueError):  # not there, or half a record a killed process left: ask again
            return None

    def cached_versions(self) -> list[ModelVersion]:
        """Every version record in the cache for this endpoint."""
        found = []
        for path in sorted((self.folder / "versions").glob("*/*.json")):
            try:
                found.append(ModelVersion.from_dict(json.loads(path.read_text())))
            except (OSError, ValueError):
                continue
        return found

    def remember(self, version: ModelVersion, alias: str | None = None) -> ModelVersion:
        """Keep ``version``'s record (and that ``alias`` names it) in the cache; return it."""
        try:
            _keep(self._version_file(version.name, version.version), json.dumps(version.to_dict(), sort_keys=True))
            if alias is not None:
                _keep(self._alias_file(version.name, alias), json.dumps({"version": version.version}))
        except OSError:  # a cache that can't be written is no cache: the answer stands
            pass
        return version

    def forget_alias(self, name: str, alias: str) -> None:
        """Drop the last-seen target of ``name@alias`` (it moved or was removed)."""
        self._alias_file(name, alias).unlink(missing_ok=True)

    def _last_seen(self, name: str, alias: str) -> ModelVersion | None:
        try:
            number = json.loads(self._alias_file(name, alias).read_text())["version"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return self.cached_version(name, number) if isinstance(number, int) else None

    # --- reads ----------------------------------------------------------------------

    def _version(self, path: str, what: str) -> ModelVersion:
        return _record(ModelVersion.from_dict, self.client.json("GET", path, what=what), what)

    def resolve(self, ref: Reference) -> ModelVersion:
        """The version ``ref`` names: ``name:N`` from the cache when it was read before, else the server.

        Raises:
            ModelNotFoundError (VersionNotFoundError, AliasNotFoundError): none such, or not readable with this token.
            OfflineError: ``HUB_OFFLINE=1`` and the cache does not hold it.
        """
        name = ref.name
        if ref.version is not None:
            cached = self.cached_version(name, ref.version)
            if cached is not None:
                return cached
            if self.client.offline:
                raise OfflineError(f"HUB_OFFLINE=1 and {ref} is not in the cache at {self.folder}; "
                                   f"load {ref} once online (pinned versions and last-seen aliases load offline)")
            return self.remember(self._version(f"{_path(name)}/-/versions/{ref.version}", f"reading {ref}"))
        alias = ref.alias if ref.alias is not None else LATEST
        if self.client.offline:
            seen = self._last_seen(name, alias)
            if seen is None:
                raise OfflineError(f"HUB_OFFLINE=1 and {ref} was never loaded here, so the cache at {self.folder} does not "
                                   f"know which version it names; load {ref} once online, or a pinned version (name:N)")
            return seen
        route = f"{_path(name)}/-/latest" if ref.alias is None else f"{_path(name)}/-/aliases/{ref.alias}"
        return self.remember(self._version(route, f"reading {ref}"), alias)

    def list_versions(self, name: str) -> list[ModelVersion]:
        what = f"listing the versions of {name}"
        answer = self.client.json("GET", f"{_path(name)}/-/versions", what=what)
        return [_record(ModelVersion.from_dict, item, what) for item in _list(answer, what)]

    def all_versions(self) -> list[ModelVersion]:
        return [v for model in self.list_models(limit=None) for v in self.list_versions(model.name)]

    def _models_page(self, params: dict[str, Any]) -> dict[str, Any]:
        what = "listing models"
        answer = self.client.json("GET", f"{API}/models", what=what, params={k: v for k, v in params.items() if v is not None})
        if not isinstance(answer, dict) or not isinstance(answer.get("models"), list):
            raise RemoteError(f"{what}: the server's answer has no list of models; check HUB_ENDPOINT")
        return answer

    def list_models(self, search: str | None = None, *, task: str | None = None, tag: str | None = None,
                    license: str | None = None, sort: str = "name", limit: int | None = 50, offset: int = 0) -> list[ModelSummary]:
        params: dict[str, Any] = {"search": search, "task": task, "tag": tag, "license": license, "sort": sort}
        found: list[ModelSummary] = []
        while limit is None or len(found) < limit:
            page = _PAGE if limit is None else min(_PAGE, limit - len(found))
            if page == 0:
                break
            answer = self._models_page({**params, "limit": page, "offset": offset + len(found)})
            models = [_record(ModelSummary.from_dict, item, "listing models") for item in answer["models"]]
            found += models
            if len(models) < page:
                break
        return found

    def count_models(self, search: str | None = None, *, task: str | None = None, tag: str | None = None,
                     license: str | None = None) -> int:
        answer = self._models_page({"search": search, "task": task, "tag": tag, "license": license, "limit": 1})
        total = answer.get("total")
        if not isinstance(total, int):
            raise RemoteError("counting models: the server's answer has no total; check HUB_ENDPOINT")
        return total

    def model_facets(self) -> dict[str, list[str]]:
        answer = self.client.json("GET", f"{API}/facets", what="reading the facets")
        if not isinstance(answer, dict):
            raise RemoteError("reading the facets: the server's answer is not an object; check HUB_ENDPOINT")
        return {key: list(answer.get(key) or []) for key in ("task", "tag", "license")}

    def list_children(self, ref: str) -> list[ModelVersion]:
        name, _, number = ref.rpartition(":")
        what = f"listing the children of {ref}"
        answer = self.client.json("GET", f"{_path(name)}/-/versions/{number}/children", what=what)
        return [_record(ModelVersion.from_dict, item, what) for item in _list(answer, what)]

    def alias_history(self, name: str, alias: str) -> list[AliasChange]:
        what = f"reading the history of {name}@{alias}"
        answer = self.client.json("GET", f"{_path(name)}/-/aliases/{alias}/history", what=what)
        return [_record(AliasChange.from_dict, item, what) for item in _list(answer, what)]

    def version_exists(self, name: str, version: int) -> bool:
        if self.cached_version(name, version) is not None:
            return True
        try:
            self.resolve(Reference(name, version=version))
            return True
        except ModelNotFoundError:
            return False

    # --- writes (the server records the token's user) ---------------------------------

    def _change(self, answer: Any, what: str) -> AliasChange | None:
        change = answer.get("change") if isinstance(answer, dict) else None
        return None if change is None else _record(AliasChange.from_dict, change, what)

    def set_alias(self, name: str, alias: str, version: int) -> AliasChange | None:
        """Point ``name@alias`` at ``version`` on the server; the change, or None if it pointed there."""
        what = f"setting {name}@{alias} -> {version}"
        change = self._change(self.client.json("PUT", f"{_path(name)}/-/aliases/{alias}", what=what, json={"version": version}), what)
        cached = self.cached_version(name, version)
        if cached is not None:
            self.remember(cached, alias)
        else:
            self.forget_alias(name, alias)
        return change

    def delete_alias(self, name: str, alias: str) -> AliasChange:
        """Remove ``name@alias`` on the server; the change."""
        what = f"removing {name}@{alias}"
        change = self._change(self.client.json("DELETE", f"{_path(name)}/-/aliases/{alias}", what=what), what)
        self.forget_alias(name, alias)
        if change is None:
            raise RemoteError(f"{what}: the server answered no change; check HUB_ENDPOINT")
        return change

    def delete_version(self, name: str, version: int) -> list[AliasChange]:
        """Delete ``name:version`` on the server; the alias changes it made."""
        what = f"deleting {name}:{version}"
        answer = self.client.json("DELETE", f"{_path(name)}/-/versions/{version}", what=what)
        changes = answer.get("changes") if isinstance(answer, dict) else None
        self._version_file(name, version).unlink(missing_ok=True)
        for change in _list(changes, what):
            if isinstance(change, dict) and isinstance(change.get("alias"), str):
                self.forget_alias(name, change["alias"])
        self.forget_alias(name, LATEST)
        return [_record(AliasChange.from_dict, item, what) for item in changes]


def _list(answer: Any, what: str) -> list[Any]:
    if not isinstance(answer, list):
        raise RemoteError(f"{what}: the server's answer is not a list; check HUB_ENDPOINT")
    return answer
