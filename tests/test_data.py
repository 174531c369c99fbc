"""Training data: real data sets read from every format equal their source arrays; every bad input
raises the most specific DataError with a message naming the file, row, column and the fix."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine

from finetune.data import DataSpec, Dataset, file_sha256, load_dataset, split_dataset
from hub.errors import (
    ColumnNotFoundError,
    ConfigError,
    DataError,
    EmptyDataError,
    InvalidValueError,
    LabelError,
    ShapeMismatchError,
    TooFewRowsError,
    UnreadableDataError,
)

pytestmark = pytest.mark.one_backend  # nothing here depends on the registry backend

DIGITS = load_digits()
WINE = load_wine()
IRIS = load_iris()
CANCER = load_breast_cancer()
PIXELS = [f"pixel_{i}" for i in range(64)]

REVIEWS = [
    ("A warm, funny film with a cast that clearly loved making it.", "positive"),
    ("The plot made no sense and the ending was worse.", "negative"),
    ("I would happily watch it again tomorrow.", "positive"),
    ("Two hours of my life I will never get back.", "negative"),
    ("The soundtrack alone is worth the ticket.", "positive"),
    ("Wooden acting, clumsy dialogue, and a \"twist\" you can see coming.", "negative"),
    ("A gentle story told with real care.", "positive"),
    ("It drags badly in the middle and never recovers.", "negative"),
    ("The best thing I have seen this year.", "positive"),
    ("Loud, long and strangely boring.", "negative"),
    ("Every scene looks like a painting.", "positive"),
    ("The jokes fall flat, one after another.", "negative"),
    ("Smart, moving and never sentimental.", "positive"),
    ("I checked my watch every ten minutes.", "negative"),
    ("The lead gives a performance to remember.", "positive"),
    ("A sequel nobody asked for, made with no ideas.", "negative"),
    ("My children laughed from start to finish.", "positive"),
    ("The editing is so choppy it hurts to watch.", "negative"),
    ("A small film with a very big heart.", "positive"),
    ("Predictable, dull, and far too pleased with itself.", "negative"),
    ("It made me want to call my parents.", "positive"),
    ("Even the special effects look cheap.", "negative"),
    ("Beautifully written, beautifully played.", "positive"),
    ("I left before the end, and I don't regret it.", "negative"),
]


# --- writers ----------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_digits_csv(path: Path, count: int | None = None) -> Path:
    data, target = DIGITS.data[:count], DIGITS.target[:count]
    return write_csv(path, [*PIXELS, "label"], ([*map(int, row), int(label)] for row, label in zip(data, target)))


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def write_reviews_csv(path: Path, reviews=REVIEWS) -> Path:
    return write_csv(path, ["text", "label"], reviews)


def digit_pixels(count: int) -> np.ndarray:
    """The first ``count`` digits as 8x8 uint8 images (0..16 scaled to 0..255)."""
    return np.round(DIGITS.images[:count] * 255 / 16).astype(np.uint8)


def write_digit_folder(root: Path, count: int) -> Path:
    for index, (pixels, label) in enumerate(zip(digit_pixels(count), DIGITS.target[:count])):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".PNG" if index == 7 else ".png"
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}{suffix}", format="PNG")
    (root / "3" / "notes.txt").write_text("not an image")
    (root / "3" / ".hidden.png").write_bytes(b"not an image either")
    (root / ".cache").mkdir()
    (root / "README.md").write_text("digits")
    return root


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory) -> Path:
    return write_digits_csv(tmp_path_factory.mktemp("digits") / "digits.csv")


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    return write_digit_folder(tmp_path_factory.mktemp("images") / "digits", 150)


# --- reading each format ----------------------------------------------------


def test_csv_digits_equal_the_source(digits_csv):
    dataset = load_dataset(digits_csv, task="classification")
    assert dataset.inputs.dtype == torch.float32 and dataset.inputs.shape == (1797, 64)
    assert torch.equal(dataset.inputs, torch.tensor(DIGITS.data, dtype=torch.float32))
    assert dataset.targets.dtype == torch.int64 and torch.equal(dataset.targets, torch.tensor(DIGITS.target))
    assert dataset.label_names == tuple(str(i) for i in range(10))
    assert dataset.feature_names == tuple(PIXELS)
    assert dataset.source == str(digits_csv) and len(dataset) == 1797
    assert dataset.sha256 == hashlib.sha256(digits_csv.read_bytes()).hexdigest() == file_sha256(digits_csv)


def test_csv_reshaped_to_the_model_input(digits_csv):
    dataset = load_dataset(digits_csv, task="classification", input_shape=(1, 8, 8))
    assert dataset.inputs.shape == (1797, 1, 8, 8)
    assert torch.equal(dataset.inputs[:, 0], torch.tensor(DIGITS.images, dtype=torch.float32))


def test_csv_digits_read_fast(digits_csv):
    started = time.perf_counter()
    load_dataset(digits_csv, task="classification", input_shape=(64,), min_rows=64)
    assert time.perf_counter() - started < 0.5


def test_csv_with_byte_order_mark_and_chosen_columns(tmp_path):
    path = tmp_path / "wine.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as stream:
        writer = csv.writer(stream)
        writer.writerow(["label", *WINE.feature_names])
        writer.writerows([int(label), *map(repr, row.tolist())] for row, label in zip(WINE.data, WINE.target))
    spec = DataSpec(feature_columns=("proline", "alcohol"))
    dataset = load_dataset(path, task="classification", spec=spec)
    columns = [WINE.feature_names.index("proline"), WINE.feature_names.index("alcohol")]
    assert dataset.feature_names == ("proline", "alcohol")
    assert torch.equal(dataset.inputs, torch.tensor(WINE.data[:, columns], dtype=torch.float32))


def test_jsonl_wine_with_named_classes(tmp_path):
    names = [f"cultivar {chr(ord('A') + int(t))}" for t in WINE.target]
    records = [{**dict(zip(WINE.feature_names, row.tolist())), "label": name} for row, name in zip(WINE.data, names)]
    path = write_jsonl(tmp_path / "wine.ndjson", records)
    dataset = load_dataset(path, task="classification", input_shape=(13,))
    assert torch.equal(dataset.inputs, torch.tensor(WINE.data, dtype=torch.float32))
    assert dataset.label_names == ("cultivar A", "cultivar B", "cultivar C")
    assert torch.equal(dataset.targets, torch.tensor(WINE.target))
    assert dataset.feature_names == tuple(WINE.feature_names)


def test_parquet_breast_cancer(tmp_path):
    columns = {name: CANCER.data[:, i] for i, name in enumerate(CANCER.feature_names)}
    path = tmp_path / "cancer.parquet"
    pq.write_table(pa.table({**columns, "diagnosis": CANCER.target}), path)
    dataset = load_dataset(path, task="classification", spec=DataSpec(label_column="diagnosis"))
    assert torch.equal(dataset.inputs, torch.tensor(CANCER.data, dtype=torch.float32))
    assert torch.equal(dataset.targets, torch.tensor(CANCER.target))
    assert dataset.label_names == ("0", "1") and dataset.feature_names == tuple(CANCER.feature_names)
    assert dataset.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_npz_digits_as_images(tmp_path):
    path = tmp_path / "digits.NPZ"  # suffixes are case-insensitive
    with path.open("wb") as stream:
        np.savez(stream, x=DIGITS.images, y=DIGITS.target)
    as_stored = load_dataset(path, task="classification")
    assert torch.equal(as_stored.inputs, torch.tensor(DIGITS.images, dtype=torch.float32))
    reshaped = load_dataset(path, task="classification", input_shape=(1, 8, 8))
    assert reshaped.inputs.shape == (1797, 1, 8, 8) and torch.equal(reshaped.targets, torch.tensor(DIGITS.target))
    assert reshaped.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_npz_string_labels(tmp_path):
    path = tmp_path / "iris.npz"
    np.savez(path, x=IRIS.data, y=IRIS.target_names[IRIS.target])
    dataset = load_dataset(path, task="classification")
    assert dataset.label_names == ("setosa", "versicolor", "virginica")
    assert torch.equal(dataset.targets, torch.tensor(IRIS.target))


def test_safetensors_regression(tmp_path):
    path = tmp_path / "iris.safetensors"
    x, y = IRIS.data[:, :2].astype(np.float32), IRIS.data[:, 2:].astype(np.float32)
    save_file({"x": x, "y": y[:, 0].copy()}, str(path))
    dataset = load_dataset(path, task="regression")
    assert dataset.label_names is None and dataset.targets.dtype == torch.float32
    assert torch.equal(dataset.inputs, torch.from_numpy(x)) and torch.equal(dataset.targets, torch.from_numpy(y[:, 0]))
    save_file({"x": x, "y": y}, str(path))
    assert load_dataset(path, task="regression").targets.shape == (150, 2)


def test_csv_regression(tmp_path):
    # the label column holds petal length; the features are the other three
    path = write_csv(tmp_path / "iris.csv", ["sepal_length", "sepal_width", "petal_width", "label"],
                     ([*map(repr, row[[0, 1, 3]].tolist()), repr(float(row[2]))] for row in IRIS.data))
    dataset = load_dataset(path, task="regression")
    assert torch.equal(dataset.targets, torch.tensor(IRIS.data[:, 2], dtype=torch.float32))
    assert dataset.inputs.shape == (150, 3) and dataset.label_names is None


def test_image_folder(digit_folder):
    dataset = load_dataset(digit_folder, task="classification", input_shape=(1, 8, 8))
    order = np.argsort(DIGITS.target[:150], kind="stable")  # class folders in order, files by name
    assert dataset.inputs.shape == (150, 1, 8, 8) and dataset.inputs.dtype == torch.float32
    assert torch.equal(dataset.inputs[:, 0], torch.from_numpy(digit_pixels(150)[order]).float() / 255)
    assert torch.equal(dataset.targets, torch.tensor(DIGITS.target[:150][order]))
    assert dataset.label_names == tuple(str(i) for i in range(10))
    lines = sorted(f"{p.relative_to(digit_folder).as_posix()}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
                   for p in digit_folder.glob("[0-9]/[0-9]*.*") if p.suffix.lower() == ".png")
    assert len(lines) == 150
    assert dataset.sha256 == hashlib.sha256("".join(lines).encode()).hexdigest() == file_sha256(digit_folder)


def test_image_folder_in_colour_and_resized(digit_folder):
    grey = load_dataset(digit_folder, task="classification", input_shape=(1, 8, 8))
    colour = load_dataset(digit_folder, task="classification", input_shape=(3, 8, 8))
    assert colour.inputs.shape == (150, 3, 8, 8)
    assert all(torch.equal(colour.inputs[:, c], grey.inputs[:, 0]) for c in range(3))
    larger = load_dataset(digit_folder, task="classification", input_shape=(1, 16, 12))
    assert larger.inputs.shape == (150, 1, 16, 12)
    assert 0 <= float(larger.inputs.min()) and float(larger.inputs.max()) <= 1


def test_text_classification(tmp_path):
    path = write_reviews_csv(tmp_path / "reviews.csv")
    dataset = load_dataset(path, task="text-classification", input_shape=(64,))
    assert dataset.inputs == tuple(text for text, _ in REVIEWS)
    assert dataset.label_names == ("negative", "positive")
    assert dataset.targets.tolist() == [int(label == "positive") for _, label in REVIEWS]
    assert dataset.feature_names == ("text",)


def test_fixed_label_names_keep_their_order(tmp_path):
    path = write_reviews_csv(tmp_path / "reviews.csv", REVIEWS[:4])
    dataset = load_dataset(path, task="text-classification", label_names=["positive", "negative"])
    assert dataset.label_names == ("positive", "negative") and dataset.targets.tolist() == [0, 1, 0, 1]
    digits = write_digits_csv(tmp_path / "digits.csv", 20)
    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    numbered = load_dataset(digits, task="classification", label_names=words, num_labels=10)
    assert numbered.label_names == words and torch.equal(numbered.targets, torch.tensor(DIGITS.target[:20]))


def test_loading_writes_nothing(tmp_path):
    path = write_reviews_csv(tmp_path / "reviews.csv")
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    load_dataset(path, task="text-classification")
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


# --- splitting --------------------------------------------------------------


def test_stratified_split_keeps_class_proportions(digits_csv):
    dataset = load_dataset(digits_csv, task="classification")
    train, validation = split_dataset(dataset, fraction=0.2, seed=1)
    assert len(train) + len(validation) == len(dataset)
    for label in range(10):
        count = int((dataset.targets == label).sum())
        assert abs(int((validation.targets == label).sum()) - 0.2 * count) <= 1
    rows = torch.cat([train.inputs, validation.inputs])
    assert torch.equal(rows.unique(dim=0), dataset.inputs.unique(dim=0))
    assert validation.label_names == dataset.label_names and validation.sha256 == dataset.sha256
    again = split_dataset(dataset, fraction=0.2, seed=1)[1]
    other = split_dataset(dataset, fraction=0.2, seed=2)[1]
    assert torch.equal(again.inputs, validation.inputs)
    assert not torch.equal(other.inputs, validation.inputs)


def test_stratified_split_gives_every_class_a_validation_row(tmp_path):
    labels = ["negative"] * 2 + ["neutral"] * 2 + ["mixed"] + ["positive"] * 19
    reviews = [(text, label) for (text, _), label in zip(REVIEWS, labels)]
    dataset = load_dataset(write_reviews_csv(tmp_path / "r.csv", reviews), task="text-classification")
    assert dataset.label_names == ("mixed", "negative", "neutral", "positive")
    train, validation = split_dataset(dataset, fraction=0.1, seed=0)
    assert sorted(validation.targets.tolist()) == [1, 2, 3, 3]  # none of one mixed, one of two, two of 19 positive
    assert set(train.inputs) | set(validation.inputs) == set(dataset.inputs)


def test_plain_split_for_regression(tmp_path):
    path = tmp_path / "iris.npz"
    np.savez(path, x=IRIS.data[:, :3], y=IRIS.data[:, 3])
    dataset = load_dataset(path, task="regression")
    train, validation = split_dataset(dataset, fraction=0.3, seed=0)
    assert (len(train), len(validation)) == (105, 45)
    assert sorted(torch.cat([train.targets, validation.targets]).tolist()) == sorted(dataset.targets.tolist())


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True])
def test_split_fraction_out_of_range(digits_csv, fraction):
    dataset = load_dataset(digits_csv, task="classification")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        split_dataset(dataset, fraction=fraction)


def test_split_too_small(tmp_path):
    dataset = load_dataset(write_reviews_csv(tmp_path / "r.csv"), task="text-classification")
    with pytest.raises(TooFewRowsError, match="r.csv: can't split 1 rows"):
        split_dataset(dataset.subset([0]), stratify=False)
    with pytest.raises(TooFewRowsError, match="can't split 2 rows"):
        split_dataset(dataset.subset([0, 1]))  # one row of each class: neither can spare one


def test_subset_keeps_everything_but_the_rows(digits_csv):
    dataset = load_dataset(digits_csv, task="classification")
    part = dataset.subset(torch.tensor([5, 0]))
    assert isinstance(part, Dataset) and len(part) == 2
    assert torch.equal(part.inputs, dataset.inputs[[5, 0]]) and part.targets.tolist() == [5, 0]
    assert (part.source, part.sha256, part.label_names, part.feature_names) == \
        (dataset.source, dataset.sha256, dataset.label_names, dataset.feature_names)


# --- the bad-input catalogue ------------------------------------------------


def _bytes(folder: Path, name: str, content: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _images_with_broken_png(folder: Path) -> Path:
    root = write_digit_folder(folder / "images", 20)
    _bytes(root, "3/broken.png", b"\x89PNG\r\n\x1a\n this is not the rest of a PNG")
    return root


def _npz(folder: Path, **arrays) -> Path:
    np.savez(folder / "data.npz", **arrays)
    return folder / "data.npz"


SMALL = "a,b,label\n1,2,0\n3,4,1\n5,6,0\n"

# (writes the bad input and returns (path, load_dataset keywords), error class, message fragments)
BAD_INPUTS = [
    pytest.param(lambda d: (_bytes(d, "empty.csv", ""), {}), EmptyDataError, ["empty.csv", "is empty"], id="empty-file"),
    pytest.param(lambda d: (_bytes(d, "h.csv", "a,b,label\n"), {}), EmptyDataError, ["h.csv", "no data rows"],
                 id="header-only"),
    pytest.param(lambda d: (_bytes(d, "e.jsonl", "\n\n"), {}), EmptyDataError, ["e.jsonl", "no rows"], id="blank-jsonl"),
    pytest.param(lambda d: (write_digits_csv(d / "d.csv", 30), {"spec": DataSpec(label_column="lable")}),
                 ColumnNotFoundError, ["d.csv, column 'lable'", "did you mean 'label'", "'pixel_0'", "label_column"],
                 id="misspelled-label-column"),
    pytest.param(lambda d: (write_digits_csv(d / "d.csv", 30), {"spec": DataSpec(feature_columns=("pixel_0", "pixle_1"))}),
                 ColumnNotFoundError, ["column 'pixle_1'", "did you mean 'pixel_1'", "feature_columns"],
                 id="misspelled-feature-column"),
    pytest.param(lambda d: (write_reviews_csv(d / "r.csv"), {"task": "text-classification", "spec": DataSpec(text_column="Texts")}),
                 ColumnNotFoundError, ["column 'Texts'", "did you mean 'text'"], id="misspelled-text-column"),
    pytest.param(lambda d: (_bytes(d, "n.csv", "a,b,label\n1,2,0\n3,nan,1\n"), {}), InvalidValueError,
                 ["n.csv, row 2, column 'b'", "NaN"], id="nan"),
    pytest.param(lambda d: (_bytes(d, "i.csv", "a,b,label\n1,2,0\n3,4,1\n-inf,4,1\n"), {}), InvalidValueError,
                 ["row 3, column 'a'", "'-inf' is infinite"], id="inf"),
    pytest.param(lambda d: (_bytes(d, "t.csv", "a,b,label\n1,2,0\n3,four,1\n"), {}), InvalidValueError,
                 ["row 2, column 'b'", "'four' is not a number"], id="not-a-number"),
    pytest.param(lambda d: (_bytes(d, "c.csv", "a,b,label\n1,,0\n3,4,1\n"), {}), InvalidValueError,
                 ["row 1, column 'b'", "missing"], id="empty-cell"),
    pytest.param(lambda d: (write_jsonl(d / "m.jsonl", [{"a": 1, "label": 0}, {"label": 1}]), {}), InvalidValueError,
                 ["m.jsonl, row 2, column 'a'", "missing"], id="jsonl-missing-key"),
    pytest.param(lambda d: (_bytes(d, "r.csv", "x,label\n1,0.5\n2,nan\n"), {"task": "regression"}), InvalidValueError,
                 ["row 2, column 'label'", "NaN"], id="nan-regression-target"),
    pytest.param(lambda d: (_bytes(d, "r.csv", "text,label\nfine,positive\n  ,negative\n"), {"task": "text-classification"}),
                 InvalidValueError, ["row 2, column 'text'", "missing or empty"], id="empty-text"),
    pytest.param(lambda d: (_bytes(d, "u.csv", b"a,b,label\n1,2,0\n3,\xff,1\n"), {}), UnreadableDataError,
                 ["u.csv, row 2", "line 3", "0xff", "UTF-8"], id="not-utf8"),
    pytest.param(lambda d: (_bytes(d, "w.csv", SMALL + "7,8\n"), {}), UnreadableDataError,
                 ["row 4", "2 values but the header has 3"], id="short-row"),
    pytest.param(lambda d: (_bytes(d, "j.jsonl", '{"a": 1, "label": 0}\n\n{"a": 2, "label":\n'), {}), UnreadableDataError,
                 ["j.jsonl, row 3", "not valid JSON"], id="invalid-json"),
    pytest.param(lambda d: (_bytes(d, "o.jsonl", '{"a": 1, "label": 0}\n[2, 1]\n'), {}), UnreadableDataError,
                 ["o.jsonl, row 2", "an array, not a JSON object"], id="jsonl-not-an-object"),
    pytest.param(lambda d: (write_digits_csv(d / "d.csv", 30), {"num_labels": 5}), LabelError,
                 ["d.csv, row 6, column 'label'", "label '5' is class 5", "output head has 5 classes"],
                 id="label-beyond-head"),
    pytest.param(lambda d: (write_digits_csv(d / "d.csv", 30), {"label_names": ("a", "b", "c")}), LabelError,
                 ["row 4", "'3' is out of range", "'a', 'b', 'c'"], id="number-beyond-label-names"),
    pytest.param(lambda d: (write_reviews_csv(d / "r.csv", [*REVIEWS[:2], ("Meh.", "neutral")]),
                            {"task": "text-classification", "label_names": ("negative", "positive")}),
                 LabelError, ["row 3, column 'label'", "'neutral' is not one of the 2 known labels", "'negative', 'positive'"],
                 id="unknown-label-name"),
    pytest.param(lambda d: (_bytes(d, "neg.csv", "a,label\n1,0\n2,-1\n"), {}), LabelError,
                 ["row 2", "'-1' is not a class index"], id="negative-label"),
    pytest.param(lambda d: (_bytes(d, "f.csv", "a,label\n1,0\n2,1.5\n"), {}), LabelError,
                 ["row 2", "'1.5' is not a class index"], id="fractional-label"),
    pytest.param(lambda d: (_bytes(d, "one.csv", "a,label\n1,cat\n2,cat\n"), {}), LabelError,
                 ["one.csv, column 'label'", "every row has the label 'cat'", "at least two classes"], id="single-class"),
    pytest.param(lambda d: (_bytes(d, "s.csv", SMALL), {"min_rows": 32}), TooFewRowsError,
                 ["s.csv", "has 3 rows", "batch of 32", "lower the batch size"], id="fewer-rows-than-a-batch"),
    pytest.param(lambda d: (write_digits_csv(d / "d.csv", 30), {"input_shape": (1, 8, 9)}), ShapeMismatchError,
                 ["64 feature columns", "(1, 8, 9) needs 72"], id="features-do-not-fit-input-shape"),
    pytest.param(lambda d: (_images_with_broken_png(d), {"input_shape": (1, 8, 8)}), UnreadableDataError,
                 ["broken.png", "not a readable image"], id="broken-png"),
    pytest.param(lambda d: ((d / "nothing").mkdir() or d / "nothing", {"input_shape": (1, 8, 8)}), EmptyDataError,
                 ["nothing", "no class folders"], id="empty-image-folder"),
    pytest.param(lambda d: (write_digit_folder(d / "images", 20), {}), ShapeMismatchError,
                 ["input_shape=(channels, height, width)"], id="image-folder-without-input-shape"),
    pytest.param(lambda d: (_npz(d, x=DIGITS.data[:5], labels=DIGITS.target[:5]), {}), ColumnNotFoundError,
                 ["data.npz, column 'y'", "no array 'y'", "'labels'"], id="npz-without-y"),
    pytest.param(lambda d: (_npz(d, x=DIGITS.data[:2], y=np.array([{"a": 1}, None], dtype=object)), {}),
                 UnreadableDataError, ["column 'y'", "Python objects", "unpickling"], id="npz-object-array"),
    pytest.param(lambda d: (_npz(d, x=DIGITS.data[:5], y=DIGITS.target[:4]), {}), ShapeMismatchError,
                 ["x has 5 rows but y has shape (4,)"], id="npz-rows-disagree"),
    pytest.param(lambda d: (_bytes(d, "dup.csv", "a,a,label\n1,2,0\n"), {}), UnreadableDataError,
                 ["dup.csv", "column 'a' twice"], id="duplicate-header"),
    pytest.param(lambda d: (_bytes(d, "u.jsonl", b'{"a": 1, "label": 0}\n{"a": "\xe9", "label": 1}\n'), {}),
                 UnreadableDataError, ["u.jsonl, row 2", "not UTF-8"], id="jsonl-not-utf8"),
    pytest.param(lambda d: (_bytes(d, "big.csv", "a,label\n1,0\n2,1e30\n"), {}), LabelError,
                 ["row 2", "more than 100000 classes"], id="label-too-large"),
    pytest.param(lambda d: (write_digit_folder(d / "images", 20), {"input_shape": (1, 8, 8), "label_names": ("0", "1", "2")}),
                 LabelError, ["0003.png", "'3' is not one of the 3 known labels"], id="image-class-not-in-label-names"),
    pytest.param(lambda d: (write_digit_folder(d / "images", 20), {"task": "regression", "input_shape": (1, 8, 8)}),
                 UnreadableDataError, ["only for task='classification'"], id="image-folder-for-regression"),
    pytest.param(lambda d: (_npz(d, x=DIGITS.data[:5], y=DIGITS.target[:5]), {"task": "text-classification"}),
                 UnreadableDataError, ["text tasks read texts from a table"], id="text-task-from-arrays"),
    pytest.param(lambda d: (_bytes(d, "data.txt", SMALL), {}), UnreadableDataError, ["data.txt", "can't read .txt", ".csv"],
                 id="unknown-suffix"),
    pytest.param(lambda d: (d / "missing.csv", {}), UnreadableDataError, ["missing.csv", "does not exist"], id="missing-path"),
    pytest.param(lambda d: (_bytes(d, "s.csv", SMALL), {"task": "clasification"}), ConfigError,
                 ["unknown task 'clasification'", "did you mean 'classification'"], id="unknown-task"),
]


@pytest.mark.parametrize(("write", "error", "fragments"), BAD_INPUTS)
def test_bad_input(tmp_path, write, error, fragments):
    path, options = write(tmp_path)
    options = {"task": "classification", **options}
    with pytest.raises(error) as caught:
        load_dataset(path, **options)
    assert type(caught.value) is error
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    if isinstance(caught.value, DataError):
        assert isinstance(caught.value, ValueError)


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "label": [0, 1]}), path)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
    with pytest.raises(UnreadableDataError, match=r"t.parquet: .*pip install 'modelhub\[parquet\]'"):
        load_dataset(path, task="classification")
