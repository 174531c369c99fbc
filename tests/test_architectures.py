"""The architecture registry: every registered architecture builds, runs and round-trips."""

import pytest
import torch
from torch import nn

import hub
from hub import ArchitectureError, ArchitectureNotFoundError, InvalidArgumentError
from hub.architectures import ArchitectureSpec

TINY_CONFIGS = {
    "mlp": ({"in_features": 6, "hidden": [5, 4], "out_features": 3, "activation": "gelu", "dropout": 0.1}, (2, 6)),
    "convnet": ({"in_channels": 1, "image_size": 8, "channels": [4, 8], "num_classes": 10}, (2, 1, 8, 8)),
}


def test_builtins_are_listed():
    assert {"mlp", "convnet"} <= set(hub.list_architectures())


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_every_builtin_builds_runs_and_loads_back(name):
    config, input_shape = TINY_CONFIGS[name]
    torch.manual_seed(0)
    model = hub.create(name, **config).eval()
    x = torch.randn(*input_shape)
    hub.publish(model, f"arch/{name}")
    loaded = hub.load(f"arch/{name}", device="cpu")
    assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_building_on_meta_allocates_nothing(name):
    with torch.device("meta"):
        model = hub.create(name, **TINY_CONFIGS[name][0])
    assert all(p.is_meta for p in model.parameters())


def test_every_registered_architecture_has_a_tiny_config():
    assert set(hub.list_architectures()) <= set(TINY_CONFIGS) | {"test-custom"}


def test_create_records_the_full_config():
    model = hub.create("mlp", in_features=4, out_features=2)
    assert model.hub_architecture == ArchitectureSpec(
        "mlp", {"in_features": 4, "hidden": [64], "out_features": 2, "activation": "relu", "dropout": 0.0}
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
