"""Who may infer on which model: the hub's own tokens and read permissions.

- A local hub (``HUB_HOME``, ``HUB_REGISTRY_URL``): ``Authorization: Bearer <token>`` is checked
  with :class:`hub.access.Access` over the hub's registry, as ``hub serve`` checks it: no header is
  anonymous, who infers on models anonymous may read (every model, while the hub has no authentication
  configured at all: such a server listens on loopback only, as ``hub ui`` does); a private model needs a token that reads
  it; a bad token is a 401 (slowed after repeated failures, :class:`hub.access.Throttle`).
- A remote hub (``HUB_ENDPOINT``): the server loads models with its own ``HUB_TOKEN``, and asks the
  hub server whether each caller may read the model, sending the caller's own ``Authorization`` to
  ``GET /api/v1/models/{name}`` there: 200 lets it infer, 401 is a 401, anything else a 404.

A model the caller may not read is a 404 worded as for a model this server does not serve.
Answers are remembered for :data:`CACHE_SECONDS` per header and model, so a revoked token or a model
made private stops being served to that caller within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from hub.errors import AuthenticationError, ModelNotFoundError, RemoteError

__all__ = ["Gate", "CACHE_SECONDS"]

CACHE_SECONDS = 5.0
_MAX_CACHED = 10_000


class Gate:
    """Checks callers against the hub's permissions.

    Args:
        hub: the :class:`hub.Hub` (local: its registry's tokens) or RemoteHub (its server decides).
    """

    def __init__(self, hub: Any) -> None:
        from hub.access import Throttle

        self.hub = hub
        self.endpoint: str | None = getattr(hub, "endpoint", None)
        self.throttle = Throttle()
        self._cache: dict[tuple[str, str], tuple[float, int]] = {}  # (header hash, model) -> (when, status)
        self._client: Any = None
        if self.endpoint is None:
            from hub.access import Access

            self.access = Access(hub.db)

    async def check(self, authorization: str | None, client: str, name: str) -> None:
        """Raise unless the caller with ``authorization`` (from address ``client``) may infer on model ``name``.

        Raises:
            AuthenticationError: a malformed, unknown, expired or revoked token (401).
            ModelNotFoundError: the caller may not read the model (404).
            RemoteError: a remote hub's server could not be asked (500); nothing is remembered.
        """
        header = authorization or ""
        key = (hashlib.sha256(header.encode("utf-8", "surrogateescape")).hexdigest(), name)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is None or now - cached[0] > CACHE_SECONDS:
            status = await (self._ask_server(header, name) if self.endpoint is not None else self._ask_registry(header, name))
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (now, status)
        else:
            status = cached[1]
        if status == 401:
            delay = self.throttle.failed(client)
            if delay:
                await asyncio.sleep(delay)
            raise AuthenticationError("the token is malformed, unknown, expired or revoked; send a valid "
                                      "`Authorization: Bearer <token>` (hub token create), or none for public models")
        if status != 200:
            raise ModelNotFoundError(f"this server serves no model {name!r} you may read")

    async def _ask_registry(self, header: str, name: str) -> int:
        from starlette.concurrency import run_in_threadpool

        def ask() -> int:
            if not header and not self.access.configured():  # an open hub (loopback only): as `hub ui` runs one
                return 200
            try:
                principal = self.access.authenticate(header or None)
            except AuthenticationError:
                return 401
            return 200 if self.access.can_read(principal, name) else 404

        return await run_in_threadpool(ask)

    async def _ask_server(self, header: str, name: str) -> int:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.endpoint, timeout=10.0)
        headers = {"Authorization": header} if header else {}
        try:
            response = await self._client.get(f"/api/v1/models/{name}", headers=headers)
        except httpx.HTTPError as error:
            raise RemoteError(f"can't reach the hub server at {self.endpoint} to check the caller's permissions "
                              f"({type(error).__name__}); is `hub serve` running there?") from None
        if response.status_code >= 500:
            raise RemoteError(f"the hub server at {self.endpoint} failed ({response.status_code}) checking the caller's permissions")
        return response.status_code if response.status_code in (200, 401) else 404
