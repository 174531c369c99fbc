"""Load benchmark: ``Hub.load(ref, device="cpu")`` against the floor of what any loader must do.

For each size (default ~100 MB and ~1 GB of float32 ``mlp`` weights, built with
``hub.create`` so the version has an architecture) one version is published
into a temporary hub. The floor is ``safetensors.torch.load_file(blob)`` +
building the same module under ``torch.device("meta")`` +
``load_state_dict(sd, assign=True)``.

Figures (medians; hub and floor run alternately in the same process):

(a) load time ratio hub / floor, on a warm ``Hub`` (one resolve already done),
    as a user process sees it after its first call.              target <= 1.2x
    These take milliseconds, so more rounds are used (default 15).
(b) load followed by one pass reading every weight (``t.sum()``), hub / floor:
    safetensors maps the file lazily, so (a) alone does not read the bytes.
(c) cold first call: the same two timings for the first load in a fresh
    process (torch and hub already imported; lazy imports, opening the
    registry and checking its schema count), hub / floor.
(d) peak memory above the process baseline for the first load + pass, as a
    multiple of the weights' byte size, in a fresh process per measurement
    (``VmHWM`` reset through ``/proc/self/clear_refs``, see load_child.py).
    RSS includes file-backed pages of the memory-mapped blob.    target <= 1.1x

The page cache is warm (the blob was just written, and is read each round)
unless ``--cold-cache`` drops the blob's pages before every load
(``posix_fadvise(DONTNEED)``), which then times reads from disk.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import hub
from common import BENCH_DIR, MB, Row, alternate, drop_file_cache, print_table, ratio_row, temp_dir, timed
from load_child import floor_load, weight_pass

BENCH = "load"
CHILD = BENCH_DIR / "load_child.py"


def mlp_config(size_mb: float) -> dict[str, Any]:
    """An ``mlp`` of five square ``width x width`` layers holding about ``size_mb`` MB of float32."""
    width = max(64, round(math.sqrt(size_mb * MB / 4 / 5) / 64) * 64)
    return {"in_features": width, "hidden": [width] * 4, "out_features": width}


def publish_model(instance: hub.Hub, size_mb: float) -> dict[str, Any]:
    """Publish a random ``mlp`` of about ``size_mb`` MB; describe what the benchmark needs."""
    config = mlp_config(size_mb)
    module = hub.create("mlp", **config)
    weight_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    version = instance.publish(module, f"bench/mlp-{int(size_mb)}mb")
    blob = instance.blobs.path(version.file("model.safetensors").sha256)
    return {"ref": version.ref, "config": config, "blob": str(blob), "weight_bytes": weight_bytes}


def one_load(load: Any, model: dict[str, Any], cold_cache: bool) -> dict[str, float]:
    """Time one load and one load + full weight pass; free the module afterwards."""
    if cold_cache:
        drop_file_cache(model["blob"])
    load_s, module = timed(load)
    pass_s, _ = timed(lambda: weight_pass(module))
    del module
    gc.collect()
    return {"load": load_s, "load_pass": load_s + pass_s}


def warm_timings(home: Path, model: dict[str, Any], repeats: int, cold_cache: bool) -> dict[str, dict[str, float]]:
    """Medians of (a) and (b): hub on a warm instance against the floor, alternately."""
    warm = hub.Hub(home=home, registry_url=None)
    warm.info(model["ref"])  # the first resolve (schema check, connection) is the cold call's business
    try:
        return alternate({
            "hub": lambda: one_load(lambda: warm.load(model["ref"], device="cpu"), model, cold_cache),
            "floor": lambda: one_load(lambda: floor_load(model["blob"], model["config"]), model, cold_cache),
        }, repeats)
    finally:
        warm.close()


def run_child(mode: str, home: Path, model: dict[str, Any], cold_cache: bool) -> dict[str, float]:
    """One cold load + pass in a fresh process; its timings and memory readings."""
    if cold_cache:
        drop_file_cache(model["blob"])
    spec = {"mode": mode, "home": str(home), "ref": model["ref"], "blob": model["blob"], "config": model["config"]}
    env = {k: v for k, v in os.environ.items() if k not in ("HUB_HOME", "HUB_REGISTRY_URL")}
    out = subprocess.run([sys.executable, str(CHILD), json.dumps(spec)], env=env, cwd=BENCH_DIR,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cold_runs(home: Path, model: dict[str, Any], repeats: int, cold_cache: bool) -> dict[str, dict[str, float]]:
    """Medians over fresh processes, hub and floor alternately (no warm-up: every run is a first call)."""
    return alternate({mode: (lambda mode=mode: run_child(mode, home, model, cold_cache)) for mode in ("hub", "floor")},
                     repeats, warmup=0)


def rows_for(label: str, model: dict[str, Any], warm: dict[str, dict[str, float]], cold: dict[str, dict[str, float]],
             cache: str) -> list[Row]:
    """The table rows for one model size."""
    weights = model["weight_bytes"]
    hub_peak, floor_peak = (cold[m]["peak_above_kb"] * 1024 / weights for m in ("hub", "floor"))
    memory = Row(BENCH, f"{label} (d) peak RSS above baseline, first load + pass", hub_peak, floor_peak, "x weights",
                 hub_peak / floor_peak, "hub <= 1.1x", hub_peak <= 1.1, "floor",
                 f"fresh process, VmHWM - VmRSS at baseline; at the end hub has RssAnon +{cold['hub']['anon_above_kb'] / 1024:.0f} MiB, "
                 f"RssFile +{cold['hub']['file_above_kb'] / 1024:.0f} MiB (mmapped blob); weights {weights / MB:.0f} MB")
    return [
        ratio_row(BENCH, f"{label} (a) load, warm Hub", warm["hub"]["load"], warm["floor"]["load"], "s", limit=1.2,
                  baseline_name="floor", note=f"{cache} page cache"),
        ratio_row(BENCH, f"{label} (b) load + read every weight", warm["hub"]["load_pass"], warm["floor"]["load_pass"], "s",
                  baseline_name="floor", note=f"{cache} page cache; {weights / MB / warm['hub']['load_pass']:.0f} MB/s for hub"),
        ratio_row(BENCH, f"{label} (c) cold first call: load", cold["hub"]["load"], cold["floor"]["load"], "s",
                  baseline_name="floor"),
        ratio_row(BENCH, f"{label} (c) cold first call: load + read", cold["hub"]["load_pass"], cold["floor"]["load_pass"], "s",
                  baseline_name="floor"),
        memory,
    ]


def run(sizes_mb: list[float], repeats: int, mem_repeats: int, cold_cache: bool = False, tmp_parent: str | None = None,
        log: Any = print) -> list[Row]:
    """Every load figure for every size; ``repeats`` warm rounds (cheap, milliseconds: use 15 or more), ``mem_repeats`` processes."""
    rows: list[Row] = []
    cache = "cold (dropped)" if cold_cache else "warm"
    with temp_dir("hubbench-load-", tmp_parent) as home:
        publisher = hub.Hub(home=home, registry_url=None)
        for size in sizes_mb:
            label = f"{size:g} MB"
            log(f"[load] publishing ~{label} mlp")
            model = publish_model(publisher, size)
            gc.collect()
            log(f"[load] {label}: {model['weight_bytes'] / MB:.0f} MB of weights; timing {repeats} x hub/floor (warm Hub)")
            warm = warm_timings(home, model, repeats, cold_cache)
            log(f"[load] {label}: {mem_repeats} x fresh-process cold call + peak memory")
            cold = cold_runs(home, model, mem_repeats, cold_cache)
            rows += rows_for(label, model, warm, cold, cache)
            Path(model["blob"]).unlink()  # free the disk before the next size
        publisher.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="model sizes in MB, comma-separated (default 100,1000)")
    parser.add_argument("--repeats", type=int, default=15,
                        help="measured warm rounds per contender (default 15: each takes milliseconds, and noise is large)")
    parser.add_argument("--mem-repeats", type=int, default=3, help="fresh processes per contender (default 3)")
    parser.add_argument("--cold-cache", action="store_true", help="drop the blob from the page cache before every load")
    parser.add_argument("--tmp-dir", default=None, help="where to make the temporary hub")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = run([float(s) for s in args.sizes.split(",")], args.repeats, args.mem_repeats, args.cold_cache, args.tmp_dir)
    print_table(rows)


if __name__ == "__main__":
    main()
