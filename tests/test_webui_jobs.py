"""The web UI's fine-tuning pages, driven by Streamlit's AppTest on real data (scikit-learn's digits):
the Fine-tune form queues exactly the job it shows, bad data is refused on the page, the Jobs
table lists jobs, and the Job page follows one to its end and cancels one."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

import finetune
import hub
from conftest import ROOT, registry_dump
from finetune.config import FinetuneConfig
from hub.errors import DataError
from webui.common import md

pytestmark = pytest.mark.one_backend  # the Jobs pages' rendering; the job queue is tested on both (test_finetune, test_workers)

sklearn = pytest.importorskip("sklearn.datasets")
PIXELS = [f"pixel_{i}" for i in range(64)]
ROWS = 400


def page(name: str, **query: str) -> AppTest:
    """A page of the web UI, run once with ``query`` as its query parameters."""
    app = AppTest.from_file(str(ROOT / "webui" / "views" / f"{name}.py"), default_timeout=60)
    app.query_params.update(query)
    return app.run()


def labelled(widgets, label: str):
    return next(widget for widget in widgets if widget.label == label)


def markdown_of(app: AppTest) -> str:
    return "\n".join(element.value for element in [*app.markdown, *app.success, *app.error, *app.info])


def chart_rows(chart) -> list[dict]:
    """The rows a chart plots (a ``st.line_chart``'s several series come melted, each row naming its series)."""
    import pyarrow

    data = chart.proto.datasets[0].data if chart.proto.datasets else chart.proto.data
    return pyarrow.ipc.open_stream(data.data).read_all().to_pylist()


def write_digits(path: Path, header: list[str], *, spoil_row: int | None = None) -> Path:
    """The first ``ROWS`` of scikit-learn's digits as CSV; ``spoil_row`` gets a NaN pixel."""
    digits = sklearn.load_digits()
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for number, (pixels, label) in enumerate(zip(digits.data[:ROWS], digits.target[:ROWS]), start=1):
            row = [int(value) for value in pixels] + [int(label)]
            if number == spoil_row:
                row[5] = "nan"
            writer.writerow(row)
    return path


@pytest.fixture
def digits(tmp_path) -> Path:
    return write_digits(tmp_path / "digits.csv", [*PIXELS, "label"])


@pytest.fixture(autouse=True)
def base() -> hub.ModelVersion:
    torch.manual_seed(0)
    return hub.publish(hub.create("convnet", in_channels=1, image_size=8, num_classes=10), "acme/digits-cnn")


def test_the_fine_tune_form_validates_and_queues_a_job_with_exactly_its_settings(digits):
    app = page("fine_tune", ref="acme/digits-cnn")
    assert app.selectbox(key="base").value == "acme/digits-cnn" and app.selectbox(key="version:acme/digits-cnn").value == 1
    app.file_uploader(key="data").set_value(("digits.csv", digits.read_bytes(), "text/csv")).run()
    assert len(app.dataframe[0].value) == 20 and app.selectbox(key="label").value == "label"
    assert app.multiselect(key="features:label").value == PIXELS

    app.number_input(key="epochs").set_value(2)
    app.number_input(key="batch_size").set_value(16)
    app.text_input(key="learning_rate").set_value("0.003")
    labelled(app.text_input, "Output model").set_value("me/digits-ft")
    app.button(key="validate").click().run()
    assert not app.exception and not app.error
    assert "320 training rows, 80 validation rows; data: 10 classes (0..9); base: 10 classes (0..9)." in app.success[0].value
    assert finetune.list_jobs() == []

    app.button(key="submit").click().run()
    assert not app.exception and not app.error
    [job] = finetune.list_jobs()
    assert job.status == "queued" and job.base == "acme/digits-cnn:1" and job.output == "me/digits-ft"
    assert job.config == FinetuneConfig(epochs=2, batch_size=16, learning_rate=0.003).to_dict()
    assert f"/job?id={job.id}" in app.success[0].value


def test_validation_names_the_classes_of_the_data_of_the_base_and_of_the_fine_tuned_model():
    """The demo's case: a convnet of digits 0-4, fine-tuned on the sample's digits 5-9 (labels
    are class indices, so the fine-tuned model has classes 0..9)."""
    torch.manual_seed(0)
    hub.publish(hub.create("convnet", num_classes=5, id2label={str(i): str(i) for i in range(5)}), "acme/digits-0to4")
    data = ROOT / "samples" / "data" / "digits-5to9.csv"
    app = page("fine_tune", ref="acme/digits-0to4")
    app.file_uploader(key="data").set_value(("digits-5to9.csv", data.read_bytes(), "text/csv")).run()
    app.button(key="validate").click().run()
    assert not app.exception and not app.error
    assert ("; data: 5 classes (5, 6, 7, 8, 9); base: 5 classes (0, 1, 2, 3, 4); fine-tuned model: 10 classes (0..9)."
            in app.success[0].value)
    summary = finetune.validate("acme/digits-0to4", data)
    assert summary["data_classes"] == ["5", "6", "7", "8", "9"] and summary["base_classes"] == ["0", "1", "2", "3", "4"]
    assert summary["label_names"] == [str(i) for i in range(10)]


def test_a_zip_of_class_folders_is_unpacked_previewed_by_class_and_validated():
    digits = sklearn.load_digits()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for number, (pixels, label) in enumerate(zip(digits.images[:ROWS], digits.target[:ROWS])):
            image = io.BytesIO()
            Image.fromarray((pixels * 16).clip(0, 255).astype("uint8"), mode="L").save(image, format="PNG")
            zipped.writestr(f"digits/{label}/{number}.png", image.getvalue())
    app = page("fine_tune", ref="acme/digits-cnn")
    app.file_uploader(key="data").set_value(("digits.zip", archive.getvalue(), "application/zip")).run()
    classes = app.dataframe[0].value
    assert list(classes["class"]) == [str(label) for label in range(10)] and classes["images"].sum() == ROWS
    assert "label" not in [widget.key for widget in app.selectbox]  # an image folder has no columns to map

    app.button(key="validate").click().run()
    assert not app.exception and not app.error
    assert "320 training rows, 80 validation rows; data: 10 classes (0..9); base: 10 classes (0..9)." in app.success[0].value


@pytest.mark.parametrize("problem", ["misspelled label column", "NaN pixel"])
def test_bad_data_shows_the_data_error_on_the_page_and_queues_nothing(problem, tmp_path, hub_home):
    header = [*PIXELS, "lable"] if problem == "misspelled label column" else [*PIXELS, "label"]
    bad = write_digits(tmp_path / "bad.csv", header, spoil_row=None if problem == "misspelled label column" else 7)
    app = page("fine_tune", ref="acme/digits-cnn:1")
    app.file_uploader(key="data").set_value(("bad.csv", bad.read_bytes(), "text/csv")).run()
    app.button(key="submit").click().run()

    [stored] = hub_home.glob("uploads/*/bad.csv")
    with pytest.raises(DataError) as expected:
        finetune.validate("acme/digits-cnn:1", stored)
    assert [error.value for error in app.error] == [md(str(expected.value))]  # as raised, escaped for Markdown
    assert ("'lable'" if problem == "misspelled label column" else "row 7") in str(expected.value)
    assert not app.success and finetune.list_jobs() == []
    assert registry_dump()["finetune_jobs"] == [] and registry_dump()["finetune_job_events"] == []


def test_the_jobs_page_lists_a_submitted_job_with_its_status(digits):
    job = finetune.submit("acme/digits-cnn", digits, output="me/digits-ft", config={"epochs": 1})
    app = page("jobs")
    assert not app.exception
    table = markdown_of(app)
    assert f"[{job.id}](/job?id={job.id})" in table and ":gray-badge[queued]" in table and "me/digits-ft" in table

    app.selectbox(key="status").set_value("succeeded").run()
    assert job.id not in markdown_of(app) and "No fine-tuning job" in app.info[0].value


def test_the_job_page_of_a_queued_job_cancels_it(digits):
    job = finetune.submit("acme/digits-cnn", digits, output="me/digits-ft", config={"epochs": 1})
    app = page("job", id=job.id)
    assert not app.exception and ":gray-badge[queued]" in markdown_of(app)
    assert app.progress[0].value == 0

    app.button(key="cancel").click().run()
    assert finetune.get_job(job.id).status == "cancelled"
    assert "Cancelled" in app.success[0].value and ":orange-badge[cancelled]" in markdown_of(app)


def test_the_job_page_of_a_finished_job_shows_its_curves_events_and_published_version(digits):
    job = finetune.submit("acme/digits-cnn", digits, output="me/digits-ft", config={"epochs": 1})
    assert finetune.work(once=True) == 1
    done = finetune.get_job(job.id)
    assert done.status == "succeeded" and done.result == "me/digits-ft:1"

    app = page("job", id=job.id)
    assert not app.exception and not app.error
    text = markdown_of(app)
    assert ":green-badge[succeeded]" in text and "[me/digits-ft:1](/model?ref=me%2Fdigits-ft%3A1)" in text
    assert app.progress[0].value == 100 and app.progress[0].text == f"step {done.total_steps} of {done.total_steps}"
    loss_chart, eval_chart = app.get("vega_lite_chart")
    losses = chart_rows(loss_chart)
    assert [row["step"] for row in losses if row["series"] == "training loss"] == list(range(1, done.total_steps + 1))
    assert [row["step"] for row in losses if row["series"] == "validation loss"] == [done.total_steps]
    events = app.dataframe[0].value
    assert any("published me/digits-ft:1" in message for message in events["message"])
    assert 'hub.load("me/digits-ft:1")' in app.code[0].value
    assert not app.button  # no Cancel for a finished job


def test_the_evaluation_chart_shows_accuracy_and_macro_f1_apart_on_a_0_to_1_axis_and_loss_on_its_own(digits):
    import json

    job = finetune.submit("acme/digits-cnn", digits, output="me/digits-ft", config={"epochs": 2})
    assert finetune.work(once=True) == 1
    app = page("job", id=job.id)
    assert not app.exception
    loss_chart, eval_chart = app.get("vega_lite_chart")
    assert {row["series"] for row in chart_rows(loss_chart)} == {"training loss", "validation loss"}
    scores = chart_rows(eval_chart)
    assert {row["series"] for row in scores} == {"accuracy", "macro_f1"}  # the loss is not on the [0, 1] axis
    evaluations = finetune.job_metrics(job.id, split="eval")
    assert sorted((row["step"], row["series"], row["value"]) for row in scores) == sorted(
        (m.step, name, m.values[name]) for m in evaluations for name in ("accuracy", "macro_f1"))
    spec = json.loads(eval_chart.proto.spec)
    encoding = spec["encoding"]
    assert encoding["y"]["scale"]["domain"] == [0, 1] and "legend" in encoding["color"]
    assert len(set(map(str, encoding["color"]["scale"]["range"]))) == 2  # a colour each
    assert len(set(map(str, encoding["strokeDash"]["scale"]["range"]))) == 2  # and a dash pattern: one line can't hide the other
    [points] = [layer for layer in spec["layer"] if layer["mark"]["type"] == "point"]
    assert points["mark"]["filled"] is False and len(set(points["encoding"]["shape"]["scale"]["range"])) == 2
    assert all(layer["mark"]["type"] in ("line", "point") for layer in spec["layer"])  # no area fills
    assert "domain" not in json.loads(loss_chart.proto.spec)["encoding"]["y"]["scale"]


def test_the_job_page_without_an_id_offers_the_recent_jobs_and_names_an_unknown_one(digits):
    job = finetune.submit("acme/digits-cnn", digits, output="me/digits-ft", config={"epochs": 1})
    app = page("job")
    assert app.selectbox(key="job").options == [f"{job.id} · queued · me/digits-ft"]
    assert "[acme/digits-cnn:1](/model?ref=acme%2Fdigits-cnn%3A1)" in markdown_of(app)

    unknown = page("job", id="ftjob-nope")
    assert not unknown.exception and "no fine-tuning job 'ftjob-nope'" in unknown.error[0].value


def test_gc_removes_old_uploads_but_not_those_a_waiting_job_reads(digits, tmp_path, hub_home):
    app = page("fine_tune", ref="acme/digits-cnn")
    app.file_uploader(key="data").set_value(("digits.csv", digits.read_bytes(), "text/csv")).run()
    labelled(app.text_input, "Output model").set_value("me/digits-ft")
    app.button(key="submit").click().run()
    [job] = finetune.list_jobs()
    spare = write_digits(tmp_path / "spare.csv", [*PIXELS, "label"])
    app.file_uploader(key="data").set_value(("spare.csv", spare.read_bytes() + b"\n", "text/csv")).run()  # uploaded, never submitted
    [read_by_job] = hub_home.glob("uploads/*/digits.csv")
    [unused] = hub_home.glob("uploads/*/spare.csv")
    assert hub_home / job.data["train"] == read_by_job  # recorded relative to the home: the hub can move

    assert hub.gc().removed == ()  # both are younger than the default hour
    report = hub.gc(min_age_seconds=0, dry_run=True)
    assert report.removed == (str(unused.parent),) and report.freed_bytes == unused.stat().st_size and unused.exists()
    assert hub.gc(min_age_seconds=0).removed == (str(unused.parent),)
    assert not unused.parent.exists() and read_by_job.exists()

    finetune.cancel(job.id)  # a finished job reads nothing more: its data record keeps the sha256
    assert hub.gc(min_age_seconds=0).removed == (str(read_by_job.parent),)
    assert list((hub_home / "uploads").iterdir()) == [] and hub.verify().ok


LINK = "[click me](https://evil.example/{})"


def test_text_from_the_data_and_the_user_is_escaped_on_the_fine_tune_and_job_pages(digits, tmp_path, monkeypatch):
    """A class label and a cell holding Markdown link syntax, and a user name holding one, show as
    typed (in the summary, in the error, on the job page): no link but the UI's own."""
    from conftest import live_links

    rows = list(csv.reader(digits.open()))
    for row in rows[1:]:
        row[-1] = LINK.format("label") if int(row[-1]) % 2 else "even"
    labelled_csv = tmp_path / "labelled.csv"
    spoiled_csv = tmp_path / "spoiled.csv"
    with open(labelled_csv, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    rows[3][5] = LINK.format("cell")
    with open(spoiled_csv, "w", newline="") as f:
        csv.writer(f).writerows(rows)

    app = page("fine_tune", ref="acme/digits-cnn")
    app.file_uploader(key="data").set_value(("labelled.csv", labelled_csv.read_bytes(), "text/csv")).run()
    app.button(key="validate").click().run()
    assert not app.exception and not app.error and live_links(app) == []
    assert r"data: 2 classes (\[click me\](https\://evil.example/label), even); base: 10 classes (0..9)." in app.success[0].value

    app.file_uploader(key="data").set_value(("spoiled.csv", spoiled_csv.read_bytes(), "text/csv")).run()
    app.button(key="validate").click().run()
    assert not app.exception and live_links(app) == []
    assert r"'\[click me\](https\://evil.example/cell)' is not a number" in app.error[0].value

    monkeypatch.setenv("HUB_USER", LINK.format("user"))
    job = finetune.submit("acme/digits-cnn", labelled_csv, output="me/digits-ft", config={"epochs": 1})
    job_page = page("job", id=job.id)
    assert not job_page.exception and live_links(job_page) == []
    assert r"by \[click me\](https\://evil.example/user)" in markdown_of(job_page)


def test_the_preview_refuses_a_ten_million_column_csv_before_parsing_it():
    import time

    app = page("fine_tune", ref="acme/digits-cnn")
    started = time.perf_counter()
    app.file_uploader(key="data").set_value(("wide.csv", b"c," * 10_000_000 + b"label\n", "text/csv")).run()
    assert time.perf_counter() - started < 20  # the page run, upload and all; parsing the header took a minute and 2 GB
    assert not app.exception
    assert "Can't preview wide.csv" in app.warning[0].value and "more than the 100,000 a table may have" in app.warning[0].value
    assert "label" not in [widget.key for widget in app.selectbox]  # no column pickers for ten million columns


def test_the_preview_refuses_jsonl_nested_too_deep_without_a_traceback():
    app = page("fine_tune", ref="acme/digits-cnn")
    deep = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b', "label": 0}\n'
    app.file_uploader(key="data").set_value(("deep.jsonl", deep, "application/json")).run()
    assert not app.exception and "nests arrays or objects more than 100 deep" in app.warning[0].value
    app.button(key="validate").click().run()
    assert not app.exception and "deep.jsonl, row 1: nests arrays or objects more than 100 deep" in app.error[0].value
