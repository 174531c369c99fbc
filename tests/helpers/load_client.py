"""A client process of tests/test_server_load.py: threads, each its own remote hub with a cache of its
own, mixing loads, listings and publishes against one ``hub serve`` until a deadline.

Usage: ``load_client.py ENDPOINT TOKEN CACHE_ROOT FIRST_ID THREADS SECONDS SEED``. Prints one JSON line
per acknowledged publish (``{"published": ...}``), per error (``{"error": ...}``) and, at the end, per
thread (``{"done": ...}`` with its counts); the environment names no registry and no server folder.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import traceback

import torch

from hub.remote import RemoteHub

MODELS = [f"load/m{i}" for i in range(4)]  # shared by every client: their publishes race for numbers
lock = threading.Lock()


def say(**record) -> None:
    with lock:
        print(json.dumps(record), flush=True)


def client(endpoint: str, token: str, home: str, client_id: int, deadline: float, seed: int) -> None:
    rng = random.Random(seed * 1000 + client_id)
    hub = RemoteHub(endpoint, token, home=f"{home}/client-{client_id}")
    mine: list[tuple[str, int, int]] = []  # (name, version, seq) this client published
    counts = {"loads": 0, "lists": 0, "publishes": 0}
    seq = 0
    while time.monotonic() < deadline:
        what = rng.random()
        try:
            if what < 0.25:
                model = hub.load("load/base@prod", device="cpu")
                assert model(torch.zeros(1, 4)).shape == (1, 3)
                counts["loads"] += 1
            elif what < 0.45 and mine:
                name, version, number = rng.choice(mine)
                weights = hub.load_state_dict(f"{name}:{version}")
                assert weights["seq"].tolist() == [client_id, number], (name, version, weights["seq"].tolist())
                counts["loads"] += 1
            elif what < 0.7:
                page = hub.list_models("load", limit=3, offset=rng.randrange(3))
                assert all(m.name.startswith("load/") for m in page)
                counts["lists"] += 1
            else:
                seq += 1
                name = rng.choice(MODELS)
                weights = {"w": torch.full((rng.randrange(16, 50_000),), float(seq)), "seq": torch.tensor([client_id, seq])}
                version = hub.publish(weights, name, metadata={"client": client_id, "seq": seq})
                mine.append((name, version.version, seq))
                counts["publishes"] += 1
                say(published={"name": name, "version": version.version, "client": client_id, "seq": seq,
                               "digest": version.digest})
        except Exception as exc:  # every error is reported: the test expects none
            say(error={"client": client_id, "type": type(exc).__name__, "message": str(exc)[:500],
                       "trace": traceback.format_exc()[-1500:]})
    say(done={"client": client_id, **counts})


def main() -> None:
    endpoint, token, home, first, threads, seconds, seed = sys.argv[1:8]
    deadline = time.monotonic() + float(seconds)
    workers = [threading.Thread(target=client, args=(endpoint, token, home, int(first) + i, deadline, int(seed)))
               for i in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
