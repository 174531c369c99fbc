"""The networks of the built-in families: :class:`MLP` and :class:`ConvNet`, and their builders.

Imported when a built-in family first builds a module (it needs torch); the families
themselves are in :mod:`hub.families.builtin`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "ConvNet", "mlp", "convnet", "ACTIVATIONS"]

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "sigmoid": nn.Sigmoid}


def _with_labels(module: nn.Module, id2label: dict | None, label2id: dict | None) -> nn.Module:
    """Attach class names (as transformers models carry them): ``module.id2label[3] == "three"``."""
    if id2label is not None:
        module.id2label = {int(k): str(v) for k, v in id2label.items()}
        module.label2id = {str(k): int(v) for k, v in (label2id or {v: k for k, v in module.id2label.items()}).items()}
    return module


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is unknown; use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """Linear layers with an activation and optional dropout between them.

    With ``standardize``, inputs are first scaled by a stored per-feature mean and
    standard deviation (buffers saved with the weights; set them with
    :meth:`fit_standardization` from the training data), so tabular data whose
    columns differ in scale can go in raw.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, activation: str, dropout: float,
                 standardize: bool = False) -> None:
        super().__init__()
        if standardize:
            self.register_buffer("input_mean", torch.zeros(in_features))
            self.register_buffer("input_std", torch.ones(in_features))
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Linear(width_in, width_out), _activation(activation)]
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], out_features))
        self.layers = nn.Sequential(*layers)

    @torch.no_grad()
    def fit_standardization(self, inputs: torch.Tensor) -> None:
        """Store the mean and standard deviation of each input feature of ``inputs`` (rows x features)."""
        rows = inputs.flatten(1).float()
        self.input_mean.copy_(rows.mean(0))
        self.input_std.copy_(rows.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if hasattr(self, "input_mean"):
            x = (x - self.input_mean) / self.input_std
        return self.layers(x)


class ConvNet(nn.Module):
    """A small image CNN: conv-batchnorm-relu-maxpool blocks, then a linear classifier."""

    def __init__(self, in_channels: int, image_size: int, channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        size, width = image_size, in_channels
        for out in channels:
            blocks += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            if size >= 2:
                blocks.append(nn.MaxPool2d(2))
                size //= 2
            width = out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def mlp(in_features: int, hidden: Sequence[int] = (64,), out_features: int = 1, activation: str = "relu", dropout: float = 0.0,
        standardize: bool = False, id2label: dict | None = None, label2id: dict | None = None) -> nn.Module:
    """A multilayer perceptron. ``hidden`` lists the widths of the hidden layers; ``standardize`` scales
    inputs by a stored mean and deviation; ``id2label`` (``{"0": "cat", ...}``) names a classifier's outputs."""
    if in_features < 1 or out_features < 1 or any(h < 1 for h in hidden):
        raise ValueError("in_features, out_features and every hidden width must be positive")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return _with_labels(MLP(in_features, list(hidden), out_features, activation, dropout, standardize), id2label, label2id)


def convnet(in_channels: int = 1, image_size: int = 8, channels: Sequence[int] = (16, 32), num_classes: int = 10,
            id2label: dict | None = None, label2id: dict | None = None) -> nn.Module:
    """A small CNN for ``in_channels`` x ``image_size`` x ``image_size`` images; ``id2label`` names its classes."""
    if in_channels < 1 or image_size < 1 or num_classes < 1 or not channels or any(c < 1 for c in channels):
        raise ValueError("in_channels, image_size, num_classes and every channel count must be positive")
    return _with_labels(ConvNet(in_channels, image_size, list(channels), num_classes), id2label, label2id)
