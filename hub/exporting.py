"""Exporting a module to ONNX or ``torch.export`` and checking that the export computes what the module does.

:func:`export_module` writes the export into a folder and runs it against the module (onnxruntime
for ONNX, ``torch.export.load`` for pt2) on the family's example inputs at shapes other than the
export's; :func:`load_pt2` opens a ``.pt2`` file only after checking that nothing in it is unpickled.
The service that keeps exports with their versions is :mod:`hub.exports`.

Inputs and outputs are named: a text model's inputs are its tokenizer's (``input_ids``,
``attention_mask``, and ``token_type_ids`` where the model takes them), with dynamic dimensions
``batch`` and ``sequence``; any other model has one input, ``input``, with a dynamic ``batch``.
Outputs are the model's own: the fields of a ``transformers`` output (``last_hidden_state``,
``pooler_output``, ``logits``), ``logits`` for a classifier that returns one tensor, ``output`` for
another model that does, ``output_0``, ``output_1``... for a tuple.
"""

from __future__ import annotations

import inspect
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import ExportError, InvalidArgumentError, UnsafeFormatError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hub.families import ModelSpec

__all__ = ["Exported", "export_module", "load_pt2", "default_tolerance", "EXPORT_SHAPE", "PARITY_SHAPES", "MAIN_FILES",
           "SINGLE_FILE_MAX_BYTES"]

MAIN_FILES = {"onnx": "model.onnx", "pt2": "model.pt2"}
EXPORT_SHAPE = (2, 8)  # batch, sequence (text only) of the example inputs the module is exported with
PARITY_SHAPES = ((1, 5), (3, 13))  # and those the export is run on against the module
SINGLE_FILE_MAX_BYTES = 1_900_000_000  # an ONNX protobuf holds at most 2 GiB: larger weights go to external-data files
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CLASSIFYING = ("classification", "text-classification")


@dataclass(frozen=True)
class Exported:
    """An export written into a folder, and checked.

    Attributes:
        files: its files in the folder, the main one first (then external-data files, if any).
        facts: the :class:`~hub.entities.ExportRecord` fields the export determines: ``inputs``, ``outputs``
            (``{"name", "dtype", "shape"}`` each, dynamic axes named), ``opset``, ``ir_version`` (None for pt2),
            ``exporter``, ``runtime`` and ``parity`` (``{"max_abs_diff", "tolerance", "shapes", "provider",
            "passed", "export_shape"}``).
    """

    files: tuple[Path, ...]
    facts: dict[str, Any]


def default_tolerance(dtype: Any) -> float:
    """The largest max |diff| a parity check accepts by default: 1e-4 for 32- and 64-bit floats, 1e-2 for 16-bit ones."""
    import torch

    return 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4


def _reason(exc: BaseException) -> str:
    """The exporter's own reason, in a few lines: the exception summary of torch.onnx's report (or the
    exception's first line), and the line of the model's code that raised it."""
    text = _ANSI.sub("", str(exc))
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    summary = next((line for line in lines if not line.startswith(("⬆", "-"))), type(exc).__name__)
    named = re.match(r"<class '(?:\w+\.)*(\w+)'>: ", summary)
    summary = summary[named.end():] if named else summary
    summary = f"{named.group(1) if named else type(exc).__name__}: {summary}"
    where = ""
    if "The following call raised this error:" in lines:
        at = lines.index("The following call raised this error:")
        where = " at " + ": ".join(lines[at + 1:at + 3])
    return (summary + where)[:1200]


def _example(spec: ModelSpec, module: nn.Module, batch: int, sequence: int, seed: int) -> dict[str, torch.Tensor]:
    """Named inputs for ``module``: the spec's example inputs (a text model's with padding in its first row,
    and ``token_type_ids`` where its forward takes them)."""
    import torch

    try:
        made = spec.example_inputs(batch, sequence, seed=seed)
    except InvalidArgumentError as exc:
        raise ExportError(f"can't make example inputs to export with: {exc}") from None
    if not isinstance(made, Mapping):
        return {"input": made.to(_dtype_of(module))}
    inputs = dict(made)
    if sequence > 2:
        inputs["attention_mask"][0, -2:] = 0  # a padded row, as a tokenizer makes for a batch of texts
    if "token_type_ids" in inspect.signature(module.forward).parameters and getattr(getattr(module, "config", None), "type_vocab_size", 0):
        inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    return inputs


