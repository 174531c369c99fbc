"""``hub serve`` as a real process on a free loopback port, on both registry backends; clients use httpx here.

One server per backend for the whole module (its own HUB_HOME and registry), over a hub the test
process fills through the local API (public and private namespaces, users and tokens): reads, pages,
visibility, blobs (Range, ETag, 304, caching), content-addressed and resumable uploads (also
continued through a second server process), commits, auth and bad requests that write nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import torch
from conftest import REGISTRY_TABLES, ROOT, _postgres, _postgres_schema_url, snapshot
from server_process import Server, start_server

API = "/api/v1"


@dataclass
class World:
    """One backend's hub, served, with what the tests know of it."""

    hub: object
    server: Server
    tokens: dict[str, str]  # role -> token
    secrets: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, role: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def rows(self) -> dict[str, list[str]]:
        db = self.hub.db
        tables = [t for t in REGISTRY_TABLES if not t.startswith("finetune")] + ["api_tokens", "namespaces", "namespace_members"]
        return {t: sorted(map(repr, db.query(f"SELECT * FROM {t}"))) for t in tables if t != "api_tokens"}

    def state(self) -> tuple[dict[str, bytes], dict[str, list[str]]]:
        return snapshot(self.hub.home), self.rows()


def _weights(seed: int, rows: int = 8) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"layer.weight": torch.randn(rows, 4, generator=generator), "layer.bias": torch.randn(rows, generator=generator)}


def _build(home: Path, url: str) -> tuple[object, dict[str, str], list[str]]:
    from hub.access import Access
    from hub.api import Hub

    hub = Hub(home, url)
    hub.db.ensure_schema()
    access = Access(hub.db)
    tokens = {}
    for role, user, scope, namespace in [("alice", "alice", "write", None), ("bob", "bob", "read", None),
                                         ("carol", "carol", "write", None), ("admin", "root", "admin", None),
                                         ("alice_other", "alice", "write", "elsewhere"), ("revoked", "alice", "write", None)]:
        tokens[role], info = access.create_token(user, scope, namespace=namespace)
        if role == "revoked":
            access.revoke_token(info.id)
    access.create_namespace("pub", owners=["alice"], visibility="public")
    access.create_namespace("priv", owners=["alice"], readers=["bob"], visibility="private")
    hub.publish(_weights(1), "pub/m", aliases=["production"], description="a public model", task="classification", tags=["demo"])
    hub.publish(_weights(2), "pub/m", description="a public model, again", task="classification", tags=["demo"])
    hub.publish(_weights(3), "priv/secret", aliases=["production"], description="a private model")
    for i in range(12):
        hub.publish(_weights(100 + i, rows=2), f"pub/page-{i:02d}")
    hub.publish(_weights(1), "priv/copy-of-public")  # the same bytes as pub/m:1: that blob is public
    hub.set_alias("pub/m", "staging", 2)
    secrets = [part for token in tokens.values() for part in (token, token.split("_", 2)[2])]
    return hub, tokens, secrets


