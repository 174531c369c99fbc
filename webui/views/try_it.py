"""Try it: run a published model on an input of your own.

What it offers comes from what the version's family knows of it (:meth:`hub.Hub.model_spec`): a
classifier of numbers (one field per named feature) or of images (an upload mapped into
the model's pixel range and colours), a transformers sequence classifier (text), or a
sentence-embedding model (sentences in, their cosine similarities out). The helpers
below only turn what the browser sends into a tensor and the model's outputs into a table.
With an inference server's address (``hub serve-models``; the field's default is
``HUB_INFERENCE_URL``), the same input goes to its ``/v2/models/{name}/versions/{version}/infer``
instead, and its answer is shown the same way.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from typing import Any

import streamlit as st

from hub import inference
from hub.errors import HubError, InvalidArgumentError
from webui import tryout
from webui.auth import Visitor, page_visitor, session_token
from webui.common import md, model_link, query_param, show_error, the_hub
from webui.settings import inference_url

TOP_K = 5
NUMBERS, CSV_FILE, IMAGE = "Numbers", "CSV file", "Image"
IMAGE_TYPES = (".png", ".jpg", ".jpeg")
MAX_NAMED_FIELDS = 64  # a model with more named features gets one text box, not a field each


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


def csv_numbers(name: str, data: bytes, feature_names: tuple[str, ...] = ()) -> list[float]:
    """The numbers in a CSV's first row; a non-numeric first row is a header, and its ``label`` column is dropped.
    A header that names every one of ``feature_names`` gives those columns, in the model's order.

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
    wanted = [feature.strip().lower() for feature in feature_names]
    if wanted and set(wanted) <= set(header):
        cells = dict(zip(header, rows[1]))
        return parse_numbers([cells[feature] for feature in wanted], f"{name}, row 1")
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


def named_numbers(values: list[float | None], names: tuple[str, ...]) -> list[float]:
    """The values of the named fields, all of them filled in.

    Raises:
        InvalidArgumentError: a field is empty.
    """
    missing = [name for name, value in zip(names, values) if value is None]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise InvalidArgumentError(f"enter a value for {shown}")
    return [float(value) for value in values]


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
    import torch

    with torch.inference_mode():
        output = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    names = getattr(model, "id2label", None) or getattr(getattr(model, "config", None), "id2label", None) or {}
    return top_of(inference.probabilities(output)[0], names)


def top_of(probabilities: Any, names: Any) -> Any:
    """The ``TOP_K`` likeliest of one input's class ``probabilities`` (torch or numpy), named by ``names``
    (index -> label), as a table: class, label and probability, likeliest first."""
    import pandas as pd
    import torch

    values, classes = torch.as_tensor(probabilities).float().topk(min(TOP_K, len(probabilities)))
    return pd.DataFrame({"class": classes.tolist(), "label": [str(names.get(c, c)) for c in classes.tolist()],
                         "probability": values.tolist()})


def served_predictions(url: str, version: Any, labels: Any, inputs: Any) -> Any:
    """The top classes an inference server at ``url`` gives ``inputs`` (a tensor, or a text) for ``version``.

    Raises:
        HubError: the server could not be reached or refused the input (its message).
    """
    from hub.serving.client import infer

    sent = {"text": [inputs]} if isinstance(inputs, str) else {"input": inputs}
    outputs = infer(url, version.name, sent, version=version.version, token=visitor_token())
    if "probabilities" not in outputs:
        raise InvalidArgumentError(f"the inference server answered {', '.join(outputs)}, not class probabilities")
    return top_of(outputs["probabilities"][0], dict(enumerate(inference.label_names(labels, outputs["probabilities"].shape[-1]))))


def served_embeddings(url: str, version: Any, sentences: list[str]) -> Any:
    """The sentence embeddings an inference server at ``url`` gives for ``version``, as a tensor.

    Raises:
        HubError: the server could not be reached or refused the input (its message).
    """
    import torch

    from hub.serving.client import infer

    tryout.check_sentences(sentences)
    outputs = infer(url, version.name, {"text": sentences}, version=version.version, token=visitor_token())
    if "embedding" not in outputs:
        raise InvalidArgumentError(f"the inference server answered {', '.join(outputs)}, not sentence embeddings")
    return torch.from_numpy(outputs["embedding"].astype("float32"))


def visitor_token() -> str | None:
    """The token this browser session signed in with (sent on to the inference server), if any."""
    return session_token()


