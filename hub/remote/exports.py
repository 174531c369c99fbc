"""Exports on a hub server: listed and read from it, their files fetched into the cache, and an export made
here (:meth:`hub.exports.Exports.export` runs locally on the cached model) uploaded and committed there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hub.entities import ExportRecord, ModelVersion
from hub.errors import IntegrityError, RemoteError
from hub.exports import Exports, record_of
from hub.remote.client import API
from hub.remote.publisher import upload_blobs
from hub.remote.registry import _list

__all__ = ["RemoteExports"]

_CHUNK = 1024 * 1024


def _path(version: ModelVersion) -> str:
    return f"{API}/models/{version.name}/-/versions/{version.version}/exports"


def _chunks(response: Any) -> Iterator[bytes]:
    while chunk := response.read(_CHUNK):
        yield chunk


class RemoteExports(Exports):
    """:class:`hub.exports.Exports` against a server (``GET|POST /api/v1/models/{name}/-/versions/{n}/exports``)."""

    def _records(self, version: ModelVersion) -> list[ExportRecord]:
        what = f"listing the exports of {version.ref}"
        answer = self.hub.client.json("GET", _path(version), what=what)
        try:
            records = [record_of(item) for item in _list(answer, what)]
        except IntegrityError as exc:
            raise RemoteError(f"{what}: {exc}; check HUB_ENDPOINT") from None
        return [r for r in records if r.source_digest == version.digest]

    def fetch(self, record: ExportRecord) -> None:
        """Fetch the export's files the cache lacks, each checked against its sha256 as it arrives.

        Raises:
            IntegrityError: the server's bytes don't hash to the record's sha256 (nothing is kept).
            OfflineError, RemoteError: the server can't be asked.
        """
        version = self.hub.info(record.source_ref)
        for entry in record.files:
            if self.hub.blobs.cached(entry.sha256, entry.size):
                continue
            what = f"fetching {record.source_ref}'s {record.format} export file {entry.path}"
            with self.hub.client.raw("GET", f"{_path(version)}/{record.format}/files/{entry.path}", what=what,
                                     headers={"Accept-Encoding": "identity"}) as response:
                self.hub.blobs.write(_chunks(response), expected_sha256=entry.sha256)

    def commit_record(self, version: ModelVersion, record: ExportRecord) -> ExportRecord:
        """Upload the export's files the server lacks (from the cache), then have the server keep its record.

        Raises:
            AuthenticationError, PermissionDeniedError: the token may not write the model.
            IntegrityError, RemoteError: see :func:`hub.remote.publisher.upload_blobs`.
        """
        upload_blobs(self.hub.client, self.hub.blobs, version.name, record.files)
        what = f"keeping the {record.format} export of {version.ref}"
        answer = self.hub.client.json("POST", _path(version), what=what, expect=(201,), json=record.to_dict())
        try:
            return record_of(answer)
        except IntegrityError as exc:
            raise RemoteError(f"{what}: the server's answer: {exc}; check HUB_ENDPOINT") from None
