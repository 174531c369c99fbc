"""Parameters are counted one way on every path (issue 13, item 8): the module's parameters,
tied ones once; buffers (BatchNorm's running statistics, ``num_batches_tracked``, the mlp's
standardization) are not parameters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import hub
from conftest import ROOT
from hub.publishing import count_parameters

pytestmark = pytest.mark.one_backend

DIGITS_CNN = {"in_channels": 1, "image_size": 8, "channels": [16, 32], "num_classes": 10}


def test_the_digits_convnet_counts_the_same_on_every_path(tmp_path):
    torch.manual_seed(0)
    model = hub.create("convnet", **DIGITS_CNN)
    expected = sum(p.numel() for p in model.parameters())
    assert expected == 6186 == count_parameters(model)

    as_module = hub.publish(model, "acme/digits-cnn")
    as_state_dict = hub.publish(model.state_dict(), "acme/digits-cnn", architecture="convnet", config=DIGITS_CNN)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    cli = subprocess.run([sys.executable, "-m", "hub", "publish", str(tmp_path / "model.safetensors"), "acme/digits-cnn",
                          "--architecture", "convnet", "--config", json.dumps(DIGITS_CNN)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert cli.returncode == 0, cli.stderr
    weights_only = hub.publish(tmp_path / "model.safetensors", "acme/digits-cnn-weights")  # no architecture to ask
    counts = [v.num_parameters for v in hub.list_versions("acme/digits-cnn")]
    assert counts == [as_module.num_parameters, as_state_dict.num_parameters, expected] == [expected] * 3
    assert weights_only.num_parameters == expected  # BatchNorm's statistics are known by name

    # other buffers, and tied weights
    model = hub.create("mlp", in_features=4, hidden=[8], out_features=3, standardize=True)
    version = hub.publish(model, "acme/standardized")
    assert version.num_parameters == 4 * 8 + 8 + 8 * 3 + 3  # not input_mean, input_std
    tied = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False), torch.nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert count_parameters(tied) == 16 == hub.publish(tied, "acme/tied").num_parameters
    assert hub.publish(dict(tied.state_dict()), "acme/tied-weights").num_parameters == 16  # stored once, counted once
