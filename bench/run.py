"""Run every modelhub benchmark and print one summary table; write ``bench/results/latest.json``.

Benchmarks (each module's docstring says what it measures and its targets):

* bench_load.py     Hub.load against safetensors load_file + meta build + assign
                    (~100 MB and ~1 GB): time <= 1.2x, peak memory <= 1.1x the weights
* bench_publish.py  publishing a 1 GiB state dict: >= 0.7 GB/s, compared with sha256
                    alone and with write + fsync; republishing adds no weight bytes
* bench_registry.py 10,000 models x 10 versions: `hub list --json --all` < 0.5 s,
                    resolving a reference < 5 ms
* bench_hf.py       all-MiniLM-L6-v2: hub.load <= 1.2x the floor and >= 1.5x faster than
                    transformers' from_pretrained; time to first output;
                    importing a 1 GiB sharded checkpoint >= 0.5 GB/s
* bench_finetune.py finetune.run against a hand-written PyTorch loop (mlp on sklearn digits,
                    read CSV -> publish) <= 1.05x; convnet on digits: validation accuracy
                    >= 0.95 in < 60 s; a head-only fine-tune of a ~1 GB mlp grows the
                    blob store by < 5% of its weights
* bench_trainer.py  finetune.run against transformers' Trainer (all-MiniLM-L6-v2, text
                    classification, 1,600 + 400 sentences, 2 epochs, batch 32, one thread,
                    data -> trained model) <= 0.9x, at equal held-out accuracy
* bench_server.py   `hub serve` over loopback HTTP: a 1 GB blob download >= 0.8x nginx;
                    a remote load + pass of a ~1 GB mlp <= 1.5x the local one with a cold
                    cache, <= 1.1x warm; publishing 1 GB >= 0.8x a local publish; one page
                    of `hub list` on 10,000 models < 50 ms
* bench_hf_server.py the Hugging Face clients against `hub serve`: snapshot_download of
                    all-MiniLM-L6-v2 and of a ~1 GB sharded BERT >= 0.8x the throughput of
                    `hub download`; from_pretrained through HF_ENDPOINT, warm cache,
                    <= 1.2x from_pretrained on a local folder
* bench_serving.py  `hub serve-models` under 64 concurrent OIP v2 clients, digits convnet
                    and all-MiniLM-L6-v2: dynamic batching >= 3x the throughput of batching
                    off at no worse p99; the onnx and torch runtimes side by side; >= 1.5x
                    KServe's Python model server's throughput at equal or better p99

Every figure is a median over repeated runs, hub and baseline alternating, as a
ratio against a baseline measured in the same run. ``--quick`` shrinks every
size for a smoke run (under a minute).

Usage: ``.venv/bin/python bench/run.py [--quick] [--only load,publish,registry,hf,finetune,webui,trainer,server,hfserver,serving] ...``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

import torch

import bench_load
import bench_publish
import bench_finetune
import bench_hf
import bench_hf_server
import bench_registry
import bench_server
import bench_serving
import bench_trainer
import bench_webui
from common import BENCH_DIR, RESULTS_DIR, Row, print_table

BENCHES = ("load", "publish", "registry", "hf", "finetune", "webui", "trainer", "server", "hfserver", "serving")
FULL = {"load_sizes": "100,1000", "publish_mb": 1024, "models": 10_000, "versions": 10, "repeats": 5, "load_repeats": 15, "mem_repeats": 3,
        "calls": 200, "finetune_mb": 1000, "trainer_repeats": 3, "trainer_rows": 2000, "server_mb": 1000,
        "serving_seconds": 4.0, "serving_repeats": 3}
QUICK = {"load_sizes": "10", "publish_mb": 64, "models": 500, "versions": 10, "repeats": 3, "load_repeats": 5, "mem_repeats": 1,
         "calls": 50, "finetune_mb": 64, "trainer_repeats": 1, "trainer_rows": 100, "server_mb": 64,
         "serving_seconds": 1.0, "serving_repeats": 1}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (< 1 minute)")
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--load-sizes", help=f"load model sizes in MB (default {FULL['load_sizes']})")
    parser.add_argument("--publish-mb", type=int, help=f"publish state dict (and sharded import) size in MiB (default {FULL['publish_mb']})")
    parser.add_argument("--models", type=int, help=f"registry models (default {FULL['models']})")
    parser.add_argument("--versions", type=int, help=f"registry versions per model (default {FULL['versions']})")
    parser.add_argument("--repeats", type=int, help=f"measured rounds per contender (default {FULL['repeats']})")
    parser.add_argument("--load-repeats", type=int, help=f"warm load rounds per contender (default {FULL['load_repeats']})")
    parser.add_argument("--mem-repeats", type=int, help=f"fresh processes per load contender (default {FULL['mem_repeats']})")
    parser.add_argument("--calls", type=int, help=f"info() calls per reference kind (default {FULL['calls']})")
    parser.add_argument("--finetune-mb", type=int, help=f"finetune: size of the head-only base model in MB (default {FULL['finetune_mb']})")
    parser.add_argument("--trainer-repeats", type=int, help=f"trainer: measured rounds per contender (default {FULL['trainer_repeats']})")
    parser.add_argument("--trainer-rows", type=int, help=f"trainer: sentences, a fifth held out (default {FULL['trainer_rows']})")
    parser.add_argument("--server-mb", type=int, help=f"server: model and state dict size in MB, also hfserver's sharded BERT (default {FULL['server_mb']})")
    parser.add_argument("--serving-seconds", type=float, help=f"serving: measured seconds of each load run (default {FULL['serving_seconds']:g})")
    parser.add_argument("--serving-repeats", type=int, help=f"serving: measured rounds per server (default {FULL['serving_repeats']})")
    parser.add_argument("--cold-cache", action="store_true", help="load: drop the blob from the page cache before every load")
    parser.add_argument("--rebuild-registry", action="store_true", help="build the cached registry again")
    parser.add_argument("--tmp-dir", default=None, help="where temporary hubs go (default: the system temp folder)")
    parser.add_argument("--output", default=str(RESULTS_DIR / "latest.json"), help="where to write the JSON results")
    args = parser.parse_args()
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.only = [b for b in args.only.split(",") if b]
    unknown = set(args.only) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}")
    return args


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def run_benches(args: argparse.Namespace) -> tuple[list[Row], dict[str, float]]:
    """Every selected benchmark's rows, and how long each took."""
    torch.manual_seed(0)
    plans = {
        "load": lambda: bench_load.run([float(s) for s in args.load_sizes.split(",")], args.load_repeats, args.mem_repeats,
                                       args.cold_cache, args.tmp_dir, log),
        "publish": lambda: bench_publish.run(args.publish_mb, 16, args.repeats, args.tmp_dir, log),
        "webui": lambda: bench_webui.run(args.models, args.versions, args.repeats, args.rebuild_registry, log),
        "registry": lambda: bench_registry.run(args.models, args.versions, args.repeats, args.calls,
                                               args.rebuild_registry, log),
        "hf": lambda: bench_hf.run(args.load_repeats, args.tmp_dir, log, args.publish_mb),
        "finetune": lambda: bench_finetune.run(args.repeats, args.finetune_mb, args.tmp_dir, log),
        "trainer": lambda: bench_trainer.run(args.trainer_repeats, args.tmp_dir, log, rows=args.trainer_rows),
        "server": lambda: bench_server.run(args.server_mb, args.models, args.versions, args.repeats, args.calls,
                                           args.rebuild_registry, args.tmp_dir, log),
        "hfserver": lambda: bench_hf_server.run(args.server_mb, args.repeats, args.load_repeats, args.tmp_dir, log),
        "serving": lambda: bench_serving.run(args.serving_seconds, args.serving_repeats, args.tmp_dir, log),
    }
    rows: list[Row] = []
    durations: dict[str, float] = {}
    for name in args.only:
        start = time.perf_counter()
        rows += plans[name]()
        durations[name] = time.perf_counter() - start
    return rows, durations


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "platform": platform.platform(), "commit": commit, "torch_threads": torch.get_num_threads()}


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    rows, durations = run_benches(args)
    total = time.perf_counter() - started
    print()
    print_table(rows)
    print(f"\ntotal {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items()) + ")")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "output"}
    record = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "settings": settings,
              "environment": environment(), "durations_s": durations, "total_s": total, "rows": [r.to_dict() for r in rows]}
    with open(args.output, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
