"""What a Hugging Face client sees of a hub served by ``hub serve``, printed as one JSON object.

Run in a process of its own, with ``HF_ENDPOINT`` pointing at the server and ``HF_HOME`` at an empty
folder, by any huggingface_hub (the pinned 2.x of the test environment, the newest 0.x in a venv of
its own); it imports nothing from modelhub.

    python hf_client_checks.py downloads '{"repo": "acme/minilm", "revisions": {"main": "main"}, ...}'
    python hf_client_checks.py models '{"repo": "acme/minilm", "sentences": [...], ...}'

``downloads`` (huggingface_hub only): every revision's snapshot as ``{path: sha256}``, a ranged resume
of one file, model_info, list_repo_files, list_repo_refs, list_repo_tree, whoami, and the error class
each failure raises. ``models`` (transformers, sentence-transformers): the outputs of models loaded by
repo id, as lists of floats.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path


def _hashes(folder: str) -> dict[str, str]:
    root = Path(folder)
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _error(call) -> dict[str, object]:
    """The class of what ``call()`` raises, and its base classes' names; None when it does not raise."""
    try:
        call()
    except Exception as error:  # the class is what is checked
        return {"class": type(error).__name__, "bases": [c.__name__ for c in type(error).__mro__],
                "status": getattr(getattr(error, "response", None), "status_code", None)}
    return {"class": None, "bases": [], "status": None}


def downloads(spec: dict) -> dict:
    import huggingface_hub
    from huggingface_hub import HfApi, hf_hub_download, hf_hub_url, snapshot_download
    from huggingface_hub.file_download import get_hf_file_metadata, http_get

    repo, cache = spec["repo"], spec["cache"]
    api = HfApi()
    result: dict = {"version": huggingface_hub.__version__, "snapshots": {}}
    for label, revision in spec["revisions"].items():
        result["snapshots"][label] = _hashes(snapshot_download(repo, revision=revision, cache_dir=f"{cache}/{label}"))
    path = hf_hub_download(repo, spec["file"], cache_dir=f"{cache}/one")
    result["hf_hub_download"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()

    url = hf_hub_url(repo, spec["file"])
    metadata = get_hf_file_metadata(url)
    whole = Path(path).read_bytes()
    half = len(whole) // 2
    resumed = Path(cache) / "resumed.incomplete"
    resumed.write_bytes(whole[:half])
    with open(resumed, "ab") as file:  # what the client does after a dropped connection: Range: bytes=half-
        http_get(metadata.location, file, resume_size=half, expected_size=metadata.size)
    result["resumed"] = {"sha256": hashlib.sha256(resumed.read_bytes()).hexdigest(), "from": half,
                         "etag": metadata.etag, "size": metadata.size, "commit": metadata.commit_hash}

    info = api.model_info(repo, files_metadata=True)
    card = info.card_data.to_dict() if info.card_data is not None else None
    result["model_info"] = {
        "id": info.id, "sha": info.sha, "private": info.private, "tags": info.tags, "pipeline_tag": info.pipeline_tag,
        "last_modified": info.last_modified.isoformat() if info.last_modified else None, "card_data": card,
        "library_name": getattr(info, "library_name", None),
        "siblings": [{"path": s.rfilename, "size": s.size, "blob_id": s.blob_id, "lfs": s.lfs.sha256 if s.lfs else None}
                     for s in info.siblings or []],
    }
    result["model_info_alias_sha"] = api.model_info(repo, revision=spec["alias"]).sha
    result["files"] = api.list_repo_files(repo)
    refs = api.list_repo_refs(repo)
    result["refs"] = {"branches": {r.name: r.target_commit for r in refs.branches},
                      "tags": {r.name: r.target_commit for r in refs.tags}}
    tree = list(api.list_repo_tree(repo, recursive=True))
    result["tree"] = [{"path": t.path, "type": "file" if hasattr(t, "size") and hasattr(t, "blob_id") else "directory",
                       "size": getattr(t, "size", None), "lfs": t.lfs.sha256 if getattr(t, "lfs", None) else None}
                      for t in tree]
    result["tree_folder"] = sorted(t.path for t in api.list_repo_tree(repo, path_in_repo=spec["folder"]))

    private, token = spec["private_repo"], spec["token"]
    result["errors"] = {
        "private_anonymous": _error(lambda: snapshot_download(private, cache_dir=f"{cache}/anon", token=False)),
        "missing_file": _error(lambda: hf_hub_download(repo, "no-such-file.txt", cache_dir=f"{cache}/miss")),
        "bad_revision": _error(lambda: hf_hub_download(repo, spec["file"], revision="no-such-alias", cache_dir=f"{cache}/rev")),
        "missing_repo": _error(lambda: api.model_info("acme/no-such-model", token=False)),
    }
    os.environ["HF_TOKEN"] = token
    result["private_with_token"] = _hashes(snapshot_download(private, cache_dir=f"{cache}/private", token=token))
    result["whoami"] = api.whoami(token=token)
    return result


def models(spec: dict) -> dict:
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    repo, sentences = spec["repo"], spec["sentences"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(repo)
    batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    model = transformers.AutoModel.from_pretrained(repo).eval()
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    classifier = transformers.AutoModelForSequenceClassification.from_pretrained(spec["classifier"]).eval()
    with torch.no_grad():
        logits = classifier(**batch).logits
    embeddings = SentenceTransformer(repo, device="cpu").encode(sentences)
    return {"input_ids": batch["input_ids"].tolist(), "attention_mask": batch["attention_mask"].tolist(), "hidden": hidden.tolist(), "logits": logits.tolist(),
            "embeddings": embeddings.tolist()}


if __name__ == "__main__":
    mode, given = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"downloads": downloads, "models": models}[mode](given)))
