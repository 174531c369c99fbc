"""Validation splits: seeded, and stratified by class for classification data."""

from __future__ import annotations

import torch

from finetune.data.common import Dataset
from hub.errors import ConfigError, TooFewRowsError

__all__ = ["split_dataset"]


def split_dataset(
    dataset: Dataset, *, fraction: float = 0.2, seed: int = 0, stratify: bool = True
) -> tuple[Dataset, Dataset]:
    """Hold out a validation set, the same way every time for the same seed.

    Classification data is stratified: each class gives about ``fraction`` of its rows
    (within one row), and every class with two or more rows gives at least one.

    Args:
        dataset: the rows to split.
        fraction: the share of rows for validation, between 0 and 1.
        seed: seeds the ``torch.Generator`` that picks the rows.
        stratify: split each class separately (classification only); False: one random draw.

    Returns:
        ``(train, validation)``, each with its rows in the original order.

    Raises:
        ConfigError: fraction is not between 0 and 1.
        TooFewRowsError: the training or validation part would be empty.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"fraction must be between 0 and 1 (exclusive), not {fraction!r}; 0.2 holds out a fifth of the rows")
    generator = torch.Generator().manual_seed(seed)
    if stratify and dataset.label_names is not None:
        train, validation = _stratified_positions(dataset.targets, fraction, generator)
    else:
        train, validation = _random_positions(len(dataset), fraction, generator)
    if len(train) == 0 or len(validation) == 0:
        raise TooFewRowsError(
            f"can't split {len(dataset)} rows into training and validation rows with fraction={fraction} "
            "(one part would be empty, and a class needs two rows to give one to validation); "
            "add rows or pass a separate validation file", file=dataset.source)
    return dataset.subset(train.sort().values), dataset.subset(validation.sort().values)


def _random_positions(count: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(count, generator=generator)
    held_out = _held_out(count, fraction)
    return order[held_out:], order[:held_out]


def _stratified_positions(targets: torch.Tensor, fraction: float, generator: torch.Generator
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    train, validation = [torch.empty(0, dtype=torch.long)], [torch.empty(0, dtype=torch.long)]
    for label in torch.unique(targets):
        rows = (targets == label).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)]
        held_out = _held_out(len(rows), fraction)
        train.append(rows[held_out:])
        validation.append(rows[:held_out])
    return torch.cat(train), torch.cat(validation)


def _held_out(count: int, fraction: float) -> int:
    """Rows to hold out of ``count``: about ``fraction``, at least one, never all (none of fewer than two)."""
    if count < 2:
        return 0
    return min(max(round(fraction * count), 1), count - 1)
