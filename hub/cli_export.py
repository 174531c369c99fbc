"""The ``hub`` CLI's ``export`` and ``exports`` commands: a version to ONNX or pt2, its parity checked (:mod:`hub.exports`)."""

from __future__ import annotations

import argparse
from typing import Any

from hub.formatting import format_table, human_size, print_json

__all__ = ["add_commands", "parity_text"]


def parity_text(parity: dict[str, Any]) -> str:
    """An export's parity for people: ``max|diff| 2.1e-07 <= 1e-04 on batch 1, 3 with CPUExecutionProvider``
    (``batch x sequence 1x5, 3x13`` for a text model)."""
    shapes = [list(s) for s in parity.get("shapes", [])]
    text = any(len(s) > 1 for s in shapes)
    on = ("batch x sequence " if text else "batch ") + ", ".join("x".join(map(str, s)) for s in shapes)
    sign = "<=" if parity.get("passed") else ">"
    return (f"max|diff| {parity.get('max_abs_diff', float('nan')):.2g} {sign} {parity.get('tolerance', float('nan')):.0e} "
            f"on {on} with {parity.get('provider')}")


def _hub() -> Any:
    from hub import default_hub

    return default_hub()


def cmd_export(args: argparse.Namespace) -> int:
    record = _hub().export(args.ref, format=args.format, opset=args.opset, tolerance=args.tolerance)
    if args.json:
        print_json(record.to_dict())
        return 0
    opset = f" (opset {record.opset})" if record.opset is not None else ""
    print(f"exported {record.source_ref} to {record.format}{opset}: parity {parity_text(record.parity)}; "
          f"{record.files[0].path}, {human_size(sum(f.size for f in record.files))}")
    return 0


def cmd_exports(args: argparse.Namespace) -> int:
    records = _hub().list_exports(args.ref)
    if args.json:
        print_json([r.to_dict() for r in records])
        return 0
    rows = [[r.format, str(r.opset or "-"), parity_text(r.parity), human_size(sum(f.size for f in r.files)), r.exporter,
             r.created_at.strftime("%Y-%m-%d %H:%M")] for r in records]
    print(format_table(rows, ["FORMAT", "OPSET", "PARITY", "SIZE", "EXPORTER", "CREATED"]) if rows else
          f"no exports of {args.ref}; make one with `hub export {args.ref} --format onnx`")
    return 0


def add_commands(commands: Any, command: Any) -> None:
    """Add this module's subcommands: ``commands`` is the subparsers object, ``command`` is
    ``functools.partial(hub.cli.add_command, commands)``."""
    sub = command("export", cmd_export, "Export a version to ONNX or pt2 (torch.export), check its outputs against the "
                  "model's on other input shapes, and keep it with the version (docs/EXPORT.md).", needs="hub")
    sub.add_argument("ref", help="name, name:VERSION or name@ALIAS")
    sub.add_argument("--format", choices=["onnx", "pt2"], default="onnx", help="onnx (default) or pt2")
    sub.add_argument("--opset", type=int, help="ONNX opset (default the exporter's: 20)")
    sub.add_argument("--tolerance", type=float, help="largest max |diff| accepted (default 1e-4; 1e-2 for 16-bit weights)")
    sub.add_argument("--json", action="store_true", help="print the export record as JSON")

    sub = command("exports", cmd_exports, "List a version's exports with their parity.", needs="hub")
    sub.add_argument("ref", help="name, name:VERSION or name@ALIAS")
    sub.add_argument("--json", action="store_true")
