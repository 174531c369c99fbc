"""The remote client against a real ``hub serve`` process, on each registry backend behind it.

Each client is another process (``python -c`` or the ``hub`` CLI) whose environment holds only
``HUB_ENDPOINT``, ``HUB_TOKEN`` and its own ``HUB_HOME`` (its cache): no registry URL, no access to
the server's folder. The test process looks into the server's folder only to check what the
server stored and to damage a blob there, makes the tokens, and, where a test needs a model on the
server or a filled cache before the client under test runs, makes it with a ``RemoteHub`` of its own
(over HTTP too).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, _postgres, _postgres_schema_url
from server_process import Server, start_server

PRELUDE = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import hub

    def out(**values):
        print("RESULT " + json.dumps(values))

    def failure(call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except hub.HubError as exc:
            return [type(exc).__name__, str(exc)]
        return None
""")


class Served:
    """One backend's server and the tokens made for it."""

    def __init__(self, server: Server, write: str, read: str) -> None:
        self.server, self.write, self.read = server, write, read

    @property
    def url(self) -> str:
        return self.server.url

    def blobs(self) -> set[str]:
        """The digests of the blobs the server's store holds."""
        folder = self.server.home / "blobs"
        return {name for name in os.listdir(folder) if re.fullmatch(r"[0-9a-f]{64}", name)} if folder.is_dir() else set()

    def blob_requests(self) -> list[str]:
        """The lines of the server's access log that fetched a blob."""
        logs = self.server.stderr_text() + self.server._stderr_path.with_name("stdout").read_text(errors="replace")
        return [line for line in logs.splitlines() if "/api/v1/blobs/" in line]  # uvicorn's access log


def _start(home: Path, url: str) -> Served:
    from hub.access import Access
    from hub.api import Hub

    server = start_server(home, url)
    local = Hub(home, url)
    try:
        access = Access(local.db)
        write, read = access.create_token("alice", "write")[0], access.create_token("alice", "read")[0]
    finally:
        local.close()
    return Served(server, write, read)


