"""The architecture registry: every registered architecture builds, runs and round-trips."""

import pytest
import torch
from torch import nn

import hub
from hub import ArchitectureError, ArchitectureNotFoundError, InvalidArgumentError
from hub.architectures import ArchitectureSpec

pytestmark = pytest.mark.one_backend  # nothing here depends on the registry backend

TINY_BERT = {"model_type": "bert", "vocab_size": 32, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 16, "max_position_embeddings": 16}
# name -> (a tiny config, an input it takes)
TINY_CONFIGS = {
    "mlp": ({"in_features": 6, "hidden": [5, 4], "out_features": 3, "activation": "gelu", "dropout": 0.1}, lambda: torch.randn(2, 6)),
    "convnet": ({"in_channels": 1, "image_size": 8, "channels": [4, 8], "num_classes": 10}, lambda: torch.randn(2, 1, 8, 8)),
    "transformers": ({"auto_class": "AutoModel", "hf_config": TINY_BERT}, lambda: torch.tensor([[1, 5, 7, 2]])),
}


def output(model, x) -> torch.Tensor:
    with torch.no_grad():
        result = model(x)
    return result if isinstance(result, torch.Tensor) else result.last_hidden_state


def needs(name: str) -> None:
    if name == "transformers":
        pytest.importorskip("transformers")


def test_builtins_are_listed():
    assert {"mlp", "convnet"} <= set(hub.list_architectures())


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_every_builtin_builds_runs_and_loads_back(name):
    needs(name)
    config, make_input = TINY_CONFIGS[name]
    torch.manual_seed(0)
    model = hub.create(name, **config).eval()
    x = make_input()
    hub.publish(model, f"arch/{name}")
    loaded = hub.load(f"arch/{name}", device="cpu")
    assert torch.equal(output(model, x), output(loaded, x))


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_building_on_meta_allocates_nothing(name):
    needs(name)
    with torch.device("meta"):
        model = hub.create(name, **TINY_CONFIGS[name][0])
    assert all(p.is_meta for p in model.parameters())


def test_every_registered_architecture_has_a_tiny_config():
    assert set(hub.list_architectures()) <= set(TINY_CONFIGS) | {"test-custom"}


def test_create_records_the_full_config():
    model = hub.create("mlp", in_features=4, out_features=2)
    assert model.hub_architecture == ArchitectureSpec(
        "mlp", {"in_features": 4, "hidden": [64], "out_features": 2, "activation": "relu", "dropout": 0.0, "standardize": False, "id2label": None, "label2id": None}
    )


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(ArchitectureNotFoundError, match="did you mean mlp") as error:
        hub.create("mpl", in_features=2)
    assert isinstance(error.value, LookupError)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"in_features": 4, "hiden": [3]}, "unexpected keyword argument 'hiden'"),
        ({}, "missing a required argument: 'in_features'"),
        ({"in_features": 4, "activation": "swish"}, "activation 'swish' is unknown"),
        ({"in_features": 0}, "must be positive"),
        ({"in_features": 4, "hidden": {1, 2}}, "JSON values"),
    ],
)
def test_bad_config_names_the_problem(config, fragment):
    with pytest.raises(ArchitectureError, match=fragment):
        hub.create("mlp", **config)


def test_register_custom_architecture_and_refuse_duplicates():
    @hub.register_architecture("test-custom", overwrite=True)
    def custom(width: int = 3) -> nn.Module:
        return nn.Linear(width, 1)

    try:
        model = hub.create("test-custom", width=5)
        assert model.weight.shape == (1, 5)
        with pytest.raises(InvalidArgumentError, match="already registered"):
            hub.register_architecture("test-custom")(lambda: nn.Linear(1, 1))
    finally:
        from hub import architectures

        architectures._builders.pop("test-custom", None)


def test_entry_point_architectures_are_loaded(monkeypatch):
    from importlib import metadata

    from hub import architectures

    class FakeEntryPoint:
        name = "plugin-net"

        def load(self):
            return lambda size=2: nn.Linear(size, size)

    monkeypatch.setattr(metadata, "entry_points", lambda group: [FakeEntryPoint()] if group == architectures.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(architectures, "_loaded", False)
    try:
        assert "plugin-net" in hub.list_architectures()
        assert hub.create("plugin-net", size=3).weight.shape == (3, 3)
    finally:
        architectures._builders.pop("plugin-net", None)


class WithComputedBuffer(nn.Module):
    """A module whose forward uses a buffer it computes itself (like BERT's position_ids)."""

    def __init__(self, length: int = 5) -> None:
        super().__init__()
        self.register_buffer("positions", torch.arange(length) * 2, persistent=False)
        self.scale = nn.Parameter(torch.ones(length))

    def forward(self, x):
        return x * self.scale + self.positions


@pytest.fixture
def computed_buffer_architecture():
    hub.register_architecture("computed-buffer", overwrite=True)(WithComputedBuffer)
    yield "computed-buffer"
    from hub import architectures

    architectures._builders.pop("computed-buffer", None)


def test_create_empty_puts_parameters_on_meta_and_computes_buffers(computed_buffer_architecture):
    from hub.architectures import create_empty

    model = create_empty(computed_buffer_architecture, length=4)
    assert model.scale.is_meta
    assert torch.equal(model.positions, torch.tensor([0, 2, 4, 6]))


def test_create_empty_leaves_other_threads_alone(computed_buffer_architecture):
    import threading

    from hub.families import base as architectures

    built = {}
    architectures._install_empty_parameters_hook()
    architectures._building_empty.active = True  # this thread is "inside" create_empty
    try:
        thread = threading.Thread(target=lambda: built.update(model=nn.Linear(2, 2)))
        thread.start()
        thread.join()
    finally:
        architectures._building_empty.active = False
    assert not built["model"].weight.is_meta


def test_computed_buffers_are_real_after_load_and_old_checkpoints_still_load(computed_buffer_architecture):
    torch.manual_seed(0)
    model = hub.create(computed_buffer_architecture, length=5)
    with torch.no_grad():
        model.scale.mul_(3)
    hub.publish(model, "acme/computed")
    loaded = hub.load("acme/computed", device="cpu")
    x = torch.randn(5)
    assert torch.equal(loaded(x), model(x))
    # An older checkpoint that saved the computed buffer too is accepted; the module's own value wins.
    old_style = {"scale": model.scale.detach().clone(), "positions": torch.zeros(5, dtype=torch.int64)}
    hub.publish(old_style, "acme/computed-old", architecture=computed_buffer_architecture, config={"length": 5})
    assert torch.equal(hub.load("acme/computed-old", device="cpu")(x), model(x))


def test_strict_false_fills_missing_parameters_with_a_fresh_init():
    import dataclasses

    from hub import loader

    config = {"in_features": 4, "hidden": [8], "out_features": 3}
    weights = hub.create("mlp", **config).state_dict()
    del weights["layers.2.bias"]
    partial = hub.publish(weights, "acme/partial")  # weights only: no architecture to check them against
    version = dataclasses.replace(partial, architecture="mlp", config=config)
    with pytest.raises(hub.WeightsMismatchError, match="layers.2.bias"):
        loader.load_module(hub.default_hub().blobs, version, device="cpu")
    loaded = loader.load_module(hub.default_hub().blobs, version, device="cpu", strict=False)
    assert not any(p.is_meta for p in loaded.parameters())
    assert torch.equal(loaded.layers[0].weight, weights["layers.0.weight"])
