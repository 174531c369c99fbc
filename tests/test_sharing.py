"""Fine-tuned versions share unchanged weight files with their parent: only changed tensors are stored."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import hub
from conftest import assert_same_tensors
from hub import UnsafeFormatError
from hub.manifest import Manifest
from hub.safetensors_io import read_header

pytestmark = pytest.mark.one_backend  # which tensors a version shares with its parent: a store matter


def blob_bytes(home) -> int:
    return sum(p.stat().st_size for p in (home / "blobs").iterdir())


def stored_names(home, version, path: str) -> list[str]:
    return sorted(read_header(home / "blobs" / version.file(path).sha256).tensors)


def publish_base(**config) -> tuple[hub.ModelVersion, dict[str, torch.Tensor]]:
    """An MLP whose hidden layers hold almost all its bytes."""
    torch.manual_seed(0)
    model = hub.create("mlp", **({"in_features": 64, "hidden": [512, 512], "out_features": 10} | config))
    return hub.publish(model, "acme/base"), {k: v.clone() for k, v in model.state_dict().items()}


def new_head(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        nn.init.normal_(model.layers[-1].weight)
        nn.init.zeros_(model.layers[-1].bias)
    return model


def test_a_new_head_stores_only_the_head(hub_home):
    base, base_state = publish_base()
    before = blob_bytes(hub_home)
    tuned = new_head(hub.load("acme/base", device="cpu"))
    child = hub.publish(tuned, "acme/tuned", parent="acme/base")

    assert child.parent == "acme/base:1"
    assert child.weight_files == ("model.safetensors", "model-changed.safetensors")
    assert child.file("model.safetensors") == base.file("model.safetensors")
    assert child.weight_views == {"model.safetensors": {"prefix": "", "skip": ["layers.4.bias", "layers.4.weight"]}}
    assert stored_names(hub_home, child, "model-changed.safetensors") == ["layers.4.bias", "layers.4.weight"]
    growth = blob_bytes(hub_home) - before
    manifest = hub_home / "blobs" / child.digest
    assert growth == child.file("model-changed.safetensors").size + manifest.stat().st_size
    assert growth < 0.05 * base.file("model.safetensors").size

    assert_same_tensors(hub.load("acme/tuned", device="cpu", strict=True).state_dict(), tuned.state_dict())
    assert_same_tensors(hub.load("acme/base", device="cpu").state_dict(), base_state)
    assert hub.verify().ok


def test_a_chain_of_fine_tunes_reuses_every_file_it_can(hub_home):
    base, _ = publish_base()
    hub.publish(new_head(hub.load("acme/base", device="cpu")), "acme/tuned")
    tuned_more = hub.load("acme/tuned", device="cpu")
    with torch.no_grad():
        tuned_more.layers[0].weight.mul_(2)
    grandchild = hub.publish(tuned_more, "acme/tuned-more")

    assert grandchild.weight_files == ("model.safetensors", "model-changed.safetensors", "model-changed-2.safetensors")
    assert grandchild.file("model.safetensors") == base.file("model.safetensors")
    assert grandchild.weight_views == {
        "model.safetensors": {"prefix": "", "skip": ["layers.0.weight", "layers.4.bias", "layers.4.weight"]},
        "model-changed.safetensors": {"prefix": "", "skip": []},
    }
    assert stored_names(hub_home, grandchild, "model-changed-2.safetensors") == ["layers.0.weight"]
    assert_same_tensors(hub.load(grandchild.ref, device="cpu").state_dict(), tuned_more.state_dict())
    folder = hub.download(grandchild.ref, hub_home.parent / "download")
    assert_same_tensors(hub.load_state_dict(hub.publish(folder, "acme/merged").ref), tuned_more.state_dict())


def test_unchanged_weights_reuse_the_parent_file_whole():
    base, _ = publish_base()
    again = hub.publish(hub.load("acme/base", device="cpu"), "acme/copy")
    assert (again.files, again.weight_views) == (base.files, {})


def test_a_head_of_another_shape_is_stored_and_the_old_one_skipped(hub_home):
    base, base_state = publish_base()
    torch.manual_seed(1)
    child_module = hub.create("mlp", in_features=64, hidden=[512, 512], out_features=3)
    child_module.load_state_dict({k: v for k, v in base_state.items() if not k.startswith("layers.4.")}, strict=False)
    child = hub.publish(child_module, "acme/three-classes", parent="acme/base")

    assert child.weight_views["model.safetensors"]["skip"] == ["layers.4.bias", "layers.4.weight"]
    new = read_header(hub_home / "blobs" / child.file("model-changed.safetensors").sha256).tensors
    assert {k: v.shape for k, v in new.items()} == {"layers.4.bias": (3,), "layers.4.weight": (3, 512)}
    assert_same_tensors(hub.load(child.ref, device="cpu").state_dict(), child_module.state_dict())


def test_a_wrapper_shares_under_its_key_prefix(hub_home):
    torch.manual_seed(0)
    base_state = {"a.weight": torch.randn(256, 256), "b.weight": torch.randn(256, 256)}
    base = hub.publish(base_state, "acme/backbone")
    wrapped = {f"backbone.{k}": v for k, v in base_state.items()} | {"head.weight": torch.randn(10, 256)}
    child = hub.publish(wrapped, "acme/wrapped", parent="acme/backbone")

    assert child.file("model.safetensors") == base.file("model.safetensors")
    assert child.weight_views == {"model.safetensors": {"prefix": "backbone.", "skip": []}}
    assert stored_names(hub_home, child, "model-changed.safetensors") == ["head.weight"]
    assert_same_tensors(hub.load_state_dict(child.ref), wrapped)


def test_a_transformers_classifier_shares_its_base_encoder(hub_home, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=3,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(tmp_path / "base")
    base = hub.import_hf(str(tmp_path / "base"), "acme/bert-tiny")
    classifier = transformers.BertForSequenceClassification(config).eval()
    classifier.bert.load_state_dict(hub.load_state_dict(base.ref))
    child = hub.publish(
        classifier, "acme/bert-tiny-classifier", parent=base.ref, architecture="transformers",
        config={"auto_class": "AutoModelForSequenceClassification", "hf_config": classifier.config.to_dict()},
    )

    assert child.file("model.safetensors") == base.file("model.safetensors")
    assert child.weight_views == {"model.safetensors": {"prefix": "bert.", "skip": []}}
    assert stored_names(hub_home, child, "model-changed.safetensors") == ["classifier.bias", "classifier.weight"]
    inputs = torch.randint(0, 128, (2, 12))
    with torch.no_grad():
        expected = classifier(input_ids=inputs).logits
        assert torch.equal(hub.load(child.ref, device="cpu")(input_ids=inputs).logits, expected)

    blobs_before = sorted(p.name for p in (hub_home / "blobs").iterdir())
    folder = hub.download(child.ref, tmp_path / "download")
    assert sorted(p.name for p in (hub_home / "blobs").iterdir()) == blobs_before  # merged into the folder, not the store
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "modelhub.json"]
    manifest = Manifest.from_json((folder / "modelhub.json").read_bytes())
    assert [f.path for f in manifest.files] == ["model.safetensors"] and manifest.weight_views == {}
    from hub.storage import sha256_file

    assert (manifest.files[0].sha256, manifest.files[0].size) == sha256_file(folder / "model.safetensors")
    # the merged file Hugging Face clients are served (kept in the store once built) has the same bytes
    merged = hub.default_hub().files.merged_weights(child)
    assert (merged.sha256, merged.size) == sha256_file(folder / "model.safetensors")
    second = hub.download(child.ref, tmp_path / "download-again")  # now copied from that blob
    assert sha256_file(second / "model.safetensors") == sha256_file(folder / "model.safetensors")
    assert Manifest.from_json((second / "modelhub.json").read_bytes()) == manifest
    reopened = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        assert torch.equal(reopened(input_ids=inputs).logits, expected)
    again = hub.publish(folder, "acme/bert-tiny-again")
    assert (again.parent, again.architecture, again.weight_views) == (child.ref, "transformers", {})
    assert_same_tensors(hub.load_state_dict(again.ref), hub.load_state_dict(child.ref))


def test_deleting_the_parent_keeps_the_shared_blob(hub_home):
    base, _ = publish_base()
    tuned = new_head(hub.load("acme/base", device="cpu"))
    child = hub.publish(tuned, "acme/tuned")  # the loaded module remembers its parent
    assert child.parent == base.ref and child.weight_views
    hub.delete_version(base.ref)
    report = hub.gc(min_age_seconds=0)
    assert [p.rsplit("/", 1)[1] for p in report.removed] == [base.digest]
    assert_same_tensors(hub.load_state_dict(child.ref), tuned.state_dict())
    assert hub.verify().ok


def test_share_weights_false_stores_a_self_contained_file(hub_home):
    base, _ = publish_base()
    before = blob_bytes(hub_home)
    tuned = new_head(hub.load("acme/base", device="cpu"))
    child = hub.publish(tuned, "acme/tuned", share_weights=False)
    assert (child.weight_files, child.weight_views, child.parent) == (("model.safetensors",), {}, base.ref)
    assert sorted(read_header(hub_home / "blobs" / child.files[0].sha256).tensors) == sorted(tuned.state_dict())
    assert blob_bytes(hub_home) - before > base.files[0].size
    assert_same_tensors(hub.load_state_dict(child.ref), tuned.state_dict())


def test_a_full_fine_tune_shares_nothing(hub_home):
    publish_base()
    tuned = hub.load("acme/base", device="cpu")
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(0.01)
    child = hub.publish(tuned, "acme/tuned")
    assert (child.weight_files, child.weight_views, [f.path for f in child.files]) == (("model.safetensors",), {}, ["model.safetensors"])
    assert "weight_views" not in json.loads((hub_home / "blobs" / child.digest).read_bytes())  # older readers read it
    assert_same_tensors(hub.load_state_dict(child.ref), tuned.state_dict())


def test_reindex_keeps_the_views():
    publish_base()
    tuned = new_head(hub.load("acme/base", device="cpu"))
    child = hub.publish(tuned, "acme/tuned")
    from sqlalchemy import text

    with hub.default_hub().db.engine.begin() as connection:
        connection.execute(text("DELETE FROM registered_models"))
    assert hub.reindex().live == 2
    assert hub.info(child.ref) == child
    assert_same_tensors(hub.load(child.ref, device="cpu").state_dict(), tuned.state_dict())


def test_info_json_shows_the_views(capsys):
    publish_base()
    hub.publish(new_head(hub.load("acme/base", device="cpu")), "acme/tuned")
    from hub.cli import main

    assert main(["info", "acme/tuned", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weight_views"] == {"model.safetensors": {"prefix": "", "skip": ["layers.4.bias", "layers.4.weight"]}}


@pytest.mark.parametrize(
    "views",
    [
        [],
        {"other.safetensors": {"prefix": "", "skip": []}},
        {"model.safetensors": {"prefix": 1, "skip": []}},
        {"model.safetensors": {"prefix": "", "skip": "layers.4.weight"}},
        {"model.safetensors": {"prefix": "", "skip": [4]}},
        {"model.safetensors": {"prefix": ""}},
    ],
)
def test_malformed_views_are_refused(views):
    base, _ = publish_base()
    record = json.loads(hub.default_hub().blobs.read_bytes(base.digest)) | {"weight_views": views}
    with pytest.raises(UnsafeFormatError, match="not a valid modelhub manifest"):
        Manifest.from_json(json.dumps(record).encode())
