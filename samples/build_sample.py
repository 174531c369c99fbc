"""Build ``registry.db.sample`` and ``samples/`` (blobs, refs, data): real models trained on the
data sets that ship with scikit-learn, deterministically.

    .venv/bin/python samples/build_sample.py          # rewrites registry.db.sample and samples/*

What it makes (held-out metrics in every version, a model card saying how it was trained):

- ``demo/digits-cnn``         a ``convnet`` on the 8x8 handwritten digits; v1 after 2 epochs, v2
                              after 12; ``@production`` moved from v1 to v2 (a history to see).
- ``demo/wine-mlp``           an ``mlp`` (inputs standardized) on the wine cultivars.
- ``demo/breast-cancer-mlp``  an ``mlp`` (inputs standardized) on the breast cancer diagnoses.
- ``demo/iris-mlp``           an ``mlp`` on the iris species.
- ``demo/digits-0to4``        a ``convnet`` on the digits 0-4 only, and
  ``demo/digits-5to9``        fine-tuned from it on the digits 5-9 by ``finetune.run`` (a new head;
                              parent recorded; its job, loss curve and events are in the sample).

Every version records its input facts (``hub.input_spec``): the digits are 8x8 images of one
channel, pixels 0 (background) to 16; the tabular models name their features as scikit-learn
does. The sample reads as made on the user's machine: the job's data paths are relative to the
hub's folder (``samples/data/...``, where ``hub demo`` puts the data), its worker is
``modelhub-sample``, and no card names a path or host of the machine that built it.

Every split is ``train_test_split(test_size=0.25, stratify=y, random_state=0)``; training runs on
one CPU thread with fixed seeds, so the same torch, numpy and scikit-learn on the same platform
give the same weights. ``samples/BUILD.json`` records those versions: the promise is bitwise
weights where they match, and the same models with metrics within :data:`METRIC_TOLERANCE`
wherever pip resolves other compatible releases (numpy and scikit-learn are not pinned).
:func:`held_out` gives each model's held-out rows, for the test that checks the metrics.
"""

from __future__ import annotations

import csv
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DB = ROOT / "registry.db.sample"
SAMPLES = ROOT / "samples"
BUILD_RECORD = SAMPLES / "BUILD.json"
METRIC_TOLERANCE = 0.05  # how far a rebuild's held-out accuracy and macro F1 may move under other library releases
DATASETS = {
    "digits": "load_digits", "wine": "load_wine", "breast-cancer": "load_breast_cancer", "iris": "load_iris",
}
DIGITS_INPUT = {"kind": "image", "shape": [1, 8, 8], "value_range": [0, 16], "background": 0}  # 8x8, ink 16 on 0
WORKER = "modelhub-sample"  # who ran the sample's job, instead of this machine's host:pid


