"""Publishing to a hub server: the version is built into the local cache as for a local hub, then
:meth:`RemotePublisher.commit` uploads what the server lacks and commits the manifest.

The upload is content-addressed (``POST .../-/uploads`` says which blobs the server lacks: unchanged
weights upload nothing), sent from the cached file straight to the socket (``sendfile``) over
keep-alive connections, several blobs at once, and resumable: a ``PATCH`` that breaks off is
continued from the offset the server reports (``HEAD /api/v1/uploads/{sha256}``). A large new weight
file goes to the server while the cache writes it (``POST .../-/blobs``, see :class:`_Sender`), so
building and uploading overlap; whatever goes wrong there, it is uploaded by sha256 at the commit.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
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

__all__ = ["RemotePublisher", "upload_blobs", "PARALLEL_UPLOADS", "STREAM_MIN"]

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
                status, _, _ = client.send_file("PATCH", f"{API}/uploads/{digest}", source, offset, size - offset, what=what,
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


STREAM_MIN = 32 * 1024 * 1024  # weight files at least this big are sent while they are built
_QUEUED = 4  # chunks built ahead of the connection
_END, _ABORT = object(), object()


class _Aborted(Exception):
    """The blob's write failed: the streamed request is cut off (the server keeps nothing)."""


def _safetensors_size(first: bytes | memoryview) -> int | None:
    """The size of the safetensors file whose first bytes are ``first`` (they must hold its whole
    header), or None where they are no safetensors header."""
    view = memoryview(first).cast("B")
    if view.nbytes < 8:
        return None
    length = int.from_bytes(view[:8], "little")
    if view.nbytes < 8 + length:
        return None
    try:
        header = json.loads(bytes(view[8 : 8 + length]))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
            return None
        end = max(end, offsets[1])
    return 8 + length + end


class _Passing:
    """A blob written to the cache alone."""

    def __init__(self, chunks: Iterator[bytes | memoryview]) -> None:
        self.chunks = chunks

    def finish(self, sha256: str | None, size: int) -> None:
        pass


class _Streaming:
    """One weight file sent to ``POST .../-/blobs`` while the cache writes it: the write hands each chunk
    to a thread that sends it (at most :data:`_QUEUED` waiting), and :meth:`finish` waits for the
    server's answer. Whatever goes wrong here only means the blob is uploaded by sha256 at the commit."""

    def __init__(self, sender: _Sender, chunks: Iterator[bytes | memoryview], size: int) -> None:
        self.sender, self.size = sender, size
        self.queue: queue.Queue = queue.Queue(maxsize=_QUEUED)
        self.answer: Any = None
        self.failed = False
        self.taken = False  # whether the connection took the end (or the abort) off the queue
        self.chunks = self._tee(chunks)
        self.thread = threading.Thread(target=self._send, name="hub-publish-send", daemon=True)
        self.thread.start()

    def _tee(self, chunks: Iterator[bytes | memoryview]) -> Iterator[bytes | memoryview]:
        for chunk in chunks:
            if not self.failed:
                self.queue.put(chunk)
            yield chunk
        self.queue.put(_END)

    def _body(self) -> Iterator[bytes | memoryview]:
        while (item := self.queue.get()) is not _END:
            if item is _ABORT:
                self.taken = True
                raise _Aborted
            yield item
        self.taken = True

    def _send(self) -> None:
        client, name = self.sender.client, self.sender.name
        try:
            _, _, content = client.send_chunks("POST", f"{API}/models/{name}/-/blobs", self._body(), self.size,
                                               what=f"publishing {name}", expect=(201,),
                                               headers={"Content-Type": "application/octet-stream"})
            self.answer = json.loads(content)
        except BaseException:  # noqa: BLE001 - any failure: upload it by sha256 instead
            self.failed = True
            while not self.taken and self.queue.get() not in (_END, _ABORT):
                pass  # let the write go on

    def finish(self, sha256: str | None, size: int) -> None:
        if sha256 is None:
            self.queue.put(_ABORT)
        self.thread.join()
        if sha256 is not None and not self.failed and self.answer == {"sha256": sha256, "size": size}:
            self.sender.sent.append(sha256)


class _Sender:
    """What a remote publish offers the cache (:meth:`CacheStore.sending`): a weight file of at least
    :data:`STREAM_MIN` bytes is sent to the server while it is built, unless it may be a blob the server
    holds already. When the model's latest version on the server has a weight file of exactly its size,
    it is hashed first and uploaded only if missing (so republishing unchanged weights sends no weight
    bytes); but a file that holds what sharing with the parent left (the tensors that changed) is new,
    and is sent while built."""

    def __init__(self, client: Client, name: str, *, shared: bool) -> None:
        self.client, self.name, self.shared = client, name, shared
        self.sent: list[str] = []
        self._sizes: set[int] | None = None

    def _latest_sizes(self) -> set[int] | None:
        """The weight file sizes of the model's latest version on the server (none: no version), None if
        unknown or if the token can't write (then nothing is sent before the commit says why)."""
        if self._sizes is None:
            try:
                if self.client.json("GET", f"{API}/whoami").get("scope") not in ("write", "admin"):
                    return None
                answer = self.client.json("GET", f"{API}/models/{self.name}/-/latest", expect=(200, 404))
            except Exception:  # noqa: BLE001 - unknown: don't stream (the commit says what is wrong)
                return None
            if not isinstance(answer, dict) or "error" in answer:
                self._sizes = set()
            else:
                weights = set(answer.get("weight_files") or [])
                self._sizes = {f.get("size") for f in answer.get("files") or [] if isinstance(f, dict) and f.get("path") in weights}
        return self._sizes

    def start(self, chunks: Iterable[bytes | memoryview]) -> _Passing | _Streaming:
        iterator = iter(chunks)
        first = next(iterator, None)
        if first is None:
            return _Passing(iterator)
        rest = itertools.chain([first], iterator)
        size = _safetensors_size(first)
        if size is None or size < STREAM_MIN:
            return _Passing(rest)
        sizes = self._latest_sizes()  # also asks whether the token may write at all
        if sizes is None or (size in sizes and not self.shared):
            return _Passing(rest)
        return _Streaming(self, rest, size)


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
        self._local = threading.local()  # this thread's publish: its name, the blobs sent while built

    def publish(self, source: Any, name: str, **kwargs: Any) -> ModelVersion:
        """:meth:`Publisher.publish`; a large new weight file is sent to the server while it is built in the
        cache (``POST .../-/blobs``, see :class:`_Sender`), the rest at the commit."""
        self._local.name, self._local.sent = name, []
        try:
            return super().publish(source, name, **kwargs)
        finally:
            self._local.name = None

    def _store_files(self, prepared: Any, card_bytes: bytes | None, parent: ModelVersion | None) -> Any:
        name = getattr(self._local, "name", None)
        client = self.hub.client
        if name is None or client.offline or not client.authenticated:
            return super()._store_files(prepared, card_bytes, parent)
        sender = _Sender(client, name, shared=parent is not None and prepared.tensors is not None)
        try:
            with self.hub.blobs.sending(sender):
                return super()._store_files(prepared, card_bytes, parent)
        finally:
            self._local.sent = sender.sent

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
        sent, self._local.sent = getattr(self._local, "sent", []), []
        self.uploaded = [*sent, *upload_blobs(client, store, name, draft.files)]
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