_WORLDS: dict[str, World] = {}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """The module's servers, one per backend, started on first use."""
    schemas = []
    yield (_WORLDS, schemas, tmp_path_factory)
    for world in _WORLDS.values():
        world.server.stop()
        world.hub.close()
    _WORLDS.clear()
    for schema in schemas:
        _postgres(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def world(registry_url, worlds) -> World:
    """This backend's served hub."""
    found, schemas, factory = worlds
    backend = "sqlite" if registry_url.startswith("sqlite") else "postgresql"
    if backend not in found:
        home = factory.mktemp(f"served-{backend}")
        if backend == "sqlite":
            url = f"sqlite:///{home / 'registry.db'}"
        else:
            schema = f"srv_{uuid.uuid4().hex[:12]}"
            _postgres(f"CREATE SCHEMA {schema}")
            schemas.append(schema)
            url = _postgres_schema_url(schema)
        hub, tokens, secrets = _build(home, url)
        found[backend] = World(hub, start_server(home, url), tokens, secrets)
    return found[backend]


def _plain(record) -> dict:
    """A record as JSON carries it (tuples as lists)."""
    return json.loads(json.dumps(record.to_dict()))


def _error(response: httpx.Response, status: int, kind: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()["error"]
    assert body["type"] == kind, body
    assert body["message"]
    return body


def _safetensors(seed: int) -> bytes:
    from safetensors.torch import save

    return save(_weights(seed, rows=16))


def _draft(name: str, files: dict[str, bytes]) -> dict:
    """A manifest for ``files`` as a client sends it (the server sets number, time and author)."""
    from hub.entities import FileEntry
    from hub.manifest import Manifest

    entries = tuple(FileEntry(path, hashlib.sha256(data).hexdigest(), len(data)) for path, data in sorted(files.items()))
    manifest = Manifest(name=name, version=1, created_at_ms=0, files=entries, weights=tuple(p for p in sorted(files) if p.endswith(".safetensors")))
    return json.loads(manifest.to_json())


def _upload(client: httpx.Client, data: bytes, *, offset: int = 0, digest: str | None = None) -> httpx.Response:
    digest = digest or hashlib.sha256(data).hexdigest()
    return client.patch(f"{API}/uploads/{digest}", content=data[offset:],
                        headers={"Upload-Offset": str(offset), "Upload-Length": str(len(data))})


def _raw(client: httpx.Client, method: str, path: str, *, json_body: object = None) -> httpx.Response:
    """``method`` on ``path`` exactly as written (httpx would resolve ``..`` segments), with the client's headers."""
    import http.client

    connection = http.client.HTTPConnection(client.base_url.host, client.base_url.port, timeout=30)
    try:
        body = json.dumps(json_body).encode() if json_body is not None else None
        headers = {k: v for k, v in client.headers.items() if k.lower() == "authorization"}
        connection.request(method, path, body=body, headers={**headers, "Content-Type": "application/json"})
        answer = connection.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    finally:
        connection.close()


def _publish(client: httpx.Client, name: str, files: dict[str, bytes], **body) -> httpx.Response:
    draft = _draft(name, files)
    missing = client.post(f"{API}/models/{name}/-/uploads", json={"blobs": [{"sha256": f["sha256"], "size": f["size"]} for f in draft["files"]]})
    assert missing.status_code == 200, missing.text
    by_digest = {hashlib.sha256(data).hexdigest(): data for data in files.values()}
    for digest in missing.json()["missing"]:
        answer = _upload(client, by_digest[digest])
        assert answer.status_code == 204 and answer.headers["upload-complete"] == "1", answer.text
    return client.post(f"{API}/models/{name}/-/versions", json={"manifest": draft, **body})


# --- reading ---------------------------------------------------------------------------


def test_health_and_the_openapi_schema(world):
    import hub

    assert httpx.get(f"{world.url}/healthz").json() == {"status": "ok", "version": hub.__version__}
    schema = httpx.get(f"{world.url}{API}/openapi.json").json()
    for path in ("/api/v1/models", "/api/v1/models/{name}/-/versions/{n}", "/api/v1/blobs/{sha256}", "/api/v1/uploads/{sha256}",
                 "/api/v1/models/{name}/-/uploads", "/api/v1/whoami"):
        assert path in schema["paths"], sorted(schema["paths"])
    assert {"get", "head"} <= set(schema["paths"]["/api/v1/blobs/{sha256}"])
    _error(httpx.get(f"{world.url}/nothing/here"), 404, "NotFound")


def test_reads_return_the_records_of_the_local_api(world):
    local = world.hub
    with world.client() as client:
        assert client.get(f"{API}/models/pub/m/-/versions/1").json() == _plain(local.info("pub/m:1"))
        assert client.get(f"{API}/models/pub/m/-/latest").json() == _plain(local.info("pub/m"))
        assert client.get(f"{API}/models/pub/m/-/aliases/production").json()["version"] == 1
        assert client.get(f"{API}/models/pub/m/-/versions").json() == [_plain(v) for v in local.list_versions("pub/m")]
        history = client.get(f"{API}/models/pub/m/-/aliases/production/history").json()
        assert [(c["from_version"], c["to_version"], c["changed_by"]) for c in history] == [(None, 1, "tester")]
        summary = client.get(f"{API}/models/pub/m").json()
        assert (summary["name"], summary["latest_version"], summary["num_versions"]) == ("pub/m", 2, 2)
        assert summary["aliases"] == {"production": 1, "staging": 2}
        manifest = client.get(f"{API}/models/pub/m/-/versions/2/manifest")
        assert hashlib.sha256(manifest.content).hexdigest() == local.info("pub/m:2").digest
        assert manifest.json()["name"] == "pub/m"
        assert client.get(f"{API}/facets").json()["tag"] == ["demo"]
        assert client.get(f"{API}/whoami").json() == {"user": None, "scope": None, "namespace": None}
        _error(client.get(f"{API}/models/pub/m/-/versions/9"), 404, "VersionNotFoundError")
        _error(client.get(f"{API}/models/pub/m/-/aliases/nope"), 404, "AliasNotFoundError")
        _error(client.get(f"{API}/models/pub/none/-/latest"), 404, "ModelNotFoundError")
    with world.client("bob") as client:
        assert client.get(f"{API}/whoami").json() == {"user": "bob", "scope": "read", "namespace": None}


def test_pages_count_only_what_the_caller_can_read(world):
    with world.client() as client:
        first = client.get(f"{API}/models", params={"search": "page-", "limit": 5}).json()
        second = client.get(f"{API}/models", params={"search": "page-", "limit": 5, "offset": 10}).json()
        assert first["total"] == second["total"] == 12
        assert [m["name"] for m in first["models"]] == [f"pub/page-{i:02d}" for i in range(5)]
        assert [m["name"] for m in second["models"]] == ["pub/page-10", "pub/page-11"]
        everything = client.get(f"{API}/models", params={"limit": 1000}).json()
        assert everything["total"] == 13 and not any(m["name"].startswith("priv/") for m in everything["models"])
        assert client.get(f"{API}/models", params={"sort": "size", "limit": 1}).json()["models"][0]["name"] == "pub/m"
        _error(client.get(f"{API}/models", params={"limit": 0}), 400, "InvalidArgumentError")
        _error(client.get(f"{API}/models", params={"limit": 1001}), 400, "InvalidArgumentError")
        _error(client.get(f"{API}/models", params={"sort": "random"}), 400, "InvalidArgumentError")
    with world.client("bob") as client:  # a reader of priv
        assert client.get(f"{API}/models", params={"search": "priv/"}).json()["total"] == 2


def test_a_private_model_is_a_missing_one_to_those_who_cannot_read_it(world):
    with world.client() as anonymous, world.client("carol") as outsider, world.client("bob") as reader:
        for client in (anonymous, outsider):
            hidden = _error(client.get(f"{API}/models/priv/secret/-/latest"), 404, "ModelNotFoundError")
            missing = _error(client.get(f"{API}/models/priv/secrex/-/latest"), 404, "ModelNotFoundError")
            assert hidden["message"] == missing["message"].replace("secrex", "secret")
            assert "priv/secret" not in missing["message"]  # no hint names a model it can't read
            _error(client.get(f"{API}/models/priv/secret/-/versions/1"), 404, "ModelNotFoundError")
            _error(client.get(f"{API}/models/priv/secret"), 404, "ModelNotFoundError")
        assert reader.get(f"{API}/models/priv/secret/-/aliases/production").json()["version"] == 1
        assert world.client("admin").get(f"{API}/models/priv/secret/-/latest").status_code == 200


def test_blobs_stream_with_ranges_etags_and_cache_headers(world):
    version = world.hub.info("pub/m:1")
    entry = version.files[0]
    data = world.hub.blobs.read_bytes(entry.sha256)
    with world.client() as client:
        whole = client.get(f"{API}/blobs/{entry.sha256}")
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["etag"] == f'"{entry.sha256}"'
        assert whole.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-length"] == str(len(data))
        part = client.get(f"{API}/blobs/{entry.sha256}", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
        tail = client.get(f"{API}/blobs/{entry.sha256}", headers={"Range": "bytes=-7"})
        assert tail.status_code == 206 and tail.content == data[-7:]
        rest = client.get(f"{API}/blobs/{entry.sha256}", headers={"Range": f"bytes={len(data) - 3}-"})
        assert rest.content == data[-3:]
        beyond = client.get(f"{API}/blobs/{entry.sha256}", headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
        cached = client.get(f"{API}/blobs/{entry.sha256}", headers={"If-None-Match": f'"{entry.sha256}"'})
        assert cached.status_code == 304 and cached.content == b""
        head = client.head(f"{API}/blobs/{entry.sha256}")
        assert head.status_code == 200 and head.headers["content-length"] == str(len(data)) and head.content == b""
        manifest = client.get(f"{API}/blobs/{version.digest}")
        assert hashlib.sha256(manifest.content).hexdigest() == version.digest
        private = world.hub.info("priv/secret:1").files[0].sha256
        _error(client.get(f"{API}/blobs/{private}"), 404, "NotFound")
        _error(client.get(f"{API}/blobs/{'0' * 64}"), 404, "NotFound")
        _error(client.get(f"{API}/blobs/{entry.sha256.upper()}"), 400, "InvalidArgumentError")
        _error(_raw(client, "GET", f"{API}/blobs/.."), 400, "InvalidArgumentError")
        _error(client.get(f"{API}/blobs/..%2f..%2fregistry.db"), 404, "NotFound")  # no route: '/' splits the path
    with world.client("bob") as reader:
        answer = reader.get(f"{API}/blobs/{private}")
        assert answer.status_code == 200 and answer.headers["cache-control"].startswith("private,")
        # the blob pub/m:1 shares with a private model is public all the same
        assert reader.get(f"{API}/blobs/{entry.sha256}").headers["cache-control"].startswith("public,")


# --- publishing ----------------------------------------------------------------------


def test_publish_over_http_records_the_token_user(world):
    weights = _safetensors(10)
    with world.client("alice") as alice:
        answer = _publish(alice, "pub/uploaded", {"model.safetensors": weights, "notes.txt": b"hello"}, aliases=["production"])
        assert answer.status_code == 201, answer.text
        version = answer.json()
        assert (version["name"], version["version"], version["aliases"]) == ("pub/uploaded", 1, ["production"])
        manifest = alice.get(f"{API}/models/pub/uploaded/-/versions/1/manifest").json()
        assert manifest["created_by"] == "alice"
        history = alice.get(f"{API}/models/pub/uploaded/-/aliases/production/history").json()
        assert history[-1]["changed_by"] == "alice"
        moved = alice.put(f"{API}/models/pub/m/-/aliases/canary", json={"version": 2}).json()["change"]
        assert (moved["to_version"], moved["changed_by"]) == (2, "alice")
        assert alice.put(f"{API}/models/pub/m/-/aliases/canary", json={"version": 2}).json() == {"change": None}
        removed = alice.delete(f"{API}/models/pub/m/-/aliases/canary").json()["change"]
        assert (removed["from_version"], removed["to_version"], removed["changed_by"]) == (2, None, "alice")
    loaded = world.hub.load_state_dict("pub/uploaded@production")
    from safetensors.torch import load

    assert all(torch.equal(loaded[k], v) for k, v in load(weights).items())


def test_republishing_the_same_weights_uploads_nothing(world):
    version = world.hub.info("pub/m:1")
    with world.client("alice") as alice:
        blobs = [{"sha256": f.sha256, "size": f.size} for f in version.files]
        assert alice.post(f"{API}/models/pub/m/-/uploads", json={"blobs": blobs}).json() == {"missing": []}
        other = [{"sha256": "ab" * 32, "size": 5}, {"sha256": version.files[0].sha256, "size": version.files[0].size + 1}]
        assert alice.post(f"{API}/models/pub/m/-/uploads", json={"blobs": other}).json()["missing"] == ["ab" * 32, version.files[0].sha256]


def test_two_concurrent_commits_get_distinct_versions(world):
    with world.client("alice") as alice:
        assert _publish(alice, "pub/race", {"model.safetensors": _safetensors(20)}).status_code == 201
        draft = json.loads(alice.get(f"{API}/models/pub/race/-/versions/1/manifest").content)
    answers = []

    def commit() -> None:
        with world.client("alice") as client:
            answers.append(client.post(f"{API}/models/pub/race/-/versions", json={"manifest": draft}))

    threads = [threading.Thread(target=commit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert sorted(a.json()["version"] for a in answers) == [2, 3, 4, 5]
    assert [v.version for v in world.hub.list_versions("pub/race")] == [1, 2, 3, 4, 5]
    with world.client("alice") as alice:
        _error(alice.post(f"{API}/models/pub/race/-/versions", json={"manifest": draft, "version": 3}), 409, "VersionExistsError")


def test_a_commit_with_a_missing_blob_is_refused_and_writes_nothing(world):
    weights = _safetensors(30)
    draft = _draft("pub/incomplete", {"model.safetensors": weights})
    before = world.state()
    with world.client("alice") as alice:
        body = _error(alice.post(f"{API}/models/pub/incomplete/-/versions", json={"manifest": draft}), 409, "MissingBlobsError")
    assert body["digests"] == [hashlib.sha256(weights).hexdigest()]
    assert world.state() == before


def test_an_upload_with_a_wrong_sha256_is_refused_and_leaves_nothing(world):
    data = _safetensors(40)
    wrong = hashlib.sha256(b"something else").hexdigest()
    before = world.state()
    with world.client("alice") as alice:
        _error(_upload(alice, data, digest=wrong), 400, "IntegrityError")
        assert alice.head(f"{API}/uploads/{wrong}").headers["upload-offset"] == "0"
        too_long = alice.patch(f"{API}/uploads/{wrong}", content=data, headers={"Upload-Offset": "0", "Upload-Length": "10"})
        _error(too_long, 400, "InvalidArgumentError")
    assert not world.hub.blobs.exists(wrong)
    assert world.state() == before


def test_an_interrupted_upload_continues_where_it_stopped_also_on_another_server(world):
    data = os.urandom(3 * 1024 * 1024 + 123)
    digest = hashlib.sha256(data).hexdigest()
    first = 1024 * 1024
    with world.client("alice") as alice:
        answer = alice.patch(f"{API}/uploads/{digest}", content=data[:first], headers={"Upload-Offset": "0", "Upload-Length": str(len(data))})
        assert answer.status_code == 204 and answer.headers["upload-offset"] == str(first) and "upload-complete" not in answer.headers

        def broken():  # a client that goes away after one more MiB
            yield data[first:2 * first]
            time.sleep(0.3)
            raise ConnectionError("the client died")

        with pytest.raises(Exception):
            alice.patch(f"{API}/uploads/{digest}", content=broken(), headers={"Upload-Offset": str(first), "Upload-Length": str(len(data))})
        deadline = time.monotonic() + 10
        while alice.head(f"{API}/uploads/{digest}").headers["upload-offset"] != str(2 * first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alice.head(f"{API}/uploads/{digest}").headers["upload-offset"] == str(2 * first)
        wrong = alice.patch(f"{API}/uploads/{digest}", content=data[first:], headers={"Upload-Offset": str(first), "Upload-Length": str(len(data))})
        body = _error(wrong, 409, "InvalidArgumentError")
        assert wrong.headers["upload-offset"] == str(2 * first) and str(2 * first) in body["message"]
    second = start_server(world.hub.home, world.server.registry_url)  # another process on the same hub
    try:
        with httpx.Client(base_url=second.url, headers={"Authorization": f"Bearer {world.tokens['alice']}"}, timeout=30) as other:
            for _ in range(50):  # the first server may still be closing the cut-off request's upload
                answer = _upload(other, data, offset=2 * first)
                if answer.status_code != 409:
                    break
                time.sleep(0.1)
            assert answer.status_code == 204, answer.text
            assert (answer.headers["upload-offset"], answer.headers["upload-complete"]) == (str(len(data)), "1")
            head = other.head(f"{API}/uploads/{digest}")
            assert (head.headers["upload-offset"], head.headers["upload-complete"]) == (str(len(data)), "1")
    finally:
        assert second.stop() == 0
    assert world.hub.blobs.read_bytes(digest) == data
    assert world.hub.blobs.upload_offset(digest) == 0 and not world.hub.blobs.partial_uploads()


def test_a_blob_sent_before_its_sha256_is_known_is_stored_under_the_one_it_hashes_to(world):
    data = _safetensors(50) + os.urandom(6 * 1024 * 1024 + 17)  # the server takes any bytes: the commit checks them
    digest = hashlib.sha256(data).hexdigest()
    path = f"{API}/models/pub/streamed/-/blobs"
    before = world.state()
    with world.client() as anonymous:
        _error(anonymous.post(path, content=data[:1000]), 401, "AuthenticationError")
    with world.client("bob") as reader:
        _error(reader.post(path, content=data[:1000]), 403, "PermissionDeniedError")
    with world.client("alice") as alice:
        def broken():  # a client that goes away after 3 MiB
            yield data[:3 * 1024 * 1024]
            time.sleep(0.3)
            raise ConnectionError("the client died")

        with pytest.raises(Exception):
            alice.post(path, content=broken(), headers={"Content-Length": str(len(data))})
    deadline = time.monotonic() + 10
    while world.state() != before and time.monotonic() < deadline:  # the server may still be dropping what arrived
        time.sleep(0.05)
    assert world.state() == before  # nothing kept: no blob, no temporary file

    with world.client("alice") as alice:
        answer = alice.post(path, content=(data[i:i + 100_000] for i in range(0, len(data), 100_000)))  # chunked, in small pieces
        assert answer.status_code == 201, answer.text
        assert answer.json() == {"sha256": digest, "size": len(data)}
        assert world.hub.blobs.read_bytes(digest) == data
        missing = alice.post(f"{API}/models/pub/streamed/-/uploads", json={"blobs": [{"sha256": digest, "size": len(data)}]})
        assert missing.json() == {"missing": []}
        draft = _draft("pub/streamed", {"model.safetensors": data})
        assert alice.post(f"{API}/models/pub/streamed/-/versions", json={"manifest": draft}).status_code == 201
    assert world.hub.info("pub/streamed:1").file("model.safetensors").sha256 == digest
    assert not world.hub.blobs.temp_files()


# --- who may do what -------------------------------------------------------------------


def test_writes_need_a_token_with_write_permission(world):
    draft = _draft("pub/m", {"model.safetensors": b"x"})
    before = world.state()
    with world.client() as anonymous:
        answer = anonymous.put(f"{API}/models/pub/m/-/aliases/production", json={"version": 2})
        _error(answer, 401, "AuthenticationError")
        assert answer.headers["www-authenticate"] == "Bearer"
        _error(anonymous.delete(f"{API}/models/pub/m/-/versions/1"), 401, "AuthenticationError")
        _error(anonymous.post(f"{API}/models/pub/m/-/versions", json={"manifest": draft}), 401, "AuthenticationError")
        assert anonymous.head(f"{API}/uploads/{'a' * 64}").status_code == 401
        _error(_upload(anonymous, b"abc"), 401, "AuthenticationError")
    with world.client("bob") as reader:
        _error(reader.put(f"{API}/models/pub/m/-/aliases/production", json={"version": 2}), 403, "PermissionDeniedError")
        _error(_upload(reader, b"abc"), 403, "PermissionDeniedError")
        _error(reader.post(f"{API}/models/pub/m/-/uploads", json={"blobs": []}), 403, "PermissionDeniedError")
    with world.client("carol") as outsider:  # write scope, not a writer of pub
        _error(outsider.delete(f"{API}/models/pub/m/-/aliases/production"), 403, "PermissionDeniedError")
    with world.client("alice_other") as restricted:  # alice's token for another namespace
        _error(restricted.put(f"{API}/models/pub/m/-/aliases/production", json={"version": 2}), 403, "PermissionDeniedError")
    for role in ("revoked",):
        with world.client(role) as client:
            _error(client.get(f"{API}/models/pub/m/-/latest"), 401, "AuthenticationError")
    with httpx.Client(base_url=world.url, headers={"Authorization": "Basic abc"}) as client:
        _error(client.get(f"{API}/models"), 401, "AuthenticationError")
    assert world.state() == before


def test_bad_tokens_are_slowed_down_and_never_logged(world):
    bad = {"Authorization": "Bearer mh_0123456789abcdef_" + "x" * 43}
    with httpx.Client(base_url=world.url, headers=bad, timeout=30) as client:
        took = []
        for _ in range(8):
            start = time.monotonic()
            _error(client.get(f"{API}/models"), 401, "AuthenticationError")
            took.append(time.monotonic() - start)
    assert sum(took[5:]) >= 0.125 + 0.25 + 0.5 - 0.05, took  # the 6th, 7th and 8th waited
    with world.client() as anonymous:  # another client is not slowed (the same address here, but no token)
        start = time.monotonic()
        anonymous.get(f"{API}/models")
        assert time.monotonic() - start < 0.5
    logs = world.server.stderr_text() + world.server.stdout_text()
    assert "GET /api/v1/models" in logs  # the access log is there
    for secret in world.secrets + ["x" * 43]:
        assert secret not in logs


# --- bad requests ---------------------------------------------------------------------


def test_bad_requests_get_typed_errors_and_write_nothing(world):
    before = world.state()
    with world.client("alice") as alice:
        for path in ("pub/..", "pub/%2e%2e", "pub%2f..%2f..%2fetc", "Pub/m", "pub/m%00x", "a/b/c", "pub/" + "m" * 65, ".hidden"):
            _error(_raw(alice, "GET", f"{API}/models/{path}/-/latest"), 400, "InvalidReferenceError")
            _error(_raw(alice, "PUT", f"{API}/models/{path}/-/aliases/x", json_body={"version": 1}), 400, "InvalidReferenceError")
        _error(alice.get(f"{API}/models/pub/m/-/versions/0"), 400, "InvalidReferenceError")
        _error(alice.get(f"{API}/models/pub/m/-/versions/abc"), 400, "InvalidReferenceError")
        _error(alice.put(f"{API}/models/pub/m/-/aliases/Bad", json={"version": 1}), 400, "InvalidReferenceError")
        _error(alice.put(f"{API}/models/pub/m/-/aliases/latest", json={"version": 1}), 400, "InvalidReferenceError")
        garbage = alice.put(f"{API}/models/pub/m/-/aliases/production", content=b"{not json", headers={"Content-Type": "application/json"})
        _error(garbage, 400, "InvalidArgumentError")
        _error(alice.put(f"{API}/models/pub/m/-/aliases/production", json={"version": "2", "x": 1}), 400, "InvalidArgumentError")
        deep = b"[" * 10_000 + b"]" * 10_000
        _error(alice.post(f"{API}/models/pub/m/-/versions", content=deep), 400, "InvalidArgumentError")
        huge = b'{"manifest": "' + b"x" * (17 * 1024 * 1024) + b'"}'
        _error(alice.post(f"{API}/models/pub/m/-/versions", content=huge), 413, "InvalidArgumentError")
        _error(alice.post(f"{API}/models/pub/m/-/versions", json={"manifest": {"format": "no"}}), 400, "UnsafeFormatError")
        draft = _draft("pub/other", {"model.safetensors": b"x"})
        _error(alice.post(f"{API}/models/pub/m/-/versions", json={"manifest": draft}), 400, "InvalidArgumentError")
        _error(alice.post(f"{API}/models/pub/m/-/uploads", json={"blobs": [{"sha256": "../x", "size": 1}]}), 400, "InvalidArgumentError")
        _error(alice.post(f"{API}/models/pub/m/-/uploads", json={"blobs": [{"sha256": "a" * 64, "size": -1}]}), 400, "InvalidArgumentError")
        _error(alice.patch(f"{API}/uploads/{'a' * 64}", content=b"x", headers={"Upload-Offset": "-1", "Upload-Length": "1"}), 400, "InvalidArgumentError")
        _error(alice.patch(f"{API}/uploads/{'a' * 64}", content=b"x"), 400, "InvalidArgumentError")
        # into a namespace nobody has claimed yet: a bad request claims none
        fresh = _draft("fresh/m", {"model.safetensors": b"x"})
        _error(alice.post(f"{API}/models/fresh/m/-/versions", json={"manifest": fresh, "aliases": ["Bad"]}), 400, "InvalidReferenceError")
        _error(alice.post(f"{API}/models/fresh/m/-/versions", json={"manifest": {**fresh, "files": "x"}}), 400, "UnsafeFormatError")
        _error(alice.post(f"{API}/models/fresh/m/-/uploads", json={"blobs": [{"sha256": "x", "size": 1}]}), 400, "InvalidArgumentError")
        _error(alice.put(f"{API}/models/fresh/m/-/aliases/prod", json={"version": 0}), 400, "InvalidReferenceError")
    assert world.state() == before


# --- the command --------------------------------------------------------------------------


@pytest.mark.one_backend
def test_hub_serve_says_in_one_line_why_it_cannot_start(tmp_path):
    env = {**os.environ, "HUB_HOME": str(tmp_path / "h"), "HUB_REGISTRY_URL": f"sqlite:///{tmp_path / 'h' / 'registry.db'}"}
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        for args in (["--port", str(taken.getsockname()[1])], ["--host", "no-such-host.invalid"], ["--port", "70000"], ["--workers", "0"]):
            result = subprocess.run([sys.executable, "-m", "hub", "serve", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
            assert result.returncode == 1, (args, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("hub: error: "), (args, result.stderr)
    finally:
        taken.close()
    # HUB_ENDPOINT plays no part in a server: it serves its own HUB_HOME
    server = start_server(tmp_path / "h", env["HUB_REGISTRY_URL"], workers=2, env={"HUB_ENDPOINT": "http://127.0.0.1:9"})
    for _ in range(4):
        assert httpx.get(f"{server.url}/api/v1/models").json() == {"models": [], "total": 0}
    assert server.stop() == 0  # SIGTERM: a clean stop
    assert "Started parent process" in server.stderr_text()


@pytest.mark.one_backend
def test_gc_removes_old_partial_uploads_and_verify_lists_them(tmp_path):
    from hub.api import Hub

    local = Hub(tmp_path / "gc", f"sqlite:///{tmp_path / 'gc' / 'registry.db'}")
    data = b"partial upload bytes" * 100
    digest = hashlib.sha256(data).hexdigest()
    assert local.blobs.append_upload(digest, 0, [data[:50]], len(data)) == 50
    assert local.verify(min_age_seconds=3600).leftovers == () and local.gc(min_age_seconds=3600).removed == ()
    assert any(digest in leftover for leftover in local.verify(min_age_seconds=0).leftovers)
    assert any(digest in removed for removed in local.gc(min_age_seconds=0).removed)
    assert local.blobs.upload_offset(digest) == 0 and not local.blobs.partial_uploads()
    assert local.blobs.append_upload(digest, 0, [data[:10], data[10:]], len(data)) == len(data)
    assert local.blobs.read_bytes(digest) == data
    local.close()


@pytest.mark.one_backend
def test_one_upload_of_a_blob_at_a_time_and_only_at_its_offset(tmp_path):
    from hub.errors import InvalidArgumentError
    from hub.storage import FileStore

    store = FileStore(tmp_path / "store")
    data = os.urandom(1000)
    digest = hashlib.sha256(data).hexdigest()
    refused = []

    def chunks():
        yield data[:100]
        try:  # a second writer while this one holds the upload
            store.append_upload(digest, 100, [data[100:]], len(data))
        except InvalidArgumentError as error:
            refused.append(error)
        yield data[100:200]

    assert store.append_upload(digest, 0, chunks(), len(data)) == 200
    assert len(refused) == 1 and "under way" in str(refused[0])
    with pytest.raises(InvalidArgumentError, match="at offset 200, not 150") as wrong:
        store.append_upload(digest, 150, [data[150:]], len(data))
    assert wrong.value.offset == 200 and store.upload_offset(digest) == 200
    assert store.append_upload(digest, 200, [data[200:]], len(data)) == len(data)  # read back and hashed: it came in pieces
    assert store.read_bytes(digest) == data and store.partial_uploads() == []