def chosen_ref(visitor: Visitor) -> str | None:
    """``?ref=``, or the model and version picked here (latest first); None when the hub is empty."""
    hub = visitor.hub
    ref = query_param("ref")
    if ref is not None:
        return ref
    names = [m.name for m in hub.list_models(limit=None, readable=visitor.readable())]
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
st.caption("Run a model on an input of your own: a classifier of numbers, images or text shows its five likeliest "
           "classes; a sentence-embedding model shows how alike your sentences are.")
visitor = page_visitor()
hub = visitor.hub
ref = chosen_ref(visitor)
if ref is None:
    st.stop()
try:
    visitor.check_read(ref)
    version = hub.info(ref)
    model_spec = hub.model_spec(version)
except HubError as error:
    show_error(error)
    st.stop()
spec = model_spec.input
mode = tryout.try_mode(version, model_spec)
st.markdown(f"Model: {model_link(version.ref)}")
if mode is None:
    st.info(f"{version.ref} is not a classifier this page can run (architecture {md(version.architecture or 'none')}, "
            f"task {md(version.task or 'none')}, input {md(spec.kind or 'unknown')}). Try it runs classifiers (with id2label "
            f"or task 'classification') of numbers and images, transformers models with {tryout.SEQUENCE_CLASSIFIER}, "
            "and sentence-embedding models (transformers AutoModel with a tokenizer).")
    st.markdown(f"Back to {model_link(version.ref, 'the model page')}.")
    st.stop()

shape = spec.shape
names = spec.feature_names if mode == tryout.NUMBERS and 0 < len(spec.feature_names) <= MAX_NAMED_FIELDS else ()
if mode in (tryout.TEXT_CLASSIFIER, tryout.EMBEDDING):
    choice = "Text"
else:
    choices = [IMAGE, NUMBERS, CSV_FILE] if mode == tryout.IMAGE else [NUMBERS, CSV_FILE]
    choice = st.radio("Input", choices, horizontal=True, key=f"input:{version.ref}")

server = st.text_input("Inference server URL", value=inference_url(), key=f"server:{version.ref}",
                       placeholder="http://127.0.0.1:8080 (empty: run the model here)",
                       help="A `hub serve-models` server serving this model: the input goes to its "
                            f"/v2/models/{version.name}/versions/{version.version}/infer and its answer is shown.").strip()
with st.form(f"try:{version.ref}"):
    if mode == tryout.EMBEDDING:
        text = st.text_area("Sentences, one per line", key=f"sentences:{version.ref}",
                            placeholder="A man is playing a guitar.\nSomeone plays an instrument.\nThe market fell today.",
                            help=f"Two to {tryout.MAX_SENTENCES} sentences: each is embedded, and every pair compared by cosine similarity.")
    elif choice == "Text":
        text = st.text_area("Text", placeholder="A sentence to classify")
    elif choice == NUMBERS and names:
        values = []
        for row in range(0, len(names), 3):  # three fields a row, in the model's order
            for column, i in zip(st.columns(3), range(row, min(row + 3, len(names)))):
                values.append(column.number_input(names[i], value=None, format="%g", key=f"feature:{version.ref}:{i}"))
        if spec.standardizes:
            st.caption("Raw values: the model standardises them itself.")
    elif choice == NUMBERS:
        numbers = st.text_area(f"{math.prod(shape)} numbers, separated by commas or spaces",
                               value=", ".join(["0"] * math.prod(shape)),
                               help="For an image model: the pixels channel by channel, each row by row"
                                    + (f", from {spec.value_range[0]:g} (black) to {spec.value_range[1]:g} (white)." if spec.value_range else "."))
    elif choice == CSV_FILE:
        table = st.file_uploader("CSV file", type=[".csv"],
                                 help="The first row of numbers is the input; a header row is fine (columns named as the "
                                      "model's features are taken in its order), and a 'label' column is left out.")
    else:
        picture = st.file_uploader("Image", type=list(IMAGE_TYPES))
        low, high = spec.value_range or (0.0, 1.0)
        black_column, white_column = st.columns(2)
        black = black_column.number_input("Black pixels become", value=float(low), step=1.0, format="%g", key=f"black:{version.ref}")
        white = white_column.number_input("White pixels become", value=float(high), step=1.0, format="%g", key=f"white:{version.ref}",
                                          help="The pixel range the model was trained on" + (" (as it records)." if spec.recorded
                                               else "; this version records none, so 0 to 1 is assumed."))
        colour_choices = list(tryout.COLOURS) if spec.background is not None else [tryout.AS_IS, tryout.INVERTED]
        colours = st.radio("Colours", colour_choices, horizontal=True, key=f"colours:{version.ref}",
                           help="'Match the model' inverts a drawing whose background is the opposite of the model's "
                                "(dark strokes on white for a model trained on light strokes on black).")
        crop = st.checkbox("Crop to the drawing", value=spec.background is not None, key=f"crop:{version.ref}",
                           help="Cut the picture to the square around its strokes, as digit data sets frame their digits.")
    submitted = st.form_submit_button("Compare" if mode == tryout.EMBEDDING else "Predict", type="primary")

