"""Input facts (hub.InputSpec): recorded at publish, read back by hub.input_spec, inferred for versions
that record none, kept by publishes of the same model, and recorded by fine-tuning for what it publishes
(with the data's feature names; an image folder's pixels mapped into the base's range)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import finetune
import hub
from hub.inputs import InputSpec

pytestmark = pytest.mark.one_backend  # a version's input facts: parsing and checking

DIGITS_INPUT = {"kind": "image", "value_range": [0, 16], "background": 0}
IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def convnet(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return hub.create("convnet", in_channels=1, image_size=8, channels=[4], num_classes=num_classes)


def test_publish_records_input_facts_and_input_spec_reads_them_back(tmp_path):
    version = hub.publish(convnet(), "acme/digits-cnn", input=DIGITS_INPUT)
    expected = InputSpec("image", (1, 8, 8), (0.0, 16.0), 0.0, recorded=True)
    assert hub.input_spec(version.ref) == hub.input_spec(version) == expected  # the shape filled in from the config
    assert version.metadata["input"] == {"kind": "image", "shape": [1, 8, 8], "value_range": [0.0, 16.0], "background": 0.0}
    assert hub.input_spec("acme/digits-cnn").to_dict()["value_range"] == (0.0, 16.0)

    # Kept by a publish of the same model: a module loaded from the hub, a downloaded folder; not when the config changes.
    assert hub.input_spec(hub.publish(hub.load(version.ref, device="cpu"), "acme/digits-cnn")) == expected
    folder = hub.download(version.ref, tmp_path / "download")
    assert hub.input_spec(hub.publish(folder, "acme/copy")) == expected
    other = hub.publish(convnet(num_classes=5), "acme/other", parent=version.ref)
    assert not hub.input_spec(other).recorded

    # Through metadata, and named features for numbers.
    mlp = hub.create("mlp", in_features=4, out_features=3, standardize=True)
    iris = hub.publish(mlp, "acme/iris", metadata={"input": {"feature_names": IRIS}, "source": "scikit-learn"})
    assert hub.input_spec(iris) == InputSpec("numbers", (4,), feature_names=tuple(IRIS), standardizes=True, recorded=True)
    assert iris.metadata["source"] == "scikit-learn"


def test_versions_that_record_no_input_facts_get_them_from_their_config():
    assert hub.input_spec(hub.publish(convnet(), "acme/old-cnn")) == InputSpec("image", (1, 8, 8), (0.0, 1.0))
    assert hub.input_spec(hub.publish(hub.create("mlp", in_features=4, standardize=True), "acme/old-mlp")) == \
        InputSpec("numbers", (4,), standardizes=True)
    assert hub.input_spec(hub.publish({"w": torch.zeros(2)}, "acme/weights")) == InputSpec()


@pytest.mark.parametrize(("facts", "message"), [
    ({"kind": "audio"}, "input kind must be one of image, numbers, text"),
    ({"shape": [1, 16, 16]}, "input shape [1, 16, 16] does not fit architecture 'convnet'"),
    ({"kind": "numbers"}, "input kind 'numbers' does not fit architecture 'convnet'"),
    ({"value_range": [16, 0]}, "low < high"),
    ({"value_range": [0, float("inf")]}, "must be a finite number"),
    ({"feature_names": ["a"]}, "feature_names are for numbers, not a image input"),
    ({"pixels": 16}, "unknown key(s) ['pixels']"),
    ("0-16", "input must be a dict of input facts"),
])
def test_publish_refuses_input_facts_that_are_malformed_or_contradict_the_config(facts, message):
    with pytest.raises(hub.InvalidArgumentError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        hub.publish(convnet(), "acme/bad", input=facts)
    with pytest.raises(hub.InvalidArgumentError, match="given twice"):
        hub.publish(convnet(), "acme/bad", input=DIGITS_INPUT, metadata={"input": DIGITS_INPUT})
    assert hub.list_models() == []


def test_hub_publish_takes_input_facts_on_the_command_line(run_cli, tmp_path):
    folder = hub.download(hub.publish(hub.create("mlp", in_features=4, out_features=3), "acme/iris").ref, tmp_path / "iris")
    run_cli("publish", str(folder), "acme/iris", "--input", json.dumps({"feature_names": IRIS}))
    assert hub.input_spec("acme/iris:2").feature_names == tuple(IRIS)


def test_finetune_records_the_datas_feature_names_and_keeps_the_bases_facts(tmp_path):
    from sklearn.datasets import load_iris

    iris = load_iris()
    data = tmp_path / "iris.csv"
    with open(data, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*iris.feature_names, "label"])
        writer.writerows([*map(float, x), int(y)] for x, y in zip(iris.data, iris.target))
    base = hub.publish(hub.create("mlp", in_features=4, out_features=3, standardize=True), "acme/iris")  # records nothing
    tuned = finetune.run(base.ref, data, output="me/iris", config={"epochs": 1, "batch_size": 16})
    assert hub.input_spec(tuned) == InputSpec("numbers", (4,), feature_names=tuple(IRIS), standardizes=True, recorded=True)


def test_finetune_maps_an_image_folder_into_the_bases_pixel_range_and_records_it(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = tmp_path / "images"
    for index in range(48):
        label = int(digits.target[index]) % 3
        (folder / f"class-{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[index] * 255 / 16).round().astype(np.uint8), mode="L").save(folder / f"class-{label}" / f"{index}.png")
    base = hub.publish(convnet(), "acme/digits-cnn", input=DIGITS_INPUT)
    checked = finetune.runner.check_job(hub.default_hub(), base.ref, "classification", folder, None,
                                        finetune.FinetuneConfig(batch_size=8))
    pixels = torch.cat([checked.train_set.inputs, checked.validation_set.inputs])
    assert pixels.min() == 0 and pixels.max() == 16  # the base's range, not the image's 0 to 1
    assert torch.equal(pixels.sort(0).values, torch.from_numpy(
        (np.stack(digits.images[:48]) * 255 / 16).round() / 255 * 16).float().unsqueeze(1).sort(0).values)
    tuned = finetune.run(base.ref, folder, output="me/digits", config={"epochs": 1, "batch_size": 8})
    assert hub.input_spec(tuned) == hub.input_spec(base)


def test_a_job_records_data_inside_the_hubs_folder_relative_to_it(hub_home, tmp_path):
    """So a hub reads the same when its folder moves (the demo's sample job was made in another folder)."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    inside = hub_home / "data" / "iris.csv"
    inside.parent.mkdir(parents=True)
    with open(inside, "w", newline="") as f:
        csv.writer(f).writerows([[*iris.feature_names, "label"], *([*map(float, x), int(y)] for x, y in zip(iris.data, iris.target))])
    base = hub.publish(hub.create("mlp", in_features=4, out_features=3), "acme/iris")
    job = finetune.submit(base.ref, inside, output="me/iris", config={"epochs": 1, "batch_size": 16})
    assert job.data["train"] == "data/iris.csv"
    finetune.work(once=True)
    done = finetune.get_job(job.id)
    assert done.status == "succeeded", done.error
    card = hub.read_card(done.result)
    assert "`data/iris.csv` in the hub's folder" in card and str(hub_home) not in card
    elsewhere = tmp_path / "iris.csv"
    elsewhere.write_bytes(inside.read_bytes())
    assert finetune.submit(base.ref, elsewhere, output="me/iris").data["train"] == str(elsewhere)
