"""One cold load in a fresh process: its time and its peak memory (run by bench_load.py).

Usage: ``python load_child.py JSON`` where JSON holds ``mode`` (``hub`` or
``floor``), ``home``, ``ref``, ``blob`` and ``config`` (the mlp config).

torch and hub are imported and the Hub is built first; then the baseline is
taken: ``VmRSS`` now, and ``VmHWM`` is reset to it (``/proc/self/clear_refs``).
The timed part is the first load in this process (the cold call, including the
lazy imports it triggers), then one pass reading every weight. Afterwards
``VmHWM`` is the peak RSS; RSS counts file-backed mmap pages of the blob
(``RssFile``) as well as private memory (``RssAnon``). One JSON line is printed.
"""

from __future__ import annotations

import gc
import json
import sys
import time

import torch

import hub
from common import proc_status_kb, reset_peak_rss


def weight_pass(module: torch.nn.Module) -> float:
    """Read every byte of every weight once (safetensors mmaps lazily, so this is the real read)."""
    return sum(float(t.sum()) for t in module.state_dict().values())


def floor_load(blob: str, config: dict) -> torch.nn.Module:
    """The least a loader must do: read the safetensors file, build on meta, assign."""
    from safetensors.torch import load_file

    state = load_file(blob)
    with torch.device("meta"):
        module = hub.create("mlp", **config)
    module.load_state_dict(state, assign=True)
    return module


def main() -> None:
    spec = json.loads(sys.argv[1])
    instance = hub.Hub(home=spec["home"], registry_url=None) if spec["mode"] == "hub" else None
    gc.collect()
    before = proc_status_kb("VmRSS", "RssAnon", "RssFile")
    reset_peak_rss()

    start = time.perf_counter()
    module = instance.load(spec["ref"], device="cpu") if instance else floor_load(spec["blob"], spec["config"])
    loaded = time.perf_counter()
    weight_pass(module)
    passed = time.perf_counter()

    after = proc_status_kb("VmHWM", "VmRSS", "RssAnon", "RssFile")
    print(json.dumps({
        "load": loaded - start,
        "load_pass": passed - start,
        "peak_above_kb": after["VmHWM"] - before["VmRSS"],
        "anon_above_kb": after["RssAnon"] - before["RssAnon"],
        "file_above_kb": after["RssFile"] - before["RssFile"],
        "baseline_kb": before["VmRSS"],
    }))


if __name__ == "__main__":
    main()