def _dtype_of(module: nn.Module) -> torch.dtype:
    import torch

    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def _output_names(output: Any, spec: ModelSpec) -> list[str]:
    """The names of a module's outputs (see the module's docstring).

    Raises:
        ExportError: an output is not a tensor.
    """
    import torch

    if isinstance(output, torch.Tensor):
        return ["logits" if spec.labels or (spec.task or "") in _CLASSIFYING else "output"]
    if isinstance(output, Mapping):
        items = [(str(key), value) for key, value in output.items() if value is not None]
    elif isinstance(output, (tuple, list)):
        items = [(f"output_{i}", value) for i, value in enumerate(output)]
    else:
        raise ExportError(f"the model's forward returns a {type(output).__name__}, not tensors: an export computes tensors")
    wrong = [(name, type(value).__name__) for name, value in items if not isinstance(value, torch.Tensor)]
    if wrong or not items:
        raise ExportError(f"the model's forward returns {', '.join(f'{n} = a {t}' for n, t in wrong) or 'no tensors'}: "
                          "an export computes tensors only")
    return [name for name, _ in items]


def _flat(module: nn.Module, input_names: Sequence[str], output_names: Sequence[str], keyword: bool) -> nn.Module:
    """``module`` as tensors in (positional, in ``input_names`` order), a tuple of tensors out (``output_names``)."""
    from torch import nn

    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = module

        def forward(self, *tensors: Any) -> tuple[Any, ...]:
            output = self.model(**dict(zip(input_names, tensors))) if keyword else self.model(*tensors)
            if len(output_names) == 1 and not isinstance(output, (Mapping, tuple, list)):
                return (output,)
            if isinstance(output, Mapping):
                return tuple(output[name] for name in output_names)
            return tuple(output)

    return Flat().eval()


def _dims(inputs: Mapping[str, torch.Tensor], text: bool, *, named: bool) -> tuple[dict[int, Any], ...]:
    """Each input's dynamic axes: named ``Dim``s (the ONNX graph names its axes after them), or ``Dim.DYNAMIC``
    (``torch.export`` then finds the ranges itself, such as a text model's longest sequence)."""
    from torch.export import Dim

    batch, sequence = (Dim("batch"), Dim("sequence")) if named else (Dim.DYNAMIC, Dim.DYNAMIC)
    return tuple({0: batch, 1: sequence} if text else {0: batch} for _ in inputs)


def _described(name: str, tensor: torch.Tensor, named: dict[tuple[int, int], str]) -> dict[str, Any]:
    return {"name": name, "dtype": str(tensor.dtype).removeprefix("torch."),
            "shape": [named.get((axis, size), size) for axis, size in enumerate(tensor.shape)]}


def _dynamic_names(first: Sequence[torch.Tensor], second: Sequence[torch.Tensor], shapes: Sequence[tuple[int, ...]]) -> list[dict[tuple[int, int], str]]:
    """For each tensor, ``{(axis, size at the export's shape): name}`` of the axes that changed with the input's
    batch (``"batch"``) or sequence length (``"sequence"``) between two runs."""
    (batch, sequence), (batch2, sequence2) = shapes
    found = []
    for a, b in zip(first, second):
        names = {}
        for axis, (x, y) in enumerate(zip(a.shape, b.shape)):
            if x != y:
                names[(axis, x)] = "batch" if (x, y) == (batch, batch2) else "sequence" if (x, y) == (sequence, sequence2) else "dynamic"
        found.append(names)
    return found


def _compare(expected: Sequence[torch.Tensor], actual: Sequence[Any], names: Sequence[str]) -> float:
    """The max |diff| over all outputs (inf for a missing output, a wrong shape or a NaN where the module has none)."""
    import torch

    if len(actual) != len(expected):
        return float("inf")
    worst = 0.0
    for name, want, got in zip(names, expected, actual):
        got = torch.as_tensor(got)
        if tuple(got.shape) != tuple(want.shape):
            return float("inf")
        diff = (got.to(torch.float64) - want.detach().to(torch.float64)).abs()
        if diff.isnan().any():
            return float("inf")
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
    return worst


