"""``RemoteHub``: the :class:`hub.Hub` API against a hub server (``HUB_ENDPOINT``), with ``HUB_HOME`` as its cache.

The same facade and services as a local hub; the registry is the server's (:class:`RemoteRegistry`),
the store is the local cache (:class:`CacheStore`, which fetches what it lacks), and the services
differ where a remote hub does: the commit of a publish uploads (:class:`RemotePublisher`), alias
moves and deletions are the server's alone (:class:`RemoteAliases`), and the maintenance commands
look after the cache or say that they run on the server (:class:`RemoteMaintenance`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from hub import settings
from hub.aliases import Aliases
from hub.api import Hub
from hub.catalog import Catalog
from hub.entities import AliasChange, GcReport, ModelVersion, ReindexReport, VerifyReport
from hub.errors import InvalidArgumentError, RemoteError
from hub.files import Files
from hub.reference import parse_reference, validate_alias, validate_name, validate_version
from hub.remote.cache import CacheStore
from hub.remote.client import Client
from hub.remote.exports import RemoteExports
from hub.remote.publisher import RemotePublisher
from hub.remote.registry import RemoteRegistry

__all__ = ["RemoteHub"]


class RemoteCatalog(Catalog):
    """Reads, with the blobs a load needs fetched into the cache first, all at once."""

    def fetch(self, version: ModelVersion, paths: Iterable[str] | None = None) -> None:
        """Fetch the blobs of ``version``'s files (``paths``, default all) that the cache lacks, in parallel.

        Raises:
            IntegrityError, OfflineError, RemoteError: see :meth:`CacheStore.fetch`.
        """
        wanted = set(paths) if paths is not None else None
        self.hub.blobs.fetch([(f.sha256, f.size) for f in version.files if wanted is None or f.path in wanted])


class RemoteAliases(Aliases):
    """Alias moves and deletions, made by the server (in the token's name); nothing is written locally
    but the cache's note of where an alias points."""

    def set_alias(self, name: str, alias: str, version: int) -> AliasChange | None:
        validate_name(name)
        validate_alias(alias)
        return self.hub.registry.set_alias(name, alias, validate_version(version))

    set_alias.__doc__ = Aliases.set_alias.__doc__

    def write_alias(self, name: str, alias: str, version: int | None) -> None:
        """Nothing: a remote hub's pointers are the server's."""

    def delete_alias(self, name: str, alias: str) -> AliasChange:
        return self.hub.registry.delete_alias(validate_name(name), validate_alias(alias))

    delete_alias.__doc__ = Aliases.delete_alias.__doc__

    def delete_version(self, ref: str) -> ModelVersion:
        parsed = parse_reference(ref)
        if parsed.version is None:
            raise InvalidArgumentError(f"delete needs an explicit version like '{parsed.name}:3', not {ref!r}")
        version = self.hub.registry.resolve(parsed)
        self.hub.registry.delete_version(parsed.name, parsed.version)
        return version

    delete_version.__doc__ = Aliases.delete_version.__doc__


class RemoteMaintenance:
    """``verify`` of the local cache; ``gc``, ``reindex`` and the schema are the server's business.

    Args:
        hub: the :class:`RemoteHub`.
    """

    def __init__(self, hub: RemoteHub) -> None:
        self.hub = hub

    def check_exists(self, *, registry: bool = True, store: bool = False) -> None:
        """Make sure the hub server answers (``GET /healthz``); with ``HUB_OFFLINE=1``, nothing to check.

        Raises:
            RemoteError: it can't be reached, or is no hub server.
        """
        if self.hub.client.offline:
            return
        answer = self.hub.client.json("GET", "/healthz", what="asking the hub server whether it is up")
        if not (isinstance(answer, dict) and answer.get("status") == "ok"):
            raise RemoteError(f"HUB_ENDPOINT={self.hub.client.endpoint} answered /healthz with {str(answer)[:100]!r}, "
                              "not a hub server's 'ok'; check HUB_ENDPOINT")

    def verify(self, ref: str | None = None, *, min_age_seconds: float = settings.GC_MIN_AGE_S) -> VerifyReport:
        """Check the local cache: each cached blob of each cached version (or of ``ref``) against its
        size and sha256. Blobs not cached are no problem (they are fetched when needed); partial
        downloads older than ``min_age_seconds`` are the leftovers. The server's store is checked by
        ``hub verify`` on the server.

        Raises:
            InvalidArgumentError: a negative ``min_age_seconds``; see :meth:`info` for a bad ``ref``.
        """
        if not min_age_seconds >= 0:
            raise InvalidArgumentError(f"min_age_seconds must be >= 0, got {min_age_seconds}").about("min_age_seconds")
        blobs = self.hub.blobs
        versions = [self.hub.info(ref)] if ref is not None else self.hub.registry.cached_versions()
        checked, problems = [], []
        for version in versions:
            checked.append(version.ref)
            for entry in version.files:
                if blobs.cached(entry.sha256):
                    problem = blobs.cached_problem(entry.sha256, entry.size, check_hash=True)
                    if problem:
                        problems.append(f"{version.ref}: file {entry.path!r}: {problem} (in the cache: delete it there, "
                                        "it is fetched again)")
        now, leftovers = time.time(), []
        if ref is None and blobs.partials.is_dir():
            for entry in os.scandir(blobs.partials):
                if now - entry.stat().st_mtime >= min_age_seconds:
                    leftovers.append(entry.path)
        return VerifyReport(tuple(checked), tuple(problems), tuple(sorted(leftovers)))

    def _on_server(self, command: str) -> RemoteError:
        return RemoteError(f"`hub {command}` runs on the hub server (HUB_ENDPOINT={self.hub.client.endpoint}), not on a client; "
                           f"run it there (this client's cache at {self.hub.home} can be removed whole)")

    def gc(self, *, min_age_seconds: float = settings.GC_MIN_AGE_S, dry_run: bool = False) -> GcReport:
        """Refused: the server collects its store's garbage (``hub gc`` there).

        Raises:
            RemoteError: always, saying so.
        """
        raise self._on_server("gc")

    def reindex(self, *, dry_run: bool = False, force: bool = False) -> ReindexReport:
        """Refused: the server rebuilds its registry (``hub reindex`` there).

        Raises:
            RemoteError: always, saying so.
        """
        raise self._on_server("reindex")

    def upgrade_db(self) -> str:
        """Refused: the server migrates its registry (``hub db upgrade`` there).

        Raises:
            RemoteError: always, saying so.
        """
        raise self._on_server("db upgrade")


class RemoteHub(Hub):
    """A hub served by ``hub serve``, with a local cache.

    Args:
        endpoint: the server's URL (default ``$HUB_ENDPOINT``).
        token: the API token (default ``$HUB_TOKEN``; None: anonymous, public models only).
        home: the cache folder (default ``$HUB_HOME`` or ``~/.cache/modelhub``).
        offline: read the cache alone (default ``$HUB_OFFLINE``).

    Raises:
        InvalidArgumentError: no endpoint given or set.
    """

    def __init__(self, endpoint: str | None = None, token: str | None = None, *, home: str | os.PathLike[str] | None = None,
                 offline: bool | None = None) -> None:
        endpoint = (endpoint or "").rstrip("/") or settings.endpoint()
        if not endpoint:
            raise InvalidArgumentError("a remote hub needs the server's URL: set HUB_ENDPOINT (e.g. http://hub.example:8000)")
        self.home = settings.hub_home(home)
        self.endpoint = endpoint
        self.client = Client(endpoint, token if token is not None else settings.token(),
                             offline=settings.offline() if offline is None else offline)
        self.blobs: Any = CacheStore(self.home, self.client)
        self.registry: Any = RemoteRegistry(self.client, self.home)
        self.catalog, self.publisher, self.aliases = RemoteCatalog(self), RemotePublisher(self), RemoteAliases(self)
        self.files, self.maintenance = Files(self), RemoteMaintenance(self)
        self.exports = RemoteExports(self)

    def __repr__(self) -> str:
        return f"RemoteHub(endpoint={self.endpoint!r}, home={str(self.home)!r})"

    def close(self) -> None:
        """Close the connections to the server."""
        self.client.close()

    def whoami(self) -> dict[str, Any]:
        """Who the server takes this client for: ``{"user", "scope", "namespace"}`` (None each when anonymous).

        Raises:
            AuthenticationError: the token is unknown, expired or revoked.
        """
        return self.client.json("GET", "/api/v1/whoami", what="asking the server who this token is")
