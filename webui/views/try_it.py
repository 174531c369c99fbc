"""Try it: run a published classifier on one input of your own and see its top predictions.

Supported: ``mlp`` classifiers (numbers), ``convnet`` classifiers (an image, or its pixel
numbers) and ``transformers`` sequence classifiers (text). The helpers below only turn
what the browser sends into a tensor and the model's scores into a table.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from typing import Any

import streamlit as st

from hub.errors import HubError, InvalidArgumentError
from webui.common import md, model_link, query_param, show_error, the_hub

TOP_K = 5
CLASSIFIER_TASKS = ("classification", "text-classification")
SEQUENCE_CLASSIFIER = "AutoModelForSequenceClassification"
NUMBERS, CSV_FILE, IMAGE = "Numbers", "CSV file", "Image"
IMAGE_TYPES = (".png", ".jpg", ".jpeg")


def input_kind(version: Any) -> str | None:
    """What the page feeds ``version``: ``"numbers"`` (mlp), ``"image"`` (convnet), ``"text"``, or None (not a classifier)."""
    config = version.config
    if version.architecture == "transformers":
        return "text" if config.get("auto_class") == SEQUENCE_CLASSIFIER else None
    if version.architecture in ("mlp", "convnet") and (config.get("id2label") or version.task in CLASSIFIER_TASKS):
        return "numbers" if version.architecture == "mlp" else "image"
    return None


def input_shape(version: Any) -> tuple[int, ...]:
    """The shape of one input: ``(in_features,)`` or ``(in_channels, image_size, image_size)``."""
    config = version.config
    if version.architecture == "mlp":
        return (config["in_features"],)
    return (config["in_channels"], config["image_size"], config["image_size"])


def parse_numbers(cells: list[str], where: str) -> list[float]:
    """Finite numbers from text cells.

    Raises:
        InvalidArgumentError: a cell is not a number, or is NaN or infinite.
    """
    values = []
    for position, cell in enumerate(cells, 1):
        try:
            value = float(cell)
        except ValueError:
            raise InvalidArgumentError(f"{where}: value {position} ({cell.strip()!r}) is not a number") from None
        if not math.isfinite(value):
            raise InvalidArgumentError(f"{where}: value {position} ({cell.strip()!r}) is not a finite number")
        values.append(value)
    return values


def text_numbers(text: str) -> list[float]:
    """The numbers in a comma- or whitespace-separated text."""
    return parse_numbers([cell for cell in re.split(r"[,\s]+", text.strip()) if cell], "the numbers")


def csv_numbers(name: str, data: bytes) -> list[float]:
    """The numbers in a CSV's first row; a non-numeric first row is a header, and its ``label`` column is dropped.

    Raises:
        InvalidArgumentError: not UTF-8 text, empty, a header without a row, or a cell that is not a number.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"{name} is not a UTF-8 text CSV file") from None
    try:  # the first two rows are all it reads: a header and the input
        rows = list(itertools.islice((row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)), 2))
    except csv.Error as error:  # a value longer than the csv module allows, an unclosed quote, a NUL
        raise InvalidArgumentError(f"{name} is not a CSV file of numbers ({error})") from None
    if not rows:
        raise InvalidArgumentError(f"{name} is empty; put the input's numbers in its first row")
    try:
        return parse_numbers(rows[0], f"{name}, row 1")
    except InvalidArgumentError:
        header = [cell.strip().lower() for cell in rows[0]]
    if len(rows) < 2:
        raise InvalidArgumentError(f"{name} has a header but no row of numbers")
    if len(rows[1]) != len(header):
        raise InvalidArgumentError(f"{name}: row 1 has {len(rows[1])} values but the header names {len(header)} columns")
    return parse_numbers([cell for column, cell in zip(header, rows[1]) if column != "label"], f"{name}, row 1")


def numbers_tensor(values: list[float], shape: tuple[int, ...]) -> Any:
    """``values`` as a batch of one input of ``shape``.

    Raises:
        InvalidArgumentError: there are not exactly as many numbers as the input holds.
    """
    import torch

    needed = math.prod(shape)
    if len(values) != needed:
        layout = " x ".join(map(str, shape))
        raise InvalidArgumentError(f"the model takes {needed} numbers ({layout}); you gave {len(values)}")
    return torch.tensor(values, dtype=torch.float32).reshape(1, *shape)


def image_tensor(name: str, data: bytes, shape: tuple[int, ...], pixel_scale: float) -> Any:
    """An image as a batch of one ``[channels, size, size]`` input: greyscale or RGB, resized, pixels in [0, pixel_scale].

    Raises:
        InvalidArgumentError: not a readable image, or a model that takes neither 1 nor 3 channels.
    """
    import numpy as np
    import torch
    from PIL import Image

    channels, height, width = shape
    if channels not in (1, 3):
        raise InvalidArgumentError(f"the model takes {channels} channels, not a greyscale or RGB image; enter its numbers instead")
    try:
        with Image.open(io.BytesIO(data)) as image:
            resized = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise InvalidArgumentError(f"{name} is not a readable PNG or JPEG image ({error})") from None
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255 * pixel_scale)
    return (pixels.unsqueeze(0) if channels == 1 else pixels.permute(2, 0, 1)).unsqueeze(0)


@st.cache_resource(max_entries=4, show_spinner="Loading the model...")
def loaded_model(ref: str, digest: str) -> Any:
    """The model ``ref`` on the CPU, loaded once per version (``digest`` tells apart versions of different hubs)."""
    return the_hub().load(ref, device="cpu")