def _onnx_metadata(path: Path) -> tuple[int, int, list[dict[str, Any]], list[dict[str, Any]]]:
    """``(opset, ir_version, inputs, outputs)`` of an ONNX file, read from its graph."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)

    def described(value: Any) -> dict[str, Any]:
        kind = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(kind.elem_type).name
        shape = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in kind.shape.dim]
        return {"name": value.name, "dtype": dtype, "shape": shape}

    return opset, model.ir_version, [described(v) for v in model.graph.input], [described(v) for v in model.graph.output]


def _quietly(call: Any) -> Any:
    """Call ``call()`` without the exporters' progress lines and warnings."""
    import contextlib
    import io
    import logging

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "torch.fx.experimental.symbolic_shapes",
                                                     "torch._dynamo")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return call()
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _session(path: Path, providers: Sequence[Any] | None = None, threads: int | None = None) -> Any:
    """An onnxruntime session over ``path``: ``providers``, or the CUDA provider first where onnxruntime has
    it, then the CPU's; ``threads`` CPU threads for one run (None: onnxruntime's default, one per core)."""
    import onnxruntime

    if providers is None:
        available = onnxruntime.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or available
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=list(providers))


def load_pt2(path: str | Path) -> Any:
    """``torch.export.load`` of a ``.pt2`` file, after checking that loading it unpickles nothing.

    ``torch.export.save`` writes plain tensors as raw bytes and the example inputs with ``torch.save``;
    loading unpickles tensor subclasses, opaque constants and example inputs that
    ``torch.load(weights_only=True)`` refuses. Those are refused here, before ``torch.export.load`` runs.

    Raises:
        UnsafeFormatError: the file is no pt2 archive, or loading it would unpickle something.
    """
    import io
    import json

    import torch

    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(("_weights_config.json", "_constants_config.json")):
                    config = json.loads(archive.read(member)).get("config", {})
                    for fqn, payload in config.items():
                        if payload.get("use_pickle") or not str(payload.get("path_name", "")).startswith(("weight_", "tensor_")):
                            raise UnsafeFormatError(f"{path}: {fqn!r} in {member} is stored pickled; modelhub never unpickles "
                                                    "(export the model again with `hub export REF --format pt2`)")
                elif "/data/sample_inputs/" in member:
                    torch.load(io.BytesIO(archive.read(member)), weights_only=True)
    except (zipfile.BadZipFile, ValueError, AttributeError, OSError) as exc:
        raise UnsafeFormatError(f"{path} is not a pt2 archive torch.export.save wrote: {exc}") from None
    except Exception as exc:  # torch.load(weights_only=True) refused the example inputs
        if isinstance(exc, UnsafeFormatError):
            raise
        raise UnsafeFormatError(f"{path}: its example inputs can't be read without unpickling ({type(exc).__name__}); "
                                "modelhub never unpickles") from None
    return _quietly(lambda: torch.export.load(str(path)))


