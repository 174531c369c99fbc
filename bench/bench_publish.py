"""Publish benchmark: storing a state dict, against hashing the same bytes with ``hashlib.sha256``.

A 1 GiB state dict (16 random float32 tensors of 64 MiB by default) is
published into a fresh temporary hub each round; the baseline is
``hashlib.sha256`` alone over the same bytes, in memory. Rounds alternate
publish and hash (median of ``--repeats``; one unmeasured warm-up round each).

Figures:

(a) publish throughput in GB/s (1 GB = 10^9 bytes) of weight bytes, and
    its time as a multiple of the sha256-only time.            target >= 0.7 GB/s
    A second baseline, the disk floor, writes the same bytes to one new file
    in the same file system and fsyncs it (publish fsyncs its blob too), so
    the table shows how much of publish is the disk and how much is hub.
(b) publishing the same weights again to the same name adds only a manifest:
    the blobs folder grows by ~1 KB, not by the weights (content addressing).
    Its time is reported too; it is measured once.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import torch

import hub
from common import GB, MB, Row, alternate, dir_bytes, print_table, ratio_row, temp_dir, timed

BENCH = "publish"
NAME = "bench/state-dict"
MAX_MANIFEST_GROWTH = 64 * 1024  # a manifest is ~1 KB; anything near the weights' size is a failure


def make_state(total_mb: int, tensors: int) -> dict[str, torch.Tensor]:
    """``tensors`` random float32 tensors holding ``total_mb`` MiB together."""
    generator = torch.Generator().manual_seed(0)
    numel = total_mb * 1024 * 1024 // 4 // tensors
    return {f"layer{i:02d}.weight": torch.randn(numel, generator=generator) for i in range(tensors)}


def sha256_only(state: dict[str, torch.Tensor]) -> str:
    """The baseline: hash every tensor's bytes, nothing else."""
    digest = hashlib.sha256()
    for tensor in state.values():
        digest.update(tensor.view(torch.uint8).numpy())
    return digest.hexdigest()


def write_fsync(state: dict[str, torch.Tensor], tmp_parent: str | None) -> float:
    """The disk floor: seconds to write the same bytes to a new file in an empty folder and fsync it."""
    with temp_dir("hubbench-publish-", tmp_parent) as folder:
        start = time.perf_counter()
        with open(folder / "weights.bin", "wb") as f:
            for tensor in state.values():
                f.write(tensor.view(torch.uint8).numpy())
            f.flush()
            os.fsync(f.fileno())
        seconds = time.perf_counter() - start
    return seconds


def publish_fresh(state: dict[str, torch.Tensor], tmp_parent: str | None) -> float:
    """Seconds to publish ``state`` into a new, empty hub (removed afterwards)."""
    with temp_dir("hubbench-publish-", tmp_parent) as home:
        instance = hub.Hub(home=home, registry_url=None)
        instance.db.ensure_schema()  # creating the registry is not part of publishing the weights
        seconds, _ = timed(lambda: instance.publish(state, NAME))
        instance.close()
    return seconds


def republish(state: dict[str, torch.Tensor], tmp_parent: str | None) -> dict[str, Any]:
    """Publish twice to one name; how much the blobs folder grew the second time, and how long it took."""
    with temp_dir("hubbench-publish-", tmp_parent) as home:
        instance = hub.Hub(home=home, registry_url=None)
        first = instance.publish(state, NAME)
        blobs = Path(home) / "blobs"
        before, count_before = dir_bytes(blobs), len(list(blobs.iterdir()))
        seconds, second = timed(lambda: instance.publish(state, NAME))
        after, count_after = dir_bytes(blobs), len(list(blobs.iterdir()))
        instance.close()
    same_weights = first.file("model.safetensors").sha256 == second.file("model.safetensors").sha256
    return {"growth": after - before, "new_blobs": count_after - count_before, "seconds": seconds,
            "same_weights": same_weights, "versions": (first.version, second.version)}


def run(total_mb: int, tensors: int, repeats: int, tmp_parent: str | None = None, log: Any = print) -> list[Row]:
    """The publish figures."""
    log(f"[publish] making {tensors} random tensors, {total_mb} MiB in all")
    state = make_state(total_mb, tensors)
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    log(f"[publish] {repeats} x publish into a fresh hub / sha256 of the same bytes / write + fsync them")
    medians = alternate({
        "publish": lambda: {"s": publish_fresh(state, tmp_parent)},
        "sha256": lambda: {"s": timed(lambda: sha256_only(state))[0]},
        "write_fsync": lambda: {"s": write_fsync(state, tmp_parent)},
    }, repeats)
    publish_s, sha_s, disk_s = (medians[name]["s"] for name in ("publish", "sha256", "write_fsync"))
    log("[publish] publishing the same weights again to the same name")
    again = republish(state, tmp_parent)
    dedup_ok = again["same_weights"] and 0 <= again["growth"] <= MAX_MANIFEST_GROWTH
    label = f"{nbytes / GB:.2f} GB state dict"
    gbps, sha_gbps = nbytes / publish_s / GB, nbytes / sha_s / GB
    return [
        Row(BENCH, f"{label}: throughput", gbps, sha_gbps, "GB/s", publish_s / sha_s, ">= 0.7 GB/s", gbps >= 0.7,
            "sha256 only", "ratio = publish time / sha256-only time"),
        ratio_row(BENCH, f"{label}: time", publish_s, sha_s, "s", baseline_name="sha256 only"),
        ratio_row(BENCH, f"{label}: time vs disk floor", publish_s, disk_s, "s", baseline_name="write+fsync",
                  note=f"the disk alone: {nbytes / disk_s / GB:.2f} GB/s for write + fsync"),
        Row(BENCH, "republish same weights: blobs growth", again["growth"], float(nbytes), "bytes", again["growth"] / nbytes,
            "~manifest only", dedup_ok, "weight bytes",
            f"{again['new_blobs']} new blob(s), versions {again['versions'][0]} -> {again['versions'][1]}, "
            f"republish took {again['seconds']:.2f} s ({nbytes / again['seconds'] / MB:.0f} MB/s)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="state dict size in MiB (default 1024)")
    parser.add_argument("--tensors", type=int, default=16, help="number of tensors (default 16)")
    parser.add_argument("--repeats", type=int, default=5, help="measured rounds per contender (default 5)")
    parser.add_argument("--tmp-dir", default=None, help="where to make the temporary hubs")
    args = parser.parse_args()
    print_table(run(args.size_mb, args.tensors, args.repeats, args.tmp_dir))


if __name__ == "__main__":
    main()
