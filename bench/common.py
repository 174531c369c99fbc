"""Helpers shared by the benchmarks: timing, medians, memory readings, result rows.

Every figure is a ratio of a hub measurement against a baseline taken in the
same run. ``alternate`` runs the contenders in turn (swapping the order each
round) so slow drifts of a shared, noisy machine hit both alike, and reports
the median of each.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
MB = 1_000_000
GB = 1_000_000_000


@dataclass
class Row:
    """One line of the summary table.

    ``hub`` and ``baseline`` are medians in ``unit``; ``ratio`` is hub / baseline
    (None when there is no baseline). ``target`` says what passes, ``ok`` whether it did.
    """

    bench: str
    figure: str
    hub: float
    baseline: float | None
    unit: str
    ratio: float | None
    target: str = ""
    ok: bool | None = None
    baseline_name: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio_row(bench: str, figure: str, hub: float, baseline: float, unit: str, *, limit: float | None = None,
              baseline_name: str = "", note: str = "") -> Row:
    """A row whose figure is ``hub / baseline``, passing when the ratio is at most ``limit``."""
    ratio = hub / baseline if baseline else float("inf")
    return Row(bench, figure, hub, baseline, unit, ratio, f"<= {limit:g}x" if limit else "",
               (ratio <= limit) if limit else None, baseline_name, note)


def median(values: list[float]) -> float:
    return statistics.median(values)


def alternate(contenders: dict[str, Callable[[], dict[str, float]]], repeats: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Run each contender ``warmup + repeats`` times, in turn, and take medians.

    Each contender returns a dict of timings (seconds) for one run; the result
    maps contender -> timing name -> median over the ``repeats`` measured runs.
    """
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(warmup + repeats):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            result = contenders[name]()
            if round_ >= warmup:
                samples[name].append(result)
    return {name: {key: median([s[key] for s in runs]) for key in runs[0]} for name, runs in samples.items()}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_call_time(fn: Callable[[], Any], calls: int, warmup: int = 10) -> float:
    """Median seconds of ``fn()`` over ``calls`` calls after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def proc_status_kb(*fields: str) -> dict[str, int]:
    """Fields of ``/proc/self/status`` (e.g. ``VmHWM``, ``VmRSS``, ``RssAnon``, ``RssFile``) in kB."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in fields:
                values[key] = int(rest.split()[0])
    return values


def reset_peak_rss() -> None:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0, ``clear_refs`` value 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def drop_file_cache(path: str | os.PathLike[str]) -> None:
    """Ask the kernel to drop ``path``'s clean pages from the page cache (no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def dir_bytes(path: Path) -> int:
    """Total size of the regular files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextlib.contextmanager
def temp_dir(prefix: str, parent: str | None = None) -> Iterator[Path]:
    """A temporary folder, removed (with everything in it) on exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fmt(value: float | None, unit: str) -> str:
    """A value for the table: seconds as ms/s, everything else with 3 significant figures."""
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
    return f"{value:.3g} {unit}".strip()


def print_table(rows: list[Row]) -> None:
    """The summary table, one line per figure."""
    header = ["bench", "figure", "hub (median)", "baseline (median)", "ratio", "target", "ok"]
    lines = [[r.bench, r.figure, fmt(r.hub, r.unit), fmt(r.baseline, r.unit) + (f" [{r.baseline_name}]" if r.baseline_name else ""),
              "-" if r.ratio is None else f"{r.ratio:.2f}x", r.target or "-",
              "-" if r.ok is None else ("yes" if r.ok else "NO")] for r in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *lines)]
    for line in [header, ["-" * w for w in widths], *lines]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    notes = [(r.bench, r.figure, r.note) for r in rows if r.note]
    if notes:
        print()
        for bench, figure, note in notes:
            print(f"* {bench} / {figure}: {note}")