def _registry(backend: str, home: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{home / 'registry.db'}", None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _postgres(f"CREATE SCHEMA {schema}")
    return _postgres_schema_url(schema), schema


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One server per backend, started when a test first asks for it, stopped at the module's end."""
    started: dict[str, Served] = {}
    schemas: list[str] = []

    def get(backend: str) -> Served:
        if backend not in started:
            home = tmp_path_factory.mktemp(f"server-{backend}")
            url, schema = _registry(backend, home)
            if schema:
                schemas.append(schema)
            started[backend] = _start(home, url)
        return started[backend]

    yield get
    for served in started.values():
        served.server.stop()
    for schema in schemas:
        _postgres(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def served(servers, registry_url) -> Served:
    """The server of this test's backend (the registry behind it)."""
    return servers("sqlite" if registry_url.startswith("sqlite") else "postgresql")


def client_env(endpoint: str, home: Path, token: str | None = None, **more: str) -> dict[str, str]:
    """What a client's environment holds: the endpoint, the token, its cache; nothing of the server's."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HUB_ENDPOINT": endpoint, "HUB_HOME": str(home),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if token:
        env["HUB_TOKEN"] = token
    env.update(more)
    return env


def run_client(script: str, env: dict[str, str]) -> dict:
    """Run ``script`` in a client process; return what it passed to ``out(...)``."""
    result = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"client exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout + result.stderr
    return json.loads(lines[-1][len("RESULT "):])


def run_hub(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The ``hub`` CLI in a client process."""
    result = subprocess.run([sys.executable, "-m", "hub", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    if check:
        assert result.returncode == 0, f"hub {' '.join(args)} exited {result.returncode}: {result.stdout}{result.stderr}"
    return result


PUBLISH = """
    import torch
    torch.manual_seed(0)
    model = hub.create("mlp", in_features=8, hidden=[32], out_features=3)
    x = torch.linspace(-1, 1, 16).reshape(2, 8)
    first = hub.publish(model, "alice/mlp", aliases=["production"], task="tabular-classification", tags=["demo"])
    uploaded = hub.default_hub().publisher.uploaded
    big = hub.publish(hub.create("mlp", in_features=256, hidden=[512], out_features=4), "alice/big")
    bad = hub.publish(hub.create("mlp", in_features=64, hidden=[64], out_features=2), "alice/bad")
    h = hub.default_hub()
    out(ref=first.ref, aliases=list(first.aliases), y=model(x).tolist(), uploaded=uploaded,
        weights=[first.file(p).sha256 for p in first.weight_files], big=big.file(big.weight_files[0]).to_dict(),
        bad=bad.file(bad.weight_files[0]).to_dict(), type=type(h).__name__)
"""

USE = """
    import torch
    h = hub.default_hub()
    got = []
    h.blobs.on_bytes = got.append
    x = torch.linspace(-1, 1, 16).reshape(2, 8)
    model = hub.load("alice/mlp@production", device="auto")
    device = next(model.parameters()).device
    y = model(x.to(device)).cpu().tolist()
    state = hub.load_state_dict("alice/mlp:1")
    equal = all(torch.equal(state[k], v.cpu()) for k, v in model.state_dict().items())
    listed = [m.name for m in hub.list_models()]
    info = hub.info("alice/mlp").to_dict()
    versions = [v.ref for v in hub.list_versions("alice/mlp")]
    change = hub.set_alias("alice/mlp", "staging", 1)
    history = [c.to_dict() for c in hub.alias_history("alice/mlp", "staging")]
    folder = hub.download("alice/mlp:1", Path(os.environ["HUB_HOME"]) / "downloaded")
    files = sorted(p.name for p in folder.iterdir())
    again = hub.publish(model, "alice/mlp")  # the weights loaded, unchanged
    uploaded = h.publisher.uploaded
    fetched_before = sum(got)
    del got[:]
    big = hub.load_state_dict("alice/big:1")  # half of its blob is in partial/ already
    resumed = sum(got)
    bad = failure(hub.load, "alice/bad:1")
    out(y=y, device=device.type, equal=equal, listed=listed, info=info, versions=versions, change=change.to_dict(),
        history=history, files=files, again=again.to_dict(), uploaded=uploaded, resumed=resumed, bad=bad,
        fetched=fetched_before)
"""

AGAIN = """
    h = hub.default_hub()
    pinned = hub.load("alice/mlp:1")
    after_pinned = h.client.requests
    by_alias = hub.load("alice/mlp@production")
    out(after_pinned=after_pinned, after_alias=h.client.requests, downloaded=h.blobs.downloaded,
        refs=[pinned.hub_version.ref, by_alias.hub_version.ref])
"""


def test_publish_load_alias_download_and_the_cache(served, tmp_path):
    publisher_env = client_env(served.url, tmp_path / "publisher", served.write)
    published = run_client(PUBLISH, publisher_env)
    assert published["type"] == "RemoteHub" and published["ref"] == "alice/mlp:1" and published["aliases"] == ["production"]
    assert set(published["weights"]) <= set(published["uploaded"])
    stored = served.blobs()
    assert set(published["weights"]) <= stored

    # the server's copy of alice/bad's weights is damaged; half of alice/big's is in the user's partial/ already
    big, bad = published["big"], published["bad"]
    damaged = served.server.home / "blobs" / bad["sha256"]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    user = tmp_path / "user"
    (user / "partial").mkdir(parents=True)
    half = big["size"] // 2
    (user / "partial" / big["sha256"]).write_bytes((served.server.home / "blobs" / big["sha256"]).read_bytes()[:half])

    used = run_client(USE, client_env(served.url, user, served.write))
    assert used["y"] == published["y"]  # loaded on meta, weights from the cache's safetensors: the same model
    assert used["equal"] and used["device"] in ("cpu", "cuda")
    assert {"alice/mlp", "alice/big", "alice/bad"} <= set(used["listed"])
    assert used["info"]["ref"] == "alice/mlp:1" and used["info"]["task"] == "tabular-classification"
    assert used["versions"] == ["alice/mlp:1"]
    assert used["change"]["changed_by"] == "alice" and used["change"]["to_version"] == 1
    assert [(c["to_version"], c["changed_by"]) for c in used["history"]] == [(1, "alice")]
    assert "model.safetensors" in used["files"] and "modelhub.json" in used["files"]
    again = used["again"]
    assert again["ref"] == "alice/mlp:2" and again["parent"] == "alice/mlp:1"
    assert [f["sha256"] for f in again["files"] if f["path"] in again["weight_files"]] == published["weights"]
    assert not set(used["uploaded"]) & set(published["weights"])  # unchanged weights: no weight bytes sent
    new = served.blobs() - stored - {bad["sha256"]}
    assert new == {again["digest"], *[f["sha256"] for f in again["files"]]} - stored  # the manifest (and a card) alone
    assert used["resumed"] == big["size"] - half  # the rest of the blob, not all of it
    assert any(" 206" in line and big["sha256"] in line for line in served.blob_requests())
    assert used["bad"][0] == "IntegrityError" and bad["sha256"] in used["bad"][1]
    assert not (user / "blobs" / bad["sha256"]).exists() and not (user / "partial" / bad["sha256"]).exists()

    # a second load of name:N asks the server nothing; of name@alias, one small request and no blob bytes
    blob_requests = len(served.blob_requests())
    again = run_client(AGAIN, client_env(served.url, user, served.write))
    assert again["after_pinned"] == 0 and again["after_alias"] == 1 and again["downloaded"] == []
    assert again["refs"] == ["alice/mlp:1", "alice/mlp:1"]
    assert len(served.blob_requests()) == blob_requests


STREAMED = """
    import hashlib
    import torch
    from hub.remote.publisher import STREAM_MIN
    h = hub.default_hub()
    torch.manual_seed(1)
    state = {"w": torch.randn(STREAM_MIN // 4 + 1000)}  # a weight file over STREAM_MIN: sent while it is built
    first = hub.publish(state, "alice/streamed")
    sent_first = h.publisher.uploaded
    again = hub.publish(state, "alice/streamed")  # the same bytes: the latest version has a file of that size
    sent_again = h.publisher.uploaded
    changed = hub.publish({"w": state["w"] + 1}, "alice/streamed")  # the same size, other bytes: hashed, then uploaded
    sent_changed = h.publisher.uploaded
    cached = hashlib.sha256(h.blobs.read_bytes(first.file(first.weight_files[0]).sha256)).hexdigest()
    out(weights=[v.file(v.weight_files[0]).sha256 for v in (first, again, changed)], cached=cached,
        sent=[sent_first, sent_again, sent_changed])
"""


def test_a_large_weight_file_is_sent_while_it_is_built_and_unchanged_weights_are_not_sent(served, tmp_path):
    def requests(kind: str) -> list[str]:
        return [line for line in served.server.stdout_text().splitlines() if kind in line]

    streamed, patched = requests("/alice/streamed/-/blobs"), requests("PATCH /api/v1/uploads/")
    answer = run_client(STREAMED, client_env(served.url, tmp_path / "client", served.write))
    first, again, changed = answer["weights"]
    assert first == again != changed and answer["cached"] == first
    sent_first, sent_again, sent_changed = answer["sent"]
    assert first in sent_first and first not in sent_again and changed in sent_changed
    new_streams = requests("/alice/streamed/-/blobs")[len(streamed):]
    assert len(new_streams) == 1 and " 201" in new_streams[0]  # the first publish alone streamed its weights
    new_patches = requests("PATCH /api/v1/uploads/")[len(patched):]
    assert not any(first in line for line in new_patches)  # sent once, while built
    assert any(changed in line for line in new_patches)  # the changed weights: by sha256, once they were hashed
    stored = served.server.home / "blobs"
    for digest in (first, changed):
        assert hashlib.sha256((stored / digest).read_bytes()).hexdigest() == digest


def test_a_large_weight_file_refused_while_it_is_built_leaves_nothing(served, tmp_path):
    from hub.access import Access
    from hub.api import Hub

    local = Hub(served.server.home, served.server.registry_url)
    try:
        access = Access(local.db)
        access.create_token("carol", "read")
        access.create_namespace("carols", owners=["carol"])
        token = access.create_token("mallory", "write")[0]  # write scope, but no say in namespace carols
    finally:
        local.close()
    script = """
        import torch
        from hub.remote.publisher import STREAM_MIN
        state = {"w": torch.randn(STREAM_MIN // 4 + 10)}
        out(refused=failure(hub.publish, state, "carols/not-mallorys"), sent=hub.default_hub().publisher.uploaded)
    """
    before = served.blobs()
    answer = run_client(script, client_env(served.url, tmp_path / "mallory", token))
    assert answer["refused"][0] == "PermissionDeniedError" and answer["sent"] == []
    assert served.blobs() == before  # the stream was refused before a byte was kept, and nothing else was uploaded
    folder = served.server.home / "blobs"
    assert not folder.is_dir() or all(re.fullmatch(r"[0-9a-f]{64}", p.name) for p in folder.iterdir())  # no temporary file
    assert any("/carols/not-mallorys/-/blobs" in line and " 403" in line for line in served.server.stdout_text().splitlines())


def test_tokens_decide_who_writes(served, tmp_path):
    script = f"""
        import torch
        from hub.remote import RemoteHub
        module = hub.create("mlp", in_features=2, hidden=[2], out_features=1)
        anonymous = failure(hub.publish, module, "alice/anonymous")
        reader = RemoteHub(token={served.read!r})
        read_publish = failure(reader.publish, module, "alice/read-only")
        read_tag = failure(reader.set_alias, "alice/mlp", "nope", 1)
        bad = failure(RemoteHub(token="mh_0123456789abcdef_not-a-secret").list_models)
        hidden = failure(hub.info, "alice/mlp")  # private to anonymous: as missing
        route = failure(hub.default_hub().client.json, "GET", "/api/v1/no-such-route")
        out(anonymous=anonymous, read_publish=read_publish, read_tag=read_tag, bad=bad, hidden=hidden, route=route)
    """
    before = served.blobs()
    answer = run_client(script, client_env(served.url, tmp_path / "anonymous"))
    assert answer["anonymous"][0] == "AuthenticationError" and "HUB_TOKEN" in answer["anonymous"][1]
    assert answer["read_publish"][0] == "PermissionDeniedError" and "write scope" in answer["read_publish"][1]
    assert answer["read_tag"][0] == "PermissionDeniedError"
    assert answer["bad"][0] == "AuthenticationError"
    assert answer["hidden"][0] == "ModelNotFoundError"
    assert answer["route"][0] == "RemoteError"  # a type that is no hub error
    assert served.blobs() == before  # nothing was uploaded


def test_the_cli_against_a_server(served, tmp_path):
    from safetensors.torch import save_file
    import torch

    weights = tmp_path / "weights.safetensors"
    save_file({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, weights)
    env = client_env(served.url, tmp_path / "cli", served.write)
    assert "published alice/cli:1" in run_hub(env, "publish", str(weights), "alice/cli", "--alias", "production").stdout
    assert "alice/cli" in run_hub(env, "list").stdout
    assert "alice/cli:1" in run_hub(env, "info", "alice/cli@production").stdout
    assert "1" in run_hub(env, "versions", "alice/cli").stdout
    assert "alice/cli@staging -> 1" in run_hub(env, "tag", "alice/cli:1", "staging").stdout
    history = run_hub(env, "history", "alice/cli", "staging").stdout
    assert "alice" in history
    folder = Path(run_hub(env, "download", "alice/cli:1", "--to", str(tmp_path / "out")).stdout.strip())
    assert [p.read_bytes() for p in folder.glob("*.safetensors")] == [weights.read_bytes()]
    assert "removed alice/cli@staging" in run_hub(env, "untag", "alice/cli", "staging").stdout
    run_hub(env, "verify")  # the cache: every blob it holds hashes to its name
    assert "deleted alice/cli:1" in run_hub(env, "delete", "alice/cli:1").stdout
    gc = run_hub(env, "gc", check=False)
    assert gc.returncode != 0 and "runs on the hub server" in gc.stderr and len(gc.stderr.strip().splitlines()) == 1
    anonymous = run_hub(client_env(served.url, tmp_path / "anon"), "publish", str(weights), "alice/cli2", check=False)
    assert anonymous.returncode != 0 and "token" in anonymous.stderr


def hub_create():
    import hub

    return hub.create("mlp", in_features=4, hidden=[4], out_features=2)


def test_offline_loads_what_the_cache_holds(registry_url, tmp_path):
    backend = "sqlite" if registry_url.startswith("sqlite") else "postgresql"
    url, schema = _registry(backend, tmp_path / "server")
    served = _start(tmp_path / "server", url)
    home = tmp_path / "client"
    try:  # the cache filled online, by a client in this process (the offline one is another)
        import torch

        from hub.remote import RemoteHub

        online_hub = RemoteHub(served.url, served.write, home=home, offline=False)
        torch.manual_seed(1)
        for aliases in (["production"], []):
            online_hub.publish(hub_create(), "alice/off", aliases=aliases)
        x = torch.ones(1, 4)
        online = {"pinned": online_hub.load("alice/off:2")(x).tolist(), "alias": online_hub.load("alice/off@production")(x).tolist()}
        online_hub.close()
    finally:
        served.server.stop()
        if schema:
            _postgres(f"DROP SCHEMA {schema} CASCADE")
    offline = run_client("""
        import torch
        x = torch.ones(1, 4)
        h = hub.default_hub()
        out(pinned=hub.load("alice/off:2")(x).tolist(), alias=hub.load("alice/off@production")(x).tolist(),
            never=failure(hub.load, "alice/off:3"), unseen=failure(hub.info, "alice/off@staging"),
            latest=hub.info("alice/off").ref,
            listing=failure(hub.list_models), requests=h.client.requests)
    """, client_env(served.url, home, served.write, HUB_OFFLINE="1"))
    assert offline["pinned"] == online["pinned"] and offline["alias"] == online["alias"]
    assert offline["never"][0] == "OfflineError" and "alice/off:3" in offline["never"][1]
    assert offline["unseen"][0] == "OfflineError" and offline["listing"][0] == "OfflineError"
    assert offline["latest"] == "alice/off:2"  # the latest version as last seen (this client published it)
    assert offline["requests"] == 0
    stopped = run_client("out(error=failure(hub.list_models))", client_env(served.url, home, served.write))
    assert stopped["error"][0] == "RemoteError" and "HUB_ENDPOINT" in stopped["error"][1]


@pytest.mark.one_backend
def test_error_answers_become_hub_errors():
    import hub
    from hub.remote.client import error_from

    digest = "a" * 64
    missing = error_from(409, {"error": {"type": "MissingBlobsError", "message": "upload them", "digests": [digest]}}, what="w")
    assert isinstance(missing, hub.MissingBlobsError) and missing.digests == (digest,) and str(missing) == "upload them"
    denied = error_from(403, {"error": {"type": "PermissionDeniedError", "message": "no", "settings": {"x": "x="}}}, what="w")
    assert isinstance(denied, hub.PermissionDeniedError) and denied.settings == {"x": "x="}
    assert type(error_from(507, {"error": {"type": "NoSpaceError", "message": "full"}}, what="w")) is hub.NoSpaceError
    for body in ({"error": {"type": "InternalError", "message": "boom"}}, {"error": {"type": "Exception", "message": "x"}},
                 {"error": {"type": "os", "message": "x"}}, "not json", None):
        assert type(error_from(500, body, what="GET /x")) is hub.RemoteError
    assert type(error_from(401, None, what="GET /x")) is hub.AuthenticationError


class CuttingProxy:
    """A TCP proxy on a free loopback port in front of the server that cuts the first answer for blob
    ``digest`` off after ``cut`` bytes (closing both sides), as a dropped connection would; it records
    the request line and Range header of each blob request it forwards."""

    def __init__(self, upstream: str, digest: str, cut: int) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream, self.digest, self.cut, self.cuts_left, self.requests = (host, int(port)), digest, cut, 1, []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(downstream,), daemon=True).start()

    def _serve(self, downstream: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        cutting = threading.Event()  # set once this connection carries the request to cut (keep-alive: any of its requests)

        def requested(data: bytes) -> None:
            self._record(data)
            with self.lock:
                if f"GET /api/v1/blobs/{self.digest}".encode() in data and self.cuts_left > 0:
                    self.cuts_left -= 1
                    cutting.set()

        threading.Thread(target=self._pump, args=(downstream, upstream, None, requested), daemon=True).start()
        self._pump(upstream, downstream, self.cut, cutting=cutting)

    def _record(self, data: bytes) -> None:
        for head in data.split(b"GET /api/v1/blobs/")[1:]:  # the blob requests in what a client sent
            lines = ("GET /api/v1/blobs/" + head.decode("latin-1")).split("\r\n")
            with self.lock:
                self.requests.append((lines[0], next((l for l in lines if l.lower().startswith("range:")), None)))

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, limit: int | None, record=None, cutting=None) -> None:
        """Forward ``source`` to ``sink``; once ``cutting`` is set (the answer after it is the one to cut: a
        client sends its next request only after the last answer), stop ``limit`` bytes later."""
        sent = 0
        try:
            while data := source.recv(65536):
                if record is not None:
                    record(data)
                if cutting is not None and cutting.is_set():
                    if sent + len(data) >= limit:
                        sink.sendall(data[: limit - sent])
                        break
                    sent += len(data)
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_a_download_cut_off_midway_goes_on_where_it_stopped(served, tmp_path):
    import torch

    from hub.remote import RemoteHub

    publisher = RemoteHub(served.url, served.write, home=tmp_path / "publisher", offline=False)
    weights = {"w": torch.arange(300_000, dtype=torch.float32)}
    version = publisher.publish(weights, "alice/cut-off")
    publisher.close()
    entry = version.file(version.weight_files[0])
    proxy = CuttingProxy(served.url, entry.sha256, cut=entry.size // 3)
    try:
        env = client_env(proxy.url, tmp_path / "user", served.write)
        folder = Path(run_hub(env, "download", version.ref, "--to", str(tmp_path / "out")).stdout.strip())
    finally:
        proxy.close()
    stored = (served.server.home / "blobs" / entry.sha256).read_bytes()
    assert (folder / entry.path).read_bytes() == stored
    blob_requests = [(line, span) for line, span in proxy.requests if entry.sha256 in line]
    assert len(blob_requests) == 2 and blob_requests[0][1] is None  # cut off, then asked for the rest
    start = int(blob_requests[1][1].split("=")[1].split("-")[0])
    assert 0 < start < entry.size and not (tmp_path / "user" / "partial" / entry.sha256).exists()


@pytest.mark.one_backend
def test_import_hf_and_load_tokenizer_over_http(served, tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32, num_labels=2)
    model = transformers.BertForSequenceClassification(config).eval()
    folder = tmp_path / "tiny-bert"
    model.save_pretrained(folder)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "hub", "loads", "models", "over", "http"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    batch = tokenizer(["the hub loads models over http"], return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits.tolist()
    script = f"""
        import torch
        from hub.remote import RemoteHub
        version = hub.import_hf({str(folder)!r}, "alice/tiny-bert", aliases=["production"])
        reader = RemoteHub(home=Path(os.environ["HUB_HOME"]) / "other")  # another, empty cache
        tokenizer = reader.load_tokenizer("alice/tiny-bert@production")
        model = reader.load("alice/tiny-bert@production", device="cpu")
        batch = tokenizer(["the hub loads models over http"], return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits.tolist()
        out(architecture=version.architecture, ids=batch["input_ids"].tolist(), logits=logits,
            fetched=len(reader.blobs.downloaded))
    """
    answer = run_client(script, client_env(served.url, tmp_path / "client", served.write))
    assert answer["architecture"] == "transformers"
    assert answer["ids"] == batch["input_ids"].tolist()
    assert torch.allclose(torch.tensor(answer["logits"]), torch.tensor(expected), atol=1e-5)
    assert answer["fetched"] >= 2  # the weights and the tokenizer's files came over HTTP

