"""Web UI benchmark: the Models and Model pages on a registry of 10,000 models x 10 versions.

The registry is the registry benchmark's (bulk-inserted, cached under
``bench/results/registry-cache/``). Each figure is one run of a page script in
Streamlit's ``AppTest`` (the page's own work: queries and rendering the
elements, no browser), median of ``--repeats``, against the same page on a
registry of 10 models built the same way, so the ratio says how the page scales.

Figures:

(a) the Models page's first view (count, facets, first page of 50)  target < 0.5 s
(b) the Models page searching for one model's name                 target < 0.5 s
(c) the Models page showing page 100 of 200                        target < 0.5 s
(d) one model's page (card, 10 versions, aliases and history, lineage) target < 0.5 s
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from common import BENCH_DIR, Row, timed

import bench_registry

BENCH = "webui"
PAGES = BENCH_DIR.parent / "webui" / "views"
TARGET_S = 0.5


def _page(name: str) -> Any:
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120)


def _interactions(models: int) -> dict[str, Any]:
    """Each figure's page run, as a function returning the finished AppTest."""
    probe = bench_registry.model_name(min(bench_registry.PROBE, models // 2))

    def first_view() -> Any:
        return _page("models").run()

    def search() -> Any:
        app = _page("models").run()
        return app.text_input(key="search").input(probe).run()

    def page_100() -> Any:
        app = _page("models").run()
        return app.number_input(key="page").set_value(min(100, max(1, models // 50))).run() if models > 50 else app.run()

    def model_page() -> Any:
        app = _page("model")
        app.query_params["ref"] = probe
        return app.run()

    return {"(a) Models page, first view": first_view, "(b) Models page, search": search,
            "(c) Models page, page 100": page_100, "(d) a model's page": model_page}


def _time_in(home: Path, models: int, repeats: int) -> dict[str, float]:
    """Median seconds of each interaction's last page run on the registry at ``home``."""
    import hub

    os.environ["HUB_HOME"] = str(home)
    os.environ.pop("HUB_REGISTRY_URL", None)
    hub.default_hub()
    medians = {}
    for label, interaction in _interactions(models).items():
        interaction()  # warm-up: imports, the page's first compile
        times = []
        for _ in range(repeats):
            seconds, app = timed(interaction)
            if app.exception:
                raise RuntimeError(f"{label}: the page raised {app.exception[0].value}")
            times.append(seconds)
        medians[label] = statistics.median(times)
    return medians


def run(models: int, versions: int, repeats: int, rebuild: bool = False, log: Any = print) -> list[Row]:
    """The web UI figures (whole interactions: an interaction that types or pages runs the page twice)."""
    big, _ = bench_registry.cached_registry(models, versions, rebuild, log)
    small, _ = bench_registry.cached_registry(10, versions, rebuild, log)
    saved = {k: os.environ.get(k) for k in ("HUB_HOME", "HUB_REGISTRY_URL")}
    try:
        log(f"[webui] {repeats} x each page on {models} models, then on 10")
        large, baseline = _time_in(big, models, repeats), _time_in(small, 10, repeats)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    runs = {"(a) Models page, first view": 1, "(b) Models page, search": 2, "(c) Models page, page 100": 2, "(d) a model's page": 1}
    rows = []
    for label, seconds in large.items():
        per_run = seconds / runs[label]
        rows.append(Row(BENCH, f"{models:,} models: {label}", per_run, baseline[label] / runs[label], "s",
                        seconds / baseline[label], f"< {TARGET_S} s a page run", per_run < TARGET_S, "10 models",
                        f"{runs[label]} page run(s) in the interaction, {seconds:.3f} s in all"))
    return rows
