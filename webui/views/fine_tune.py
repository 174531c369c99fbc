"""Fine-tune: pick a base model, upload data, map its columns, set hyperparameters, then validate or submit a job.

Every check is the ``finetune`` package's own: "Validate" calls ``finetune.validate``
and "Submit" calls ``finetune.submit`` (or a hub server's job route), which checks everything again
and queues nothing when something is wrong. This page only reads the first rows for a preview.
Submitting needs a visitor who may read the base and write the output (:mod:`webui.jobs`).
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any

import streamlit as st

import hub
from finetune import SCHEDULERS, TASKS, FinetuneConfig
from finetune.config import default_learning_rates
from finetune.data import IMAGE_SUFFIXES, MAX_CSV_FIELD_CHARS, check_csv_header
from hub.errors import DataError, HubError
from hub.limits import loads
from webui import jobs
from webui.auth import Visitor, page_visitor
from webui.common import extract_zip, job_link, md, query_param, show_error, store_upload

UPLOAD_TYPES = (".csv", ".jsonl", ".ndjson", ".parquet", ".zip")
PREVIEW_ROWS = 20
DEFAULTS = FinetuneConfig()


def stored_data(uploaded: Any) -> Path:
    """Put an uploaded file (anything with ``name``, ``size`` and ``getvalue()``) on disk; unpack a zip.

    Returns:
        The table file, or the image folder a zip unpacked to.

    Raises:
        InvalidArgumentError: too big, empty or of a type the field does not take. UnsafeFormatError: a bad zip.
    """
    path = store_upload(uploaded, allowed=UPLOAD_TYPES)
    return extract_zip(path) if path.suffix.lower() == ".zip" else path


def data_field(label: str, key: str, help_text: str) -> tuple[Path | None, Any]:
    """An upload field and a place under it for its errors; returns the stored path (or None) and that place."""
    uploaded = st.file_uploader(label, type=[suffix.lstrip(".") for suffix in UPLOAD_TYPES], key=key, help=help_text)
    messages = st.container()
    if uploaded is None:
        return None, messages
    try:
        return stored_data(uploaded), messages
    except HubError as exc:
        with messages:
            show_error(exc)
        return None, messages


def preview_table(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and first rows of a CSV, JSONL or Parquet file, read for display only.

    Under the limits training data has (``finetune.data``): a header of too many columns is
    refused before it is parsed, JSON nested too deep before it is decoded.

    Raises:
        ValueError (a DataError, a JSONDecodeError), OSError, csv.Error: the file can't be previewed.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        check_csv_header(path)
        csv.field_size_limit(MAX_CSV_FIELD_CHARS)
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            rows = list(itertools.islice(reader, PREVIEW_ROWS))
            return list(reader.fieldnames or []), rows
    if suffix in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8") as file:
            rows = [loads(line) for line in itertools.islice((line for line in file if line.strip()), PREVIEW_ROWS)]
        return list(dict.fromkeys(key for row in rows if isinstance(row, dict) for key in row)), rows
    import pyarrow.parquet

    parquet = pyarrow.parquet.ParquetFile(path)
    batch = next(parquet.iter_batches(batch_size=PREVIEW_ROWS), None)
    return list(parquet.schema_arrow.names), batch.to_pylist() if batch is not None else []


def class_folders(folder: Path) -> list[dict[str, Any]]:
    """An image folder's classes and how many images each holds."""
    return [{"class": child.name, "images": sum(1 for f in child.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)}
            for child in sorted(folder.iterdir()) if child.is_dir() and not child.name.startswith(".")]


def show_preview(path: Path) -> list[str]:
    """Show the data's first rows (or classes); return its columns (none for an image folder or an unreadable file)."""
    if path.is_dir():
        st.dataframe(class_folders(path), hide_index=True)
        return []
    try:
        columns, rows = preview_table(path)
    except ImportError:
        st.warning("Previewing Parquet needs pyarrow (pip install 'modelhub[parquet]'); Validate still checks the file.")
        return []
    except (OSError, ValueError, csv.Error) as exc:
        st.warning(f"Can't preview {md(path.name)} ({md(exc)}); Validate says what is wrong with it.")
        return []
    st.caption(f"The first {len(rows)} rows of {md(path.name)}")
    st.dataframe(rows, hide_index=True)
    return columns


