"""Exports of a version to ONNX (``torch.onnx``'s dynamo exporter) and ``torch.export`` (``.pt2``).

An export is checked before it is kept: it is run (onnxruntime for ONNX, ``torch.export.load``
for pt2) on the family's example inputs at shapes other than the export's, against the PyTorch
model, within a tolerance. Only then are its files written as blobs of the store and its record
(:class:`hub.entities.ExportRecord`) as a content-addressed JSON blob, pointed at by the store key
``refs/<model>/exports/<version>/<format>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.entities import ExportRecord

if TYPE_CHECKING:
    from hub.api import Hub

__all__ = ["Exports", "FORMATS"]

FORMATS = ("onnx", "pt2")


class Exports:
    """A hub's exports.

    Args:
        hub: the :class:`Hub` whose versions it exports.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def export(self, ref: str, format: str = "onnx", *, opset: int | None = None, tolerance: float | None = None) -> ExportRecord:
        """Export a version, check its parity with the PyTorch model, and keep it with the version.

        Raises:
            ExportError: the exporter's own reason, or a parity beyond the tolerance; nothing is stored.
        """
        raise NotImplementedError

    def list_exports(self, ref: str) -> list[ExportRecord]:
        """The exports of a version."""
        raise NotImplementedError

    def export_record(self, ref: str, format: str) -> ExportRecord:
        """The export of a version in ``format``.

        Raises:
            ModelNotFoundError: there is none (run ``hub export REF --format F``).
        """
        raise NotImplementedError

    def load_export(self, ref: str, format: str = "onnx", *, providers: list[Any] | None = None) -> Any:
        """An ``onnxruntime.InferenceSession`` over a version's ONNX export (``pt2``: the ``torch.export.ExportedProgram``)."""
        raise NotImplementedError

    def download_export(self, ref: str, format: str, local_dir: str | os.PathLike[str] | None = None) -> Path:
        """Copy an export's files into a folder; returns the folder."""
        raise NotImplementedError
