"""The Python API end to end: publish, load, aliases, listing, download, verify, gc, reindex."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import hub
from conftest import assert_same_tensors, state
from hub import (
    AliasNotFoundError,
    ArchitectureError,
    DeviceError,
    IntegrityError,
    InvalidArgumentError,
    InvalidReferenceError,
    InvalidSourceError,
    ModelNotFoundError,
    UnsafeFormatError,
    VersionExistsError,
    VersionNotFoundError,
    WeightsMismatchError,
)


def make_mlp(seed: int = 0, **config) -> nn.Module:
    torch.manual_seed(seed)
    return hub.create("mlp", **({"in_features": 4, "hidden": [8], "out_features": 3} | config))


def weight_bytes(home) -> int:
    return sum(p.stat().st_size for p in (home / "blobs").iterdir() if p.stat().st_size > 2000)


# --- publish and load ----------------------------------------------------------------


def test_publish_then_load_by_version_and_alias_gives_identical_weights():
    model = make_mlp()
    published = hub.publish(model, "acme/iris", aliases=["production"])
    assert (published.ref, published.version, published.aliases) == ("acme/iris:1", 1, ("production",))
    for ref in ("acme/iris:1", "acme/iris@production", "acme/iris", "acme/iris@latest"):
        loaded = hub.load(ref, device="auto")
        assert not loaded.training
        assert loaded.hub_version.ref == "acme/iris:1"
        assert_same_tensors(model.state_dict(), loaded.state_dict())


def test_model_version_records_what_was_published():
    version = hub.publish(
        make_mlp(), "acme/iris", description="Iris classifier", tags=["tabular", "iris"], task="classification",
        license="mit", metrics={"accuracy": 0.97}, metadata={"dataset": "iris", "epochs": [1, 2]},
    )
    assert version.architecture == "mlp"
    assert version.config == {"in_features": 4, "hidden": [8], "out_features": 3, "activation": "relu", "dropout": 0.0, "standardize": False,
                              "id2label": None, "label2id": None}
    assert version.num_parameters == 4 * 8 + 8 + 8 * 3 + 3
    assert version.dtype == "float32"
    assert version.tags == ("iris", "tabular")
    assert (version.task, version.license, version.description) == ("classification", "mit", "Iris classifier")
    assert version.metrics == {"accuracy": 0.97}
    assert version.metadata == {"dataset": "iris", "epochs": [1, 2]}
    assert [f.path for f in version.files] == ["model.safetensors"]
    assert version.size_bytes == version.files[0].size
    assert hub.info("acme/iris:1") == version


def test_versions_count_up_and_explicit_version_is_immutable(hub_home):
    assert [hub.publish(make_mlp(seed), "acme/iris").version for seed in range(3)] == [1, 2, 3]
    assert hub.publish(make_mlp(9), "acme/iris", version=10).version == 10
    before = state(hub_home)
    with pytest.raises(VersionExistsError, match="acme/iris:2 already exists"):
        hub.publish(make_mlp(5), "acme/iris", version=2)
    assert state(hub_home) == before
    assert hub.publish(make_mlp(6), "acme/iris").version == 11


def test_republishing_unchanged_weights_adds_no_weight_bytes(hub_home):
    model = make_mlp(hidden=[256, 256])
    first = hub.publish(model, "acme/big")
    size = weight_bytes(hub_home)
    second = hub.publish(model, "acme/big")
    third = hub.publish(model.state_dict(), "other/copy")
    assert weight_bytes(hub_home) == size
    assert first.files[0].sha256 == second.files[0].sha256 == third.files[0].sha256
    assert second.parent is None  # a fresh module has no parent


def test_loaded_module_republished_records_its_parent():
    hub.publish(make_mlp(), "acme/iris")
    model = hub.load("acme/iris:1", device="cpu")
    with torch.no_grad():
        model.layers[0].weight.add_(1.0)
    child = hub.publish(model, "acme/iris-tuned")
    assert child.parent == "acme/iris:1"
    assert child.architecture == "mlp"
    explicit = hub.publish(make_mlp(3), "acme/other", parent="acme/iris-tuned")
    assert explicit.parent == "acme/iris-tuned:1"


def test_a_new_version_from_a_loaded_module_keeps_its_task_license_and_tags():
    hub.publish(make_mlp(), "acme/iris", task="classification", license="mit", tags=["iris", "tabular"])
    model = hub.load("acme/iris:1", device="cpu")
    again = hub.publish(model, "acme/iris", metrics={"accuracy": 0.9})
    assert (again.task, again.license, again.tags, again.parent) == ("classification", "mit", ("iris", "tabular"), "acme/iris:1")
    assert [m.name for m in hub.list_models("iris", task="classification")] == ["acme/iris"]
    changed = hub.publish(model, "acme/iris", task="regression", tags=[], license="apache-2.0")  # given: given wins
    assert (changed.task, changed.license, changed.tags) == ("regression", "apache-2.0", ())
    other = hub.publish(model, "acme/iris-copy")  # another model is not the same kind of model: nothing inherited
    assert (other.task, other.license, other.tags) == (None, None, ())


def test_state_dict_file_and_folder_sources(tmp_path):
    weights = make_mlp().state_dict()
    save_file(weights, tmp_path / "weights.safetensors")
    folder = tmp_path / "folder"
    folder.mkdir()
    save_file(weights, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8}))
    (folder / "tokenizer.txt").write_text("vocab")

    from_dict = hub.publish(weights, "src/dict", architecture="mlp", config={"in_features": 4, "hidden": [8], "out_features": 3})
    from_file = hub.publish(tmp_path / "weights.safetensors", "src/file")
    from_folder = hub.publish(str(folder), "src/folder")
    assert from_file.architecture is None and [f.path for f in from_file.files] == ["weights.safetensors"]
    assert [f.path for f in from_folder.files] == ["config.json", "model.safetensors", "tokenizer.txt"]
    for ref in ("src/dict", "src/file", "src/folder"):
        assert_same_tensors(weights, hub.load_state_dict(ref))
    assert_same_tensors(weights, hub.load("src/dict", device="cpu").state_dict())
    assert from_dict.files[0].sha256 == from_file.files[0].sha256  # same tensors, same bytes as safetensors writes
    with pytest.raises(WeightsMismatchError, match="without an architecture"):
        hub.load("src/file")


def test_download_gives_the_files_and_republishing_the_folder_keeps_lineage(tmp_path):
    hub.publish(make_mlp(), "acme/iris", card="# Iris\n\nA small model.\n")
    folder = hub.download("acme/iris:1", tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "model.safetensors", "modelhub.json"]
    assert (folder / "README.md").read_text() == "# Iris\n\nA small model.\n"
    again = hub.publish(folder, "acme/iris")
    assert (again.architecture, again.parent) == ("mlp", "acme/iris:1")
    assert hub.download("acme/iris:1").is_relative_to(hub.default_hub().home)


def test_card_dict_becomes_hugging_face_front_matter(tmp_path):
    import yaml

    hub.publish(make_mlp(), "acme/iris", card={"text": "# Iris", "datasets": ["iris"]}, license="mit", tags=["tabular"], metrics={"accuracy": 0.9})
    text = (hub.download("acme/iris", tmp_path / "o") / "README.md").read_text()
    front, body = text.split("---\n")[1], text.split("---\n")[2]
    assert yaml.safe_load(front) == {"datasets": ["iris"], "license": "mit", "tags": ["tabular"], "metrics": {"accuracy": 0.9}}
    assert body.strip() == "# Iris"


def test_tied_weights_are_stored_once_and_stay_shared():
    @hub.register_architecture("tied-test", overwrite=True)
    def tied(vocab: int = 10, dim: int = 4) -> nn.Module:
        model = nn.Sequential(nn.Embedding(vocab, dim), nn.Linear(dim, vocab, bias=False))
        model[1].weight = model[0].weight
        return model

    try:
        torch.manual_seed(0)
        version = hub.publish(hub.create("tied-test"), "acme/tied")
        assert version.tied == {"1.weight": "0.weight"}
        loaded = hub.load("acme/tied", device="cpu")
        assert loaded[1].weight.data_ptr() == loaded[0].weight.data_ptr()
    finally:
        from hub import architectures

        architectures._builders.pop("tied-test", None)


def test_dtype_casts_only_floating_tensors():
    hub.publish(hub.create("convnet", channels=[4]), "acme/cnn")
    model = hub.load("acme/cnn", device="cpu", dtype="bfloat16")
    assert model.classifier.weight.dtype == torch.bfloat16
    assert model.features[1].num_batches_tracked.dtype == torch.int64
    assert hub.load_state_dict("acme/cnn", dtype=torch.float16)["classifier.weight"].dtype == torch.float16
    with pytest.raises(WeightsMismatchError, match="not a floating dtype"):
        hub.load("acme/cnn", dtype=torch.int8)


@pytest.mark.parametrize(("device", "fragment"), [("cuda:0", "CUDA is not available"), ("tpu", "not a device"), ("meta", "not supported")])
def test_unavailable_devices_are_refused(device, fragment):
    hub.publish(make_mlp(), "acme/iris")
    if torch.cuda.is_available() and device.startswith("cuda"):
        pytest.skip("CUDA is available here")
    with pytest.raises(DeviceError, match=fragment):
        hub.load("acme/iris", device=device)


def test_load_accepts_torch_device():
    hub.publish(make_mlp(), "acme/iris")
    model = hub.load("acme/iris", device=torch.device("cpu"))
    assert next(model.parameters()).device.type == "cpu"


# --- a real model on real data ---------------------------------------------------------


def test_digits_classifier_round_trip_keeps_its_accuracy():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    x_train, x_test = torch.tensor(x_train, dtype=torch.float32), torch.tensor(x_test, dtype=torch.float32)
    y_train, y_test = torch.tensor(y_train), torch.tensor(y_test)
    torch.manual_seed(0)
    model = hub.create("mlp", in_features=64, hidden=[64], out_features=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x_train), y_train).backward()
        optimizer.step()
    model.eval()
    accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    assert accuracy > 0.9
    hub.publish(model, "demo/digits-mlp", aliases=["production"], metrics={"accuracy": accuracy}, task="classification")
    loaded = hub.load("demo/digits-mlp@production")
    with torch.no_grad():
        assert float((loaded(x_test.to(next(loaded.parameters()).device)).argmax(1).cpu() == y_test).float().mean()) == accuracy
    assert hub.info("demo/digits-mlp@production").metrics["accuracy"] == accuracy


# --- aliases ---------------------------------------------------------------------------


def test_aliases_move_and_keep_history():
    for seed in range(3):
        hub.publish(make_mlp(seed), "acme/iris")
    hub.set_alias("acme/iris", "production", 1)
    change = hub.set_alias("acme/iris", "production", 3)
    assert (change.from_version, change.to_version, change.changed_by) == (1, 3, "tester")
    assert hub.set_alias("acme/iris", "production", 3) is None  # no-op, no history
    assert hub.info("acme/iris@production").version == 3
    hub.delete_alias("acme/iris", "production")
    history = [(c.from_version, c.to_version) for c in hub.alias_history("acme/iris", "production")]
    assert history == [(None, 1), (1, 3), (3, None)]
    with pytest.raises(AliasNotFoundError, match="no alias 'production'"):
        hub.info("acme/iris@production")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: hub.set_alias("acme/iris", "latest", 1), InvalidReferenceError),
        (lambda: hub.set_alias("acme/iris", "Prod", 1), InvalidReferenceError),
        (lambda: hub.set_alias("acme/iris", "production", 7), VersionNotFoundError),
        (lambda: hub.set_alias("acme/nope", "production", 1), ModelNotFoundError),
        (lambda: hub.set_alias("acme/iris", "production", 0), InvalidReferenceError),
        (lambda: hub.delete_alias("acme/iris", "staging"), AliasNotFoundError),
    ],
)
def test_bad_alias_operations_raise_and_write_nothing(hub_home, call, error):
    hub.publish(make_mlp(), "acme/iris")
    before = state(hub_home)
    with pytest.raises(error):
        call()
    assert state(hub_home) == before


# --- listing ---------------------------------------------------------------------------


def test_list_models_search_filters_and_pages():
    hub.publish(make_mlp(0), "acme/iris", task="classification", tags=["tabular"], license="mit")
    hub.publish(make_mlp(1), "acme/iris", task="classification", tags=["tabular"], license="mit", aliases=["production"])
    hub.publish(make_mlp(2), "acme/wine", task="classification", tags=["tabular", "wine"], description="Wine cultivars")
    hub.publish(make_mlp(3), "other/housing", task="regression")
    names = lambda models: [m.name for m in models]  # noqa: E731
    assert names(hub.list_models()) == ["acme/iris", "acme/wine", "other/housing"]
    assert names(hub.list_models("WINE")) == ["acme/wine"]
    assert names(hub.list_models("cultivar")) == ["acme/wine"]
    assert names(hub.list_models("acme/")) == ["acme/iris", "acme/wine"]
    assert names(hub.list_models(task="regression")) == ["other/housing"]
    assert names(hub.list_models(tag="wine")) == ["acme/wine"]
    assert names(hub.list_models(license="mit")) == ["acme/iris"]
    assert names(hub.list_models(limit=2, offset=1)) == ["acme/wine", "other/housing"]
    assert names(hub.list_models(sort="updated")) == ["other/housing", "acme/wine", "acme/iris"]
    assert names(hub.list_models("100%_")) == []
    iris = hub.list_models("iris")[0]
    assert (iris.latest_version, iris.num_versions, iris.aliases, iris.tags) == (2, 2, {"production": 2}, ("tabular",))
    with pytest.raises(InvalidArgumentError):
        hub.list_models(sort="downloads")
    with pytest.raises(InvalidArgumentError):
        hub.list_models(limit=-1)


def test_list_versions_oldest_first_with_aliases():
    for seed in range(3):
        hub.publish(make_mlp(seed), "acme/iris", aliases=["production"] if seed == 1 else ())
    versions = hub.list_versions("acme/iris")
    assert [(v.version, v.aliases) for v in versions] == [(1, ()), (2, ("production",)), (3, ())]
    with pytest.raises(ModelNotFoundError):
        hub.list_versions("acme/nothing")


# --- deletion, gc, verify, reindex -----------------------------------------------------------


def test_delete_version_then_gc_frees_only_its_blobs(hub_home):
    hub.publish(make_mlp(0), "acme/iris", aliases=["production"])
    hub.publish(make_mlp(1), "acme/iris")
    shared = hub.publish(make_mlp(1), "acme/copy")
    deleted = hub.delete_version("acme/iris:1")
    assert [v.version for v in hub.list_versions("acme/iris")] == [2]
    with pytest.raises(VersionNotFoundError, match="live versions are \\[2\\]"):
        hub.info("acme/iris:1")
    with pytest.raises(AliasNotFoundError):
        hub.info("acme/iris@production")
    assert hub.gc(min_age_seconds=3600).removed == ()  # too young: a publish may still need them
    report = hub.gc(min_age_seconds=0)
    assert {p.rsplit("/", 1)[1] for p in report.removed} == {deleted.digest, deleted.files[0].sha256}
    assert hub.verify().ok and hub.verify(min_age_seconds=0).leftovers == ()
    assert torch.equal(hub.load_state_dict("acme/copy")["layers.0.weight"], make_mlp(1).state_dict()["layers.0.weight"])
    assert shared.files == hub.info("acme/iris:2").files
    assert hub.publish(make_mlp(4), "acme/iris").version == 3  # deleted numbers are never reused
    with pytest.raises(InvalidArgumentError, match="explicit version"):
        hub.delete_version("acme/iris")


def test_verify_and_load_catch_corruption_and_truncation(hub_home):
    version = hub.publish(make_mlp(), "acme/iris")
    blob = hub_home / "blobs" / version.files[0].sha256
    original = blob.read_bytes()
    flipped = bytearray(original)
    flipped[-1] ^= 0xFF
    blob.write_bytes(bytes(flipped))
    report = hub.verify()
    assert not report.ok and "acme/iris:1: file 'model.safetensors'" in report.problems[0] and "corrupted" in report.problems[0]
    with pytest.raises(IntegrityError, match="acme/iris:1: file 'model.safetensors'.*corrupted"):
        hub.load("acme/iris", verify=True)
    blob.write_bytes(original[:-10])
    with pytest.raises(IntegrityError, match="truncated"):
        hub.load("acme/iris")  # verify=False still checks sizes
    blob.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        hub.load_state_dict("acme/iris")
    with pytest.raises(IntegrityError):
        hub.download("acme/iris")


def test_verify_lists_leftovers_that_gc_removes(hub_home):
    hub.publish(make_mlp(), "acme/iris")
    (hub_home / "blobs" / ".tmp-crashed.incomplete").write_bytes(b"partial")
    assert hub.verify().leftovers == ()  # young: it may be a write in flight
    report = hub.verify(min_age_seconds=0)
    assert report.ok and any(p.endswith(".tmp-crashed.incomplete") for p in report.leftovers)
    hub.gc(min_age_seconds=0)
    assert hub.verify(min_age_seconds=0).leftovers == ()


def test_reindex_rebuilds_the_registry_from_the_store():
    hub.publish(make_mlp(0), "acme/iris", metrics={"accuracy": 0.5}, tags=["t"])
    hub.publish(make_mlp(1), "acme/iris", aliases=["production"])
    hub.publish(make_mlp(2), "acme/iris")
    hub.publish(make_mlp(3), "solo")
    hub.delete_version("acme/iris:3")
    before = {v.ref: v for m in hub.list_models() for v in hub.list_versions(m.name)}
    db = hub.default_hub().db
    from sqlalchemy import text

    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM registered_models"))
    assert hub.list_models() == []
    assert hub.reindex().live == 3
    after = {v.ref: v for m in hub.list_models() for v in hub.list_versions(m.name)}
    assert after.keys() == before.keys()
    for ref, version in before.items():
        assert after[ref] == version
    assert hub.publish(make_mlp(5), "acme/iris").version == 4


# --- bad input writes nothing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"name": "Bad Name"}, InvalidReferenceError, "invalid character"),
        ({"name": "acme/x", "aliases": ["latest"]}, InvalidReferenceError, "reserved"),
        ({"name": "acme/x", "version": 0}, InvalidReferenceError, "positive"),
        ({"name": "acme/x", "metrics": {"acc": float("nan")}}, InvalidArgumentError, "finite"),
        ({"name": "acme/x", "metrics": {"acc": "high"}}, InvalidArgumentError, "finite number"),
        ({"name": "acme/x", "metadata": {"when": object()}}, InvalidArgumentError, "JSON"),
        ({"name": "acme/x", "tags": "tabular"}, InvalidArgumentError, "list of strings"),
        ({"name": "acme/x", "parent": "acme/missing"}, ModelNotFoundError, "not in the registry"),
        ({"name": "acme/x", "architecture": "convnet"}, WeightsMismatchError, "don't fit"),
        ({"name": "acme/x", "config": {"in_features": 5, "hidden": [8], "out_features": 3}}, WeightsMismatchError, "shapes differ"),
        ({"name": "acme/x", "config": {"in_features": 4, "hidden": [8], "out_features": 3, "depth": 2}}, ArchitectureError, "depth"),
        ({"name": "acme/x", "card": 42}, InvalidArgumentError, "card"),
    ],
)
def test_bad_publish_arguments_raise_and_write_nothing(hub_home, kwargs, error, fragment):
    hub.publish(make_mlp(7), "acme/existing")
    before = state(hub_home)
    with pytest.raises(error, match=fragment):
        hub.publish(make_mlp(), **kwargs)
    assert state(hub_home) == before


@pytest.mark.parametrize(
    ("make_source", "error", "fragment"),
    [
        (lambda tmp: 42, InvalidSourceError, "can't publish a int"),
        (lambda tmp: {}, InvalidSourceError, "no tensors"),
        (lambda tmp: {"w": [1, 2]}, InvalidSourceError, "not a torch.Tensor"),
        (lambda tmp: torch.zeros(2), InvalidSourceError, "wrap it in a dict"),
        (lambda tmp: {"w": torch.zeros(2, device="meta")}, InvalidSourceError, "meta device"),
        (lambda tmp: tmp / "missing.safetensors", InvalidSourceError, "does not exist"),
        (lambda tmp: (tmp / "weights.pt", torch.save({"w": torch.zeros(1)}, tmp / "weights.pt"))[0], UnsafeFormatError, "pickle"),
        (lambda tmp: ((tmp / "x.safetensors").write_bytes(b"\xff" * 20), tmp / "x.safetensors")[1], UnsafeFormatError, "not a valid safetensors"),
        (lambda tmp: ((tmp / "empty").mkdir(), tmp / "empty")[1], InvalidSourceError, "no \\*.safetensors"),
        (lambda tmp: ((tmp / "d").mkdir(), save_file({"w": torch.zeros(1)}, tmp / "d" / "m.safetensors"), (tmp / "d" / "pytorch_model.bin").write_bytes(b"x"), tmp / "d")[-1], UnsafeFormatError, "pickle"),
        (lambda tmp: ((tmp / "d").mkdir(), save_file({"w": torch.zeros(1)}, tmp / "d" / "m.safetensors"), (tmp / "d" / "link").symlink_to("/etc/passwd"), tmp / "d")[-1], UnsafeFormatError, "outside"),
    ],
)
def test_bad_sources_raise_and_write_nothing(hub_home, tmp_path, make_source, error, fragment):
    hub.publish(make_mlp(7), "acme/existing")
    source = make_source(tmp_path)
    before = state(hub_home)
    with pytest.raises(error, match=fragment):
        hub.publish(source, "acme/x")
    assert state(hub_home) == before


def test_reference_errors_in_every_call():
    for call in (hub.info, hub.load, hub.load_state_dict, hub.download, hub.delete_version, hub.verify):
        with pytest.raises(InvalidReferenceError):
            call("../etc/passwd")


# --- import weight -------------------------------------------------------------------------


def test_import_hub_loads_neither_torch_nor_sqlalchemy():
    code = "import sys, hub; heavy = [m for m in ('torch', 'sqlalchemy', 'streamlit', 'transformers') if m in sys.modules]; print(heavy)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_public_api_is_explicit():
    assert {"publish", "load", "load_state_dict", "info", "list_models", "list_versions", "set_alias", "delete_alias",
            "alias_history", "delete_version", "download", "verify", "Hub", "ModelVersion", "register_architecture",
            "create", "list_architectures", "HubError"} <= set(hub.__all__)
    assert all(hasattr(hub, name) for name in hub.__all__)


def test_explicit_hub_instance_is_independent(tmp_path):
    other = hub.Hub(home=tmp_path / "other", registry_url=f"sqlite:///{tmp_path / 'other.db'}")
    other.publish(make_mlp(), "acme/iris")
    assert [m.name for m in other.list_models()] == ["acme/iris"]
    assert hub.list_models() == []
    other.close()


def test_tensors_from_numpy_publish():
    version = hub.publish({"w": torch.from_numpy(np.arange(6, dtype=np.float32))}, "acme/np")
    assert version.num_parameters == 6