@st.cache_resource(max_entries=4, show_spinner="Loading the tokenizer...")
def loaded_tokenizer(ref: str, digest: str) -> Any:
    """The tokenizer published with ``ref``, loaded once per version."""
    return the_hub().load_tokenizer(ref)


def text_inputs(ref: str, digest: str, model: Any, text: str) -> dict[str, Any]:
    """``text`` tokenized for ``model``, cut to the positions it has."""
    if not text.strip():
        raise InvalidArgumentError("enter some text to classify")
    limit = getattr(model.config, "max_position_embeddings", 512)
    return dict(loaded_tokenizer(ref, digest)(text, truncation=True, max_length=limit, return_tensors="pt"))


def top_predictions(model: Any, inputs: Any) -> Any:
    """The model's ``TOP_K`` likeliest classes for one input: class, label and probability, likeliest first."""
    import pandas as pd
    import torch

    with torch.inference_mode():
        output = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    probabilities = torch.softmax(getattr(output, "logits", output).float()[0], dim=-1)
    names = getattr(model, "id2label", None) or getattr(getattr(model, "config", None), "id2label", None) or {}
    values, classes = probabilities.topk(min(TOP_K, len(probabilities)))
    return pd.DataFrame({"class": classes.tolist(), "label": [str(names.get(c, c)) for c in classes.tolist()],
                         "probability": values.tolist()})


def chosen_ref(hub: Any) -> str | None:
    """``?ref=``, or the model and version picked here (latest first); None when the hub is empty."""
    ref = query_param("ref")
    if ref is not None:
        return ref
    names = [m.name for m in hub.list_models(limit=None)]
    if not names:
        st.info("The hub holds no model yet. Publish one on the [Publish](/publish) page.")
        return None
    name_column, version_column = st.columns(2)
    name = name_column.selectbox("Model", names)
    versions = list(reversed(hub.list_versions(name)))
    labels = {v.ref: " ".join([f"v{v.version}", *(f"@{a}" for a in v.aliases)]) for v in versions}
    labels[versions[0].ref] += " (latest)"
    return version_column.selectbox("Version", list(labels), format_func=labels.get)


st.title("Try it")
st.caption("Run a classifier on one input: numbers for mlp models, an image or its pixel numbers for convnets, "
           "text for transformers sequence classifiers. The page shows the five likeliest classes.")
hub = the_hub()
ref = chosen_ref(hub)
if ref is None:
    st.stop()
try:
    version = hub.info(ref)
except HubError as error:
    show_error(error)
    st.stop()
kind = input_kind(version)
st.markdown(f"Model: {model_link(version.ref)}")
if kind is None:
    st.info(f"{version.ref} is not a classifier this page can run (architecture {md(version.architecture or 'none')}, "
            f"task {md(version.task or 'none')}). Try it supports mlp and convnet classifiers (with id2label or task "
            f"'classification') and transformers models with {SEQUENCE_CLASSIFIER}.")
    st.markdown(f"Back to {model_link(version.ref, 'the model page')}.")
    st.stop()

if kind == "text":
    choice = "Text"
else:
    shape = input_shape(version)
    choices = [IMAGE, NUMBERS, CSV_FILE] if kind == "image" else [NUMBERS, CSV_FILE]
    choice = st.radio("Input", choices, horizontal=True, key=f"input:{version.ref}")

with st.form(f"try:{version.ref}"):
    if choice == "Text":
        text = st.text_area("Text", placeholder="A sentence to classify")
    elif choice == NUMBERS:
        numbers = st.text_area(f"{math.prod(shape)} numbers, separated by commas or spaces",
                               value=", ".join(["0"] * math.prod(shape)),
                               help="For a convnet: the pixels channel by channel, each row by row.")
    elif choice == CSV_FILE:
        table = st.file_uploader("CSV file", type=[".csv"],
                                 help="The first row of numbers is the input; a header row is fine, "
                                      "and a 'label' column is left out.")
    else:
        picture = st.file_uploader("Image", type=list(IMAGE_TYPES))
        pixel_scale = st.number_input(
            "Pixel scale", min_value=0.0, value=1.0, step=1.0,
            help="Pixels are scaled to [0, 1] and multiplied by this. Use the scale the model was trained on: "
                 "16 for models trained on the scikit-learn digits CSV (pixels 0..16).")
    submitted = st.form_submit_button("Predict", type="primary")

if submitted:
    try:
        model = loaded_model(version.ref, version.digest)
        if choice == "Text":
            inputs = text_inputs(version.ref, version.digest, model, text)
        elif choice == NUMBERS:
            inputs = numbers_tensor(text_numbers(numbers), shape)
        elif choice == CSV_FILE:
            if table is None:
                raise InvalidArgumentError("upload a CSV file first")
            inputs = numbers_tensor(csv_numbers(table.name, table.getvalue()), shape)
        else:
            if picture is None:
                raise InvalidArgumentError("upload a PNG or JPEG image first")
            inputs = image_tensor(picture.name, picture.getvalue(), shape, pixel_scale)
        predictions = top_predictions(model, inputs)
    except HubError as error:
        show_error(error)
        st.stop()
    best = predictions.iloc[0]
    st.subheader(f"{md(best['label'])} ({best['probability']:.1%})")
    st.dataframe(predictions, hide_index=True, column_config={
        "probability": st.column_config.ProgressColumn("probability", format="percent", min_value=0.0, max_value=1.0)})
    st.bar_chart(predictions, x="label", y="probability", sort=False, horizontal=True)
