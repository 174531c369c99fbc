"""``GET /api/v1/models/{name}/-/versions/{n}/files/{path}``: a version's file by its path, against a
real ``hub serve``: the bytes of its blob, ranges, the cache headers, and the same rules as the blobs'."""

from __future__ import annotations

import hashlib

import httpx
import pytest
import torch
from server_process import start_server

import hub
from hub.access import Access

pytestmark = pytest.mark.one_backend  # a route over hub.info and the blob store; test_server covers both registries


def test_a_version_s_files_by_path(hub_home, registry_url):
    hub.publish({"w": torch.arange(10.0)}, "team/files", card="# A card\n\nFor the files route.", aliases=["production"])
    hub.publish({"w": torch.ones(3)}, "secret/files")
    access = Access(hub.default_hub().db)
    token = access.create_token("alice", "read")[0]
    access.create_namespace("team", owners=["alice"], visibility="public")
    access.create_namespace("secret", owners=["alice"], visibility="private")
    version = hub.info("team/files:1")
    with start_server(hub_home, registry_url) as server, httpx.Client(base_url=f"{server.url}/api/v1") as client:
        card = client.get("/models/team/files/-/versions/1/files/README.md")
        assert card.status_code == 200 and "For the files route." in card.text
        assert card.headers["etag"] == f'"{version.file("README.md").sha256}"'
        assert "public" in card.headers["cache-control"] and "immutable" in card.headers["cache-control"]
        weights = version.weight_files[0]
        whole = client.get(f"/models/team/files/-/versions/1/files/{weights}")
        assert hashlib.sha256(whole.content).hexdigest() == version.file(weights).sha256
        part = client.get(f"/models/team/files/-/versions/1/files/{weights}", headers={"Range": "bytes=0-7"})
        assert part.status_code == 206 and part.content == whole.content[:8]
        assert client.head("/models/team/files/-/versions/1/files/README.md").headers["content-length"] == str(len(card.content))

        missing = client.get("/models/team/files/-/versions/1/files/nope.txt")
        assert missing.status_code == 404 and "README.md" in missing.json()["error"]["message"]
        assert client.get("/models/team/files/-/versions/9/files/README.md").status_code == 404
        # A private model's files are as missing to anonymous readers, and readable with a token that may.
        hidden = client.get("/models/secret/files/-/versions/1/files/model.safetensors")
        assert hidden.status_code == 404 and "secret" not in hidden.json()["error"]["message"].replace("'secret/files'", "")
        allowed = client.get("/models/secret/files/-/versions/1/files/model.safetensors", headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200 and allowed.headers["cache-control"].startswith("private"), allowed.text
        assert client.get("/models/team/../secret/-/versions/1/files/README.md").status_code in (400, 404)