def export_module(module: nn.Module, spec: ModelSpec, format: str, folder: Path, *, opset: int | None = None,
                  tolerance: float | None = None) -> Exported:
    """Export ``module`` into ``folder`` and check its parity.

    Args:
        module: the model, in eval mode, on the CPU.
        spec: its family's :class:`~hub.families.ModelSpec` (the example inputs).
        format: ``"onnx"`` or ``"pt2"``.
        folder: an empty folder for its files.
        opset: the ONNX opset (default the exporter's).
        tolerance: the largest max |diff| accepted (default :func:`default_tolerance` of its dtype).

    Returns:
        The :class:`Exported` files and what describes them.

    Raises:
        ExportError: the exporter failed (its reason), an output is not a tensor, or the export's
            outputs differ from the module's by more than ``tolerance`` (or in shape).
    """
    import torch

    text = spec.takes_text
    batch, sequence = EXPORT_SHAPE
    inputs = _example(spec, module, batch, sequence, seed=0)
    keyword = text  # a text model's inputs go by name
    with torch.no_grad():
        names = _output_names(module(**inputs) if keyword else module(*inputs.values()), spec)
    flat = _flat(module, list(inputs), names, keyword)
    tolerance = default_tolerance(_dtype_of(module)) if tolerance is None else float(tolerance)
    if not tolerance >= 0:
        raise InvalidArgumentError(f"tolerance must be a number >= 0, got {tolerance}").about("tolerance")
    args = tuple(inputs.values())
    dims = {"tensors": _dims(inputs, text, named=format == "onnx")}  # by the name of Flat.forward's *tensors
    main = folder / MAIN_FILES[format]
    if format == "onnx":
        exported = _to_onnx(flat, args, dims, list(inputs), names, main, opset)
    else:
        exported = _to_pt2(flat, args, dims, main)
    shapes = [shape if text else shape[:1] for shape in PARITY_SHAPES]
    worst, provider = 0.0, "torch.export.load (CPU)"
    outputs_at: list[tuple[torch.Tensor, ...]] = []
    run = _session(main, ["CPUExecutionProvider"]) if format == "onnx" else exported.module()
    for seed, (b, *s) in enumerate(PARITY_SHAPES, start=1):
        example = _example(spec, module, b, s[0] if text else sequence, seed=seed)
        with torch.no_grad():
            expected = flat(*example.values())
            if format == "onnx":
                got = run.run(names, {k: v.numpy() for k, v in example.items()})
                provider = run.get_providers()[0]
            else:
                got = run(*example.values())
        outputs_at.append(expected)
        worst = max(worst, _compare(expected, got, names))
    parity = {"max_abs_diff": worst, "tolerance": tolerance, "shapes": [list(s) for s in shapes], "provider": provider,
              "passed": worst <= tolerance, "export_shape": list(EXPORT_SHAPE if text else EXPORT_SHAPE[:1])}
    if not parity["passed"]:
        raise ExportError(f"the {format} export's outputs differ from the model's: max |diff| {worst:.3g} > tolerance {tolerance:g} "
                          f"on shapes {parity['shapes']} ({provider}); nothing was stored. Pass a larger tolerance if that is "
                          "expected for this model").about("tolerance")
    files = tuple([main, *sorted(p for p in folder.iterdir() if p != main)])
    version = torch.__version__
    if format == "onnx":
        import onnxruntime

        opset_used, ir_version, described_in, described_out = _onnx_metadata(main)
        return Exported(files, {"inputs": tuple(described_in), "outputs": tuple(described_out), "opset": opset_used,
                                "ir_version": ir_version, "exporter": f"torch.onnx dynamo {version}",
                                "runtime": f"onnxruntime {onnxruntime.__version__}", "parity": parity})
    with torch.no_grad():
        at_export = flat(*args)
    input_axes = _dynamic_names(list(args), list(_example(spec, module, *PARITY_SHAPES[1], seed=2).values()),
                                [EXPORT_SHAPE, PARITY_SHAPES[1]])
    output_axes = _dynamic_names(at_export, outputs_at[1], [EXPORT_SHAPE, PARITY_SHAPES[1]])
    described_in = [_described(n, t, a) for n, t, a in zip(inputs, args, input_axes)]
    described_out = [_described(n, t, a) for n, t, a in zip(names, at_export, output_axes)]
    return Exported(files, {"inputs": tuple(described_in), "outputs": tuple(described_out), "opset": None, "ir_version": None,
                            "exporter": f"torch.export {version}", "runtime": f"torch {version}", "parity": parity})


def _to_onnx(flat: nn.Module, args: tuple[Any, ...], dims: dict[str, Any], input_names: list[str], output_names: list[str],
             path: Path, opset: int | None) -> None:
    import torch

    size = sum(t.numel() * t.element_size() for t in [*flat.parameters(), *flat.buffers()])
    external = size > SINGLE_FILE_MAX_BYTES
    try:
        program = _quietly(lambda: torch.onnx.export(flat, args, dynamic_shapes=dims, input_names=input_names,
                                                     output_names=output_names, opset_version=opset, external_data=external,
                                                     dynamo=True, verbose=False))
        program.save(str(path), external_data=external)
    except ExportError:
        raise
    except Exception as exc:  # the exporter's errors are of many kinds; its reason is what the caller needs
        raise ExportError(f"torch.onnx could not export the model: {_reason(exc)}; nothing was stored") from None
    return None


def _to_pt2(flat: nn.Module, args: tuple[Any, ...], dims: dict[str, Any], path: Path) -> Any:
    import torch

    try:
        program = _quietly(lambda: torch.export.export(flat, args, dynamic_shapes=dims))
        torch.export.save(program, str(path))
    except Exception as exc:  # the exporter's errors are of many kinds; its reason is what the caller needs
        raise ExportError(f"torch.export could not export the model: {_reason(exc)}; nothing was stored") from None
    return load_pt2(path)