def base_choice(visitor: Visitor, models: list[str]) -> hub.ModelVersion:
    """The base model and version pickers, preselected from ``?ref=``; returns the chosen version."""
    wanted = None
    if ref := query_param("ref"):
        try:
            visitor.check_read(ref)
            wanted = visitor.hub.info(ref)
        except HubError as exc:
            show_error(exc)
    name_column, version_column = st.columns([3, 1])
    name = name_column.selectbox("Base model", models, index=models.index(wanted.name) if wanted and wanted.name in models else 0,
                                 key="base")
    versions = list(reversed(visitor.hub.list_versions(name)))
    numbers = [v.version for v in versions]
    chosen = version_column.selectbox(
        "Version", numbers, index=numbers.index(wanted.version) if wanted and wanted.name == name else 0,
        format_func=lambda number: f"{number} (latest)" if number == numbers[0] else str(number), key=f"version:{name}",
    )
    return versions[numbers.index(chosen)]


def column_choice(columns: list[str], *, texts: bool) -> dict[str, Any]:
    """Which columns are the label, the text and the features: settings for ``FinetuneConfig``."""
    if not columns:
        return {}
    st.subheader("Columns")
    label_column, other_column = st.columns(2)
    label = label_column.selectbox("Label column", columns, index=columns.index("label") if "label" in columns else None, key="label",
                                   placeholder="Choose the column that holds the labels")
    # Unchosen, the config's default ("label") stands, and validation names the closest column.
    chosen = {"label_column": label} if label is not None else {}
    if texts:
        text = other_column.selectbox("Text column", columns, index=columns.index("text") if "text" in columns else 0, key="text")
        return {**chosen, "text_column": text}
    others = [c for c in columns if c != label]
    features = other_column.multiselect("Feature columns", others, default=others, key=f"features:{label}")
    # All of them is what the config's default (None) means; say it that way so the job record stays short.
    return {**chosen, "feature_columns": None if features == others else features}


def hyperparameters(*, validation_file: bool) -> dict[str, Any]:
    """The training settings, with ``FinetuneConfig``'s defaults: settings for ``FinetuneConfig``."""
    left, middle, right = st.columns(3)
    epochs = left.number_input("Epochs", min_value=1, value=DEFAULTS.epochs, key="epochs")
    batch_size = middle.number_input("Batch size", min_value=1, value=DEFAULTS.batch_size, key="batch_size")
    learning_rate = right.text_input("Learning rate", key="learning_rate", placeholder="default: by what is trained",
                                     help="Blank picks the default for what is trained: " + "; ".join(
                                         f"{rate:g} for {why.removeprefix('the default for ')}" for rate, why in dict.fromkeys(default_learning_rates().values()))
                                     + ". The job's events say which one it used.")
    scheduler = left.selectbox("Scheduler", SCHEDULERS, index=SCHEDULERS.index(DEFAULTS.scheduler), key="scheduler")
    warmup_ratio = middle.number_input("Warmup ratio", min_value=0.0, max_value=0.99, value=DEFAULTS.warmup_ratio, step=0.05,
                                       key="warmup_ratio")
    train = right.radio("Train", ["all", "head"], index=0 if DEFAULTS.train == "all" else 1, horizontal=True, key="train",
                        help="all: every weight; head: only the output layer.")
    seed = left.number_input("Seed", min_value=0, value=DEFAULTS.seed, key="seed")
    validation_fraction = middle.number_input(
        "Validation fraction", min_value=0.01, max_value=0.99, value=DEFAULTS.validation_fraction, step=0.05,
        key="validation_fraction", disabled=validation_file, help="Share of rows held out when no validation file is given.",
    )
    lora_rank = right.number_input("LoRA rank", min_value=0, value=DEFAULTS.lora_rank or 0, key="lora_rank",
                                   help="0 is off. Adapters go on every linear and convolution layer but the head, which is trained in full.")
    return {"epochs": int(epochs), "batch_size": int(batch_size), "learning_rate": learning_rate.strip() or None,
            "scheduler": scheduler, "warmup_ratio": float(warmup_ratio), "train": train, "seed": int(seed),
            "validation_fraction": float(validation_fraction), "lora_rank": int(lora_rank) or None}


