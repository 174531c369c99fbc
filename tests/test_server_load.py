"""A bounded load test of ``hub serve`` (loopback only; it stops by itself): concurrent remote clients
in other processes mix loads, listings and publishes for a while; afterwards there were no errors,
nothing acknowledged is lost, every version is distinct and loads with the weights its client sent.

Short form (CI): 8 clients (2 processes x 4 threads) for 8 s. Long form (``HUB_TEST_LONG=1``): the
issue's 32 clients (4 x 8) for 60 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
import torch
from conftest import ROOT
from server_process import start_server

import hub
from hub.access import Access

LONG = os.environ.get("HUB_TEST_LONG") == "1"
PROCESSES, THREADS, SECONDS = (4, 8, 60) if LONG else (2, 4, 8)
CLIENT = ROOT / "tests" / "helpers" / "load_client.py"


def test_concurrent_clients_lose_nothing_and_get_distinct_versions(hub_home, registry_url, tmp_path):
    torch.manual_seed(0)
    hub.publish(hub.create("mlp", in_features=4, hidden=[8], out_features=3), "load/base", aliases=["prod"])
    access = Access(hub.default_hub().db)
    token = access.create_token("loader", "write")[0]
    access.create_namespace("load", owners=["loader"])
    with start_server(hub_home, registry_url) as server:
        env = {"PATH": os.environ["PATH"], "HUB_ENDPOINT": server.url, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        clients = [subprocess.Popen([sys.executable, str(CLIENT), server.url, token, str(tmp_path / "caches"),
                                     str(p * THREADS), str(THREADS), str(SECONDS), "7"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
                   for p in range(PROCESSES)]
        outputs = [c.communicate(timeout=SECONDS + 240) for c in clients]
        assert "Traceback" not in server.stderr_text(), server.stderr_text()[-3000:]
    records = [json.loads(line) for out, _ in outputs for line in out.splitlines() if line.startswith("{")]
    for client, (_, err) in zip(clients, outputs):
        assert client.returncode == 0, err[-3000:]
    errors = [r["error"] for r in records if "error" in r]
    assert not errors, errors[:3]
    done = [r["done"] for r in records if "done" in r]
    assert len(done) == PROCESSES * THREADS
    totals = Counter()
    for counts in done:
        totals.update({k: v for k, v in counts.items() if k != "client"})
    assert totals["loads"] and totals["lists"] and totals["publishes"], totals

    published = [r["published"] for r in records if "published" in r]
    assert len(published) == totals["publishes"]
    numbers = [(p["name"], p["version"]) for p in published]
    assert len(set(numbers)) == len(numbers), "two publishes were acknowledged with the same version"
    # Nothing acknowledged is lost, nothing unacknowledged appeared, and each version is what its client sent.
    live = {(v.name, v.version) for m in hub.list_models("load/m", limit=None) for v in hub.list_versions(m.name)}
    assert live == set(numbers)
    for record in published:
        ref = f"{record['name']}:{record['version']}"
        version = hub.info(ref)
        assert (version.digest, version.metadata["client"], version.metadata["seq"]) == (record["digest"], record["client"], record["seq"])
        assert version.metadata and hub.load_state_dict(ref)["seq"].tolist() == [record["client"], record["seq"]]
    assert hub.verify().problems == ()
    print(f"\nload test: {PROCESSES * THREADS} clients for {SECONDS} s: {dict(totals)}")