def library_versions() -> dict[str, str]:
    """What decides the sample's exact bytes: the libraries that train it and the platform, down to the
    CPU kernels torch picks (a convolution on AVX2 and on AVX-512 rounds differently)."""
    import platform

    import numpy
    import sklearn

    return {"torch": torch.__version__, "numpy": numpy.__version__, "scikit-learn": sklearn.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def recorded_versions() -> dict[str, str]:
    """The versions the sample was built with (``samples/BUILD.json``)."""
    import json

    return json.loads(BUILD_RECORD.read_text())


def dataset(name: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Features (float32), labels (int64) and class names of one of scikit-learn's bundled data sets."""
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, DATASETS[name])()
    names = [str(n) for n in bunch.target_names]
    return torch.tensor(bunch.data, dtype=torch.float32), torch.tensor(bunch.target, dtype=torch.int64), names


def input_facts(name: str) -> dict:
    """What a model of data set ``name`` takes: the digits' image facts, or the table's feature names."""
    import sklearn.datasets

    if name == "digits":
        return DIGITS_INPUT
    return {"kind": "numbers", "feature_names": [str(n) for n in getattr(sklearn.datasets, DATASETS[name])().feature_names]}


def split(name: str) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``((x_train, y_train), (x_test, y_test))``: a stratified 75/25 split, seed 0."""
    from sklearn.model_selection import train_test_split

    x, y, _ = dataset(name)
    train_index, test_index = train_test_split(torch.arange(len(y)).numpy(), test_size=0.25, stratify=y.numpy(), random_state=0)
    return (x[train_index], y[train_index]), (x[test_index], y[test_index])


def held_out(model: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows a sample model's metrics were measured on: inputs shaped for the model, class indices."""
    if model == "demo/digits-5to9":
        rows = list(csv.reader(open(SAMPLES / "data" / "digits-5to9-validation.csv")))[1:]
        x = torch.tensor([[float(v) for v in row[:-1]] for row in rows]).reshape(-1, 1, 8, 8)
        return x, torch.tensor([int(row[-1]) for row in rows])  # integer labels are class indices: 5-9
    data = model.removeprefix("demo/").removesuffix("-mlp").removesuffix("-cnn").removesuffix("-0to4")
    _, (x, y) = split(data)
    if model == "demo/digits-0to4":
        keep = y < 5
        x, y = x[keep], y[keep]
    return (x.reshape(-1, 1, 8, 8) if data == "digits" else x), y


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy and macro F1 of ``model`` on ``x``, ``y``."""
    from finetune.tasks import macro_f1

    model.eval()
    with torch.no_grad():
        predicted = model(x).argmax(1)
    return {"accuracy": round(float((predicted == y).float().mean()), 6), "macro_f1": round(macro_f1(predicted, y), 6)}


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, learning_rate: float, seed: int = 0) -> nn.Module:
    """A plain AdamW loop, batch 32, seeded."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(32):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def card(title: str, how: str, data: str, metrics: dict[str, float]) -> dict:
    table = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    text = (f"# {title}\n\n{how}\n\n## Data\n\n{data}\n\n## Held-out metrics\n\n| metric | value |\n|---|---|\n{table}\n\n"
            "Built by `samples/build_sample.py` (deterministic: one CPU thread, fixed seeds).")
    return {"language": ["en"], "datasets": ["scikit-learn"], "text": text}


def publish_classifier(hub, name: str, architecture: str, config: dict, data: str, epochs: int, learning_rate: float,
                       description: str, **publish) -> None:
    """Train a classifier on a data set's training split and publish it with its held-out metrics."""
    import hub as hub_package

    (x, y), _ = split(data)
    _, _, names = dataset(data)
    x = x.reshape(-1, 1, 8, 8) if architecture == "convnet" else x
    torch.manual_seed(0)
    id2label = {str(i): n for i, n in enumerate(names)}
    model = hub_package.create(architecture, **config, id2label=id2label)
    if config.get("standardize"):
        model.fit_standardization(x)
    train(model, x, y, epochs, learning_rate)
    metrics = accuracy(model, *held_out(name))
    how = (f"A `{architecture}` ({', '.join(f'{k}={v}' for k, v in config.items())}) trained from scratch for {epochs} epochs "
           f"with AdamW (learning rate {learning_rate}, weight decay 0.01, batch 32).")
    hub.publish(model, name, task="classification", license="bsd-3-clause", tags=["demo", "scikit-learn", data],
                input=input_facts(data), description=description, metrics=metrics, card=card(name, how, f"scikit-learn's `{DATASETS[data]}()`: "
                f"{len(y)} training rows; metrics on the other 25% (stratified, random_state=0).", metrics), **publish)


def build(home: Path) -> None:
    """Every sample model, into the hub at ``home``."""
    import finetune
    import hub as hub_package

    hub = hub_package.Hub(home=home, registry_url=f"sqlite:///{home / 'registry.db'}")
    digits = {"in_channels": 1, "image_size": 8, "channels": [16, 32], "num_classes": 10}
    for epochs in (2, 12):
        publish_classifier(hub, "demo/digits-cnn", "convnet", digits, "digits", epochs, 3e-3,
                           "Handwritten digit recognition on 8x8 images (pixel values 0-16).", aliases=["production"])
    hub.set_alias("demo/digits-cnn", "staging", 1)
    tabular = {"hidden": [32], "standardize": True}
    publish_classifier(hub, "demo/wine-mlp", "mlp", {"in_features": 13, **tabular, "out_features": 3}, "wine", 60, 1e-2,
                       "Wine cultivar from 13 chemical measurements.", aliases=["production"])
    publish_classifier(hub, "demo/breast-cancer-mlp", "mlp", {"in_features": 30, **tabular, "out_features": 2}, "breast-cancer", 40,
                       1e-2, "Malignant or benign, from 30 features of a breast mass's cell nuclei.", aliases=["production"])
    publish_classifier(hub, "demo/iris-mlp", "mlp", {"in_features": 4, **tabular, "out_features": 3}, "iris", 100, 1e-2,
                       "Iris species from four flower measurements.")

    # Lineage: a convnet on the digits 0-4, and a child fine-tuned from it on 5-9 by a finetune job.
    (x, y), (x_test, y_test) = split("digits")
    low = y < 5
    torch.manual_seed(0)
    model = hub_package.create("convnet", **{**digits, "num_classes": 5}, id2label={str(i): str(i) for i in range(5)})
    train(model, x[low].reshape(-1, 1, 8, 8), y[low], 12, 3e-3)
    metrics = accuracy(model, *held_out("demo/digits-0to4"))
    hub.publish(model, "demo/digits-0to4", task="classification", license="bsd-3-clause", tags=["demo", "scikit-learn", "digits"],
                input=DIGITS_INPUT, description="Digits 0-4 only: the parent of demo/digits-5to9.", metrics=metrics,
                card=card("demo/digits-0to4", "A `convnet` trained from scratch on the digits 0-4 for 12 epochs.",
                          "scikit-learn's `load_digits()`, digits 0-4 of the training split.", metrics))
    data = home / "samples" / "data"  # in the hub's folder: the job records it relative to that, as `hub demo` lays it out
    data.mkdir(parents=True, exist_ok=True)
    header = [f"pixel_{i}" for i in range(64)] + ["label"]
    for path, rows, labels in ((data / "digits-5to9.csv", x[~low], y[~low]), (data / "digits-5to9-validation.csv", x_test[y_test >= 5], y_test[y_test >= 5])):
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows([[int(v) for v in row.tolist()] + [int(label)] for row, label in zip(rows, labels)])
    finetune.run("demo/digits-0to4:1", data / "digits-5to9.csv", output="demo/digits-5to9", hub=hub,
                 validation_data=data / "digits-5to9-validation.csv", config={"epochs": 8, "learning_rate": 3e-3, "train": "all"},
                 worker=WORKER)
    hub.set_alias("demo/digits-5to9", "production", 1)
    hub.close()


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    with tempfile.TemporaryDirectory(prefix="hub-sample-") as folder:
        home = Path(folder)
        build(home)
        with sqlite3.connect(home / "registry.db") as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.execute("PRAGMA journal_mode=DELETE")
        connection.close()
        shutil.copyfile(home / "registry.db", SAMPLE_DB)
        for source, part in ((home / "blobs", "blobs"), (home / "refs", "refs"), (home / "samples" / "data", "data")):
            shutil.rmtree(SAMPLES / part, ignore_errors=True)
            shutil.copytree(source, SAMPLES / part)
    import json

    BUILD_RECORD.write_text(json.dumps(library_versions(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {SAMPLE_DB.relative_to(ROOT)}, {BUILD_RECORD.relative_to(ROOT)} and samples/blobs, samples/refs, samples/data",
          file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("HUB_USER", "modelhub-sample")
    main()