def class_list(names: list[str]) -> str:
    """``"5 classes (5, 6, 7, 8, 9)"``: how many, and which (the first 20; a run of more than five
    whole numbers as ``0..9``), escaped for Markdown."""
    whole = all(name.isdigit() for name in names) and [int(n) for n in names] == list(range(int(names[0]), int(names[0]) + len(names)))
    shown = f"{names[0]}..{names[-1]}" if whole and len(names) > 5 else ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
    return md(f"{len(names)} class{'es' if len(names) != 1 else ''} ({shown})")


def show_summary(summary: dict[str, Any]) -> None:
    """What ``finetune.validate`` found: the exact base, the rows on each side, and the classes
    of the data, of the base and of the model the job makes (numbers as labels are class indices,
    so data labelled 5..9 makes a model of classes 0..9)."""
    classes = [f"data: {class_list(summary['data_classes'])}"] if summary["data_classes"] else []
    if summary["base_classes"]:
        classes.append(f"base: {class_list(summary['base_classes'])}")
    if summary["label_names"] and summary["label_names"] != summary["data_classes"]:
        classes.append(f"fine-tuned model: {class_list(summary['label_names'])}")
    st.success(f"{summary['base']} ({summary['task']}): {summary['train_rows']:,} training rows, "
               f"{summary['validation_rows']:,} validation rows" + "".join(f"; {part}" for part in classes) + ".", icon=":material/check:")


visitor = page_visitor()
st.title("Fine-tune")
models = [summary.name for summary in visitor.hub.list_models(limit=None, readable=visitor.readable())]
if not models:
    st.info("There is no model to fine-tune yet. Publish one on the Publish page, or with `hub publish`.")
    st.stop()

st.subheader("Base model")
base = base_choice(visitor, models)
task = st.selectbox("Task", TASKS, index=TASKS.index(base.task) if base.task in TASKS else 0, key="task")

st.subheader("Data")
data_path, data_messages = data_field("Training data", "data",
                                      "CSV, JSONL or Parquet with a header, or a zip of an image folder with one folder per class.")
validation_path, validation_messages = data_field("Validation data (optional)", "validation_data",
                                                  "The same format; without it, a share of the training rows is held out.")
settings: dict[str, Any] = {}
if data_path is not None:
    columns = show_preview(data_path)
    settings.update(column_choice(columns, texts=task == "text-classification" or visitor.hub.model_spec(base).takes_text))

st.subheader("Hyperparameters")
settings.update(hyperparameters(validation_file=validation_path is not None))

st.subheader("Output")
owner = visitor.user if visitor.signed_in or visitor.principal is None else "me"
output = st.text_input("Output model", value=f"{owner}/{base.name.rsplit('/', 1)[-1]}-ft",
                       help="The fine-tuned model is published as this model's next version.")

validate_column, submit_column, _ = st.columns([1, 1, 6])
validate_clicked = validate_column.button("Validate", key="validate", disabled=data_path is None)
submit_clicked = submit_column.button("Submit", key="submit", type="primary", disabled=data_path is None)
outcome = st.container()
if data_path is None:
    st.caption("Upload training data to validate or submit.")
elif validate_clicked or submit_clicked:
    job_inputs = {"task": task, "config": settings, "validation_data": validation_path}
    try:
        if submit_clicked:
            job = jobs.submit(visitor, base.ref, data_path, output=output, **job_inputs)
            outcome.success(f"Queued job {job_link(job.id)}: fine-tune {job.base} into {job.output}.", icon=":material/schedule:")
        else:
            with outcome:
                show_summary(jobs.validate(visitor, base.ref, data_path, **job_inputs))
    except DataError as exc:
        in_validation = validation_path is not None and exc.file is not None and Path(exc.file).is_relative_to(validation_path)
        with validation_messages if in_validation else data_messages:
            show_error(exc)
    except HubError as exc:
        with outcome:
            show_error(exc)