if submitted:
    try:
        model = None if server else loaded_model(version.ref, version.digest)
        if mode == tryout.EMBEDDING:
            sentences = [line.strip() for line in text.splitlines() if line.strip()]
            embeddings = (served_embeddings(server, version, sentences) if server else
                          tryout.sentence_embeddings(model, loaded_tokenizer(version.ref, version.digest), sentences))
        elif choice == "Text" and server:
            if not text.strip():
                raise InvalidArgumentError("enter some text to classify")
            inputs = text
        elif choice == "Text":
            inputs = text_inputs(version.ref, version.digest, model, text)
        elif choice == NUMBERS and names:
            inputs = numbers_tensor(named_numbers(values, names), shape)
        elif choice == NUMBERS:
            inputs = numbers_tensor(text_numbers(numbers), shape)
        elif choice == CSV_FILE:
            if table is None:
                raise InvalidArgumentError("upload a CSV file first")
            inputs = numbers_tensor(csv_numbers(table.name, table.getvalue(), spec.feature_names), shape)
        else:
            if picture is None:
                raise InvalidArgumentError("upload a PNG or JPEG image first")
            if black == white:
                raise InvalidArgumentError("black and white pixels must become different values")
            inputs = tryout.image_tensor(picture.name, picture.getvalue(), shape, (black, white), colours=colours,
                                         background=spec.background, crop=crop)
        if mode != tryout.EMBEDDING:
            predictions = served_predictions(server, version, model_spec.labels, inputs) if server else top_predictions(model, inputs)
    except HubError as error:
        show_error(error)
        st.stop()
    if mode == tryout.EMBEDDING:
        import pandas as pd

        similarity = tryout.cosine_similarities(embeddings)
        shown = [sentence if len(sentence) <= 60 else sentence[:57] + "..." for sentence in sentences]
        pairs = [(float(similarity[i, j]), i, j) for i in range(len(sentences)) for j in range(i + 1, len(sentences))]
        best, i, j = max(pairs)
        st.subheader(f"Most alike: “{md(shown[i])}” and “{md(shown[j])}” ({best:.2f})")
        numbers = [str(n) for n in range(1, len(sentences) + 1)]
        st.dataframe(pd.DataFrame(similarity.tolist(), index=[f"{n}. {text}" for n, text in zip(numbers, shown)], columns=numbers),
                     column_config={n: st.column_config.NumberColumn(format="%.3f") for n in numbers})
        st.caption(f"Cosine similarity of the {embeddings.shape[1]}-dimensional sentence embeddings (the mean of the "
                   "token embeddings): 1 is the same meaning, 0 unrelated.")
        st.stop()
    best = predictions.iloc[0]
    st.subheader(f"{md(best['label'])} ({best['probability']:.1%})")
    st.dataframe(predictions, hide_index=True, column_config={
        "probability": st.column_config.ProgressColumn("probability", format="percent", min_value=0.0, max_value=1.0)})
    st.bar_chart(predictions, x="label", y="probability", sort=False, horizontal=True)
    if choice == IMAGE and inputs.shape[1] in (1, 3):
        low, high = min(black, white), max(black, white)
        from PIL import Image

        seen = ((inputs[0].permute(1, 2, 0) - low) / (high - low) * 255).clamp(0, 255).squeeze(-1).round().byte().numpy()
        scale = max(1, 160 // max(seen.shape[:2]))
        st.image(Image.fromarray(seen).resize((seen.shape[1] * scale, seen.shape[0] * scale), Image.Resampling.NEAREST),
                 caption=f"What the model was given ({inputs.shape[2]} x {inputs.shape[3]}), scaled up")
