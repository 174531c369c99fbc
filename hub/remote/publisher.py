"""Publishing to a hub server: the version is built into the local cache as for a local hub, then
:meth:`RemotePublisher.commit` uploads what the server lacks and commits the manifest.

The upload is content-addressed (``POST .../-/uploads`` says which blobs the server lacks: unchanged
weights upload nothing), sent from the cached file straight to the socket (``sendfile``) over
keep-alive connections, several blobs at once, and resumable: a ``PATCH`` that breaks off is continued from the offset the
server reports (``HEAD /api/v1/uploads/{sha256}``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.entities import FileEntry, ModelVersion
from hub.errors import IntegrityError, InvalidArgumentError, MissingBlobsError, RemoteError
from hub.manifest import Manifest
from hub.publisher import Publisher
from hub.reference import LATEST
from hub.remote.client import API, RETRIES, Client
from hub.remote.registry import _record

if TYPE_CHECKING:
    from hub.remote.cache import CacheStore

__all__ = ["RemotePublisher", "upload_blobs", "PARALLEL_UPLOADS"]

PARALLEL_UPLOADS = 4  # blobs uploaded at once


def _upload_one(client: Client, store: CacheStore, digest: str, size: int) -> None:
    """Upload one blob from the cache, continuing where the server's copy stops.

    Raises:
        IntegrityError: the cache's file is not the blob (``hub verify``), or the server found the bytes wrong.
        RemoteError: the connection broke ``RETRIES`` times.
    """
    what = f"uploading blob {digest[:12]}"
    path = store.local_path(digest)
    if store.size(digest) != size:
        raise IntegrityError(f"{what}: the cache at {store.root} does not hold it whole; publish again")
    for attempt in range(RETRIES + 1):
        head = client.send("HEAD", f"{API}/uploads/{digest}", what=what)
        if head.headers.get("upload-complete") == "1":
            return
        try:
            offset = int(head.headers.get("upload-offset", "0"))
        except ValueError:
            raise RemoteError(f"{what}: the server's Upload-Offset {head.headers.get('upload-offset')!r} is no number") from None
        if not 0 <= offset <= size:
            raise RemoteError(f"{what}: the server holds {offset} of {size} bytes; check HUB_ENDPOINT")
        headers = {"Upload-Offset": str(offset), "Upload-Length": str(size), "Content-Type": "application/offset+octet-stream"}
        try:
            with open(path, "rb") as source:
                status, _ = client.send_file("PATCH", f"{API}/uploads/{digest}", source, offset, size - offset, what=what,
                                             headers=headers, expect=(200, 204, 409))
        except RemoteError as exc:  # the connection broke: what arrived is kept there; ask where to go on
            if type(exc) is not RemoteError or attempt == RETRIES:
                raise
            continue
        if status != 409:  # 409: another offset (a concurrent upload of the same blob): ask again
            return
    raise RemoteError(f"{what}: the server's offset kept moving ({RETRIES + 1} tries); publish again")


def upload_blobs(client: Client, store: CacheStore, name: str, files: Sequence[FileEntry]) -> list[str]:
    """Upload the blobs of ``files`` that the server lacks (it says which) for a version of ``name``.

    Returns:
        The digests uploaded.

    Raises:
        See :func:`_upload_one`; AuthenticationError, PermissionDeniedError: the token may not publish ``name``.
    """
    sizes = {entry.sha256: entry.size for entry in files}
    what = f"publishing {name}"
    answer = client.json("POST", f"{API}/models/{name}/-/uploads", what=what, expect=(200, 201),
                         json={"blobs": [{"sha256": digest, "size": size} for digest, size in sizes.items()]})
    missing = answer.get("missing") if isinstance(answer, dict) else None
    if not isinstance(missing, list) or not all(d in sizes for d in missing):
        raise RemoteError(f"{what}: the server's answer names no list of this version's blobs; check HUB_ENDPOINT")
    send(client, store, {digest: sizes[digest] for digest in missing})
    return list(missing)


def send(client: Client, store: CacheStore, blobs: dict[str, int]) -> None:
    """Upload ``{sha256: size}`` from the cache, several at once."""
    if len(blobs) <= 1:
        for digest, size in blobs.items():
            _upload_one(client, store, digest, size)
        return
    # the largest first, so the pool ends together
    order = sorted(blobs.items(), key=lambda item: -item[1])
    with ThreadPoolExecutor(max_workers=min(PARALLEL_UPLOADS, len(order)), thread_name_prefix="hub-upload") as pool:
        for future in [pool.submit(_upload_one, client, store, digest, size) for digest, size in order]:
            future.result()


class RemotePublisher(Publisher):
    """:class:`hub.publisher.Publisher` for a remote hub: everything up to the commit runs here (the
    checks, the bytes built into the local cache, weights shared with the parent); the commit
    uploads what the server lacks and asks it to index the version (in the token's name).

    Attributes:
        uploaded: the digests the last publish uploaded (none for unchanged weights).
    """

    def __init__(self, hub: Any) -> None:
        super().__init__(hub)
        self.uploaded: list[str] = []

    def commit(self, draft: Manifest, *, version: int | None = None, aliases: Sequence[str] = (),
               fence: Any = None) -> ModelVersion:
        """Upload the draft's blobs the server lacks, then commit it there (see :meth:`Publisher.commit`).

        Raises:
            VersionExistsError: ``version`` is taken.
            AuthenticationError: no token (or a bad one); PermissionDeniedError: it may not write here.
            IntegrityError: the server found an uploaded blob's bytes wrong.
            RemoteError: the server can't be reached.
        """
        if fence is not None:
            raise InvalidArgumentError("a publish fence runs inside a local registry's transaction; a hub server "
                                       "(HUB_ENDPOINT) can't run it: publish to a local hub, or without the fence")
        hub = self.hub
        client, store, registry = hub.client, hub.blobs, hub.registry
        name = draft.name
        self.uploaded = upload_blobs(client, store, name, draft.files)
        body = {"manifest": json.loads(draft.to_json()), "version": version, "aliases": list(aliases)}
        what = f"publishing {name}"
        sizes = {entry.sha256: entry.size for entry in draft.files}
        for attempt in range(2):
            try:
                answer = client.json("POST", f"{API}/models/{name}/-/versions", what=what, json=body, expect=(200, 201))
                break
            except MissingBlobsError as exc:  # gc on the server took one between the upload and the commit
                if attempt or not set(exc.digests) <= sizes.keys():
                    raise
                send(client, store, {digest: sizes[digest] for digest in exc.digests})
                self.uploaded += list(exc.digests)
        published = registry.remember(_record(ModelVersion.from_dict, answer, what))
        for alias in [*aliases, *([LATEST] if version is None else [])]:  # as last seen, for HUB_OFFLINE=1
            registry.remember(published, alias)
        return published

    def _discard_new_blobs(self, new: set[str]) -> str | None:
        """A failed publish leaves its new blobs in the local cache (a cache; the next publish reuses them)."""
        return None

