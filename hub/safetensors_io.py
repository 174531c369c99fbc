"""Safetensors bytes, written deterministically and read back with their header checked.

The writer streams a state dict into the safetensors layout without building
a second copy in memory: an 8-byte little-endian header length, a JSON header
(``__metadata__`` first, then tensors in data order, padded with spaces to a
multiple of 8), then each tensor's raw bytes. Tensors are ordered by dtype
(largest element first, then safetensors' own order among dtypes of one size)
then by name, as the safetensors library does, so every tensor is aligned and
the same tensors always give the bytes ``safetensors.torch.save_file`` gives.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import InvalidSourceError, UnsafeFormatError

if TYPE_CHECKING:
    import torch

__all__ = ["TensorInfo", "SafetensorsHeader", "read_header", "iter_safetensors_bytes", "dedupe_shared", "DTYPE_NAMES",
           "MAX_HEADER_BYTES", "MAX_METADATA_BYTES"]

MAX_HEADER_BYTES = 100_000_000  # as the safetensors library: a header it would refuse is refused here too
# The hub's own limit on a header's __metadata__ (string to string): checkpoints carry a few hundred bytes
# ({"format": "pt"}), training tools a few KB; parsed, a map costs about 20 bytes of memory per byte of it.
MAX_METADATA_BYTES = 1024 * 1024
MAX_ELEMENTS = 2**63 - 1  # torch's limit on a dimension and on a tensor's element count
CHUNK_SIZE = 16 * 1024 * 1024

# safetensors dtype code -> (torch dtype name, bytes per element)
DTYPE_NAMES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1),
    "BOOL": ("bool", 1), "C64": ("complex64", 8),
}
_CODES = {name: code for code, (name, _) in DTYPE_NAMES.items()}
# the order safetensors writes dtypes in: element size, largest first, and among one size its own enum order
_WRITE_ORDER = ["U64", "I64", "F64", "C64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16", "F8_E4M3", "F8_E5M2", "I8", "U8", "BOOL"]
FLOATING = {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a safetensors header describes it."""

    dtype: str  # torch dtype name, e.g. "float32"
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked safetensors header: its tensors, metadata and the file's expected size."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    file_size: int


def _fail(path: Path, what: str) -> UnsafeFormatError:
    return UnsafeFormatError(f"{path} is not a valid safetensors file: {what}; re-save it with safetensors.torch.save_file")


_FIELDS = {name: name for name in ("dtype", "shape", "data_offsets")}  # one copy of each, however many tensors


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names no key twice and holds only text UTF-8 can encode (no lone surrogates)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key[:100]!r} is given twice")
        for text in (key, value) if isinstance(value, str) else (key,):
            text.encode("utf-8")  # a lone surrogate ("\\ud800") raises UnicodeEncodeError, a ValueError
        result[_FIELDS.get(key, key)] = value
    return result


_WHITESPACE = re.compile(r"[ \t\n\r]*")
# an object up to its first "}" outside a string: all of a __metadata__ map, whose values are strings
_FLAT_OBJECT = re.compile(r'\{(?:[^"}]++|"(?:[^"\\]++|\\.)*+")*+\}', re.DOTALL)


def _parse_header(text: str, path: Path) -> dict[str, Any]:
    """The header's JSON object, parsed one top-level entry at a time.

    Each tensor entry is decoded by ``json`` as usual; ``__metadata__`` is measured before it
    is decoded, and one longer than :data:`MAX_METADATA_BYTES` is refused unread. Same result
    and the same errors as ``json.loads(text, object_pairs_hook=_unique_keys)`` otherwise.

    Raises:
        ValueError: not JSON, or a key given twice (a JSONDecodeError or the hook's ValueError).
        RecursionError: nested too deep for ``json``.
        UnsafeFormatError: a ``__metadata__`` over the limit, or not an object.
    """
    decoder = json.JSONDecoder(object_pairs_hook=_unique_keys)
    position = _WHITESPACE.match(text).end()
    if not text.startswith("{", position):
        return decoder.decode(text)  # not an object: json's own error, or a value the caller refuses
    pairs: list[tuple[str, Any]] = []
    position = _WHITESPACE.match(text, position + 1).end()
    closed = text.startswith("}", position)
    while not closed:
        if not text.startswith('"', position):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, position)
        key, position = json.decoder.scanstring(text, position + 1)
        position = _WHITESPACE.match(text, position).end()
        if not text.startswith(":", position):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, position)
        position = _WHITESPACE.match(text, position + 1).end()
        if key == "__metadata__":
            value, position = _metadata(text, position, path)
        else:
            value, position = decoder.raw_decode(text, position)
        pairs.append((key, value))
        position = _WHITESPACE.match(text, position).end()
        if text.startswith(",", position):
            position = _WHITESPACE.match(text, position + 1).end()
        elif text.startswith("}", position):
            closed = True
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
    position = _WHITESPACE.match(text, position + 1).end()
    if position != len(text):
        raise json.JSONDecodeError("Extra data", text, position)
    return _unique_keys(pairs)


def _metadata(text: str, position: int, path: Path) -> tuple[Any, int]:
    """The ``__metadata__`` value at ``position`` and where it ends, measured before it is decoded."""
    if text.startswith("null", position):  # as no metadata, for safetensors too
        return None, position + 4
    if not text.startswith("{", position):
        raise _fail(path, "its __metadata__ is not a map of strings")
    found = _FLAT_OBJECT.match(text, position, position + MAX_METADATA_BYTES)
    if found is None or len(found.group().encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        if found is None and position + MAX_METADATA_BYTES >= len(text):
            raise _fail(path, "its __metadata__ is not a map of strings (it never closes)")
        raise UnsafeFormatError(
            f"{path}: its __metadata__ is over {MAX_METADATA_BYTES:,} bytes, the most the hub reads (MAX_METADATA_BYTES; "
            "checkpoints carry a few KB of it): re-save the file with less metadata, "
            "safetensors.torch.save_file(tensors, path, metadata={...})"
        )
    try:
        return json.loads(found.group(), object_pairs_hook=_unique_keys), found.end()
    except ValueError:  # e.g. {"k": {"x": "y"}}: the first "}" closed a nested object, so this is no map of strings
        raise _fail(path, "its __metadata__ is not a map of strings") from None


def _fits_torch(shape: list[int]) -> bool:
    """Whether every partial product of ``shape`` fits in int64 (torch, and safetensors' own reader, need it)."""
    n = 1
    for d in shape:
        n *= d
        if n > MAX_ELEMENTS or d > MAX_ELEMENTS:
            return False
    return True


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Read and check a safetensors file's header without reading its tensors.

    Checks that the header length fits the file and 100 MB, the header is UTF-8 JSON
    holding an object with no key given twice, its ``__metadata__`` is a map of strings
    of at most :data:`MAX_METADATA_BYTES` (measured before it is decoded), every dtype is
    known, shapes fit torch and agree with the byte ranges, and the ranges tile the data
    section exactly (no gaps, overlaps or bytes past the end). Nothing the header claims
    is allocated before it is checked against the file's size, and reading a header costs
    time and memory in proportion to its size (about 20 bytes of memory per byte of it).

    Raises:
        UnsafeFormatError: anything malformed, or metadata over the hub's limit, saying what.
    """
    path = Path(path)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _fail(path, f"it is {file_size} bytes, shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            raise _fail(path, f"its header claims {length} bytes, more than the {MAX_HEADER_BYTES} allowed")
        if 8 + length > file_size:
            raise _fail(path, f"its header claims {length} bytes but the file has only {file_size - 8} after the length")
        raw = f.read(length)
    try:  # strict UTF-8 and one value per key, as the safetensors library reads it
        header = _parse_header(raw.decode("utf-8"), path)
    except UnsafeFormatError:
        raise
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, a number too long, nesting too deep
        raise _fail(path, f"its header is not JSON ({str(exc)[:200]})") from None
    if not isinstance(header, dict):
        raise _fail(path, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _fail(path, "its __metadata__ is not a map of strings")
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str) or entry["dtype"] not in DTYPE_NAMES:
            raise _fail(path, f"tensor {name!r} has an unknown dtype {entry.get('dtype') if isinstance(entry, dict) else entry!r}")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape) and _fits_torch(shape)):
            raise _fail(path, f"tensor {name!r} has an invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
            raise _fail(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
        dtype_name, itemsize = DTYPE_NAMES[entry["dtype"]]
        info = TensorInfo(dtype_name, tuple(shape), offsets[0], offsets[1])
        if info.end - info.start != info.numel * itemsize:
            raise _fail(path, f"tensor {name!r} has shape {shape} of {entry['dtype']} but {info.end - info.start} bytes")
        tensors[name] = info
    position = 0
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if info.start != position:
            problem = "overlaps another" if info.start < position else "leaves a gap before it"
            raise _fail(path, f"tensor {name!r} {problem} (offset {info.start}, expected {position})")
        position = info.end
    if 8 + length + position != file_size:
        raise _fail(path, f"its tensors end at byte {8 + length + position} but the file has {file_size} bytes")
    return SafetensorsHeader(tensors, dict(metadata), file_size)


def dedupe_shared(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split tensors that share memory (tied weights) into unique ones and aliases.

    Returns:
        ``(unique, tied)``: the tensors to store, and ``{dropped_name: kept_name}``.
    """
    unique: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name in sorted(state):
        tensor = state[name]
        key = (tensor.device, tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() and key in seen:
            tied[name] = seen[key]
        else:
            seen.setdefault(key, name)
            unique[name] = tensor
    return unique, tied


def _as_bytes(name: str, tensor: torch.Tensor) -> memoryview:
    import torch

    if tensor.layout != torch.strided:
        raise InvalidSourceError(f"tensor {name!r} is {tensor.layout}; make it dense with .to_dense() before publishing")
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def iter_safetensors_bytes(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> tuple[Iterator[memoryview | bytes], dict[str, TensorInfo]]:
    """Serialize ``tensors`` as safetensors, lazily.

    Args:
        tensors: distinct tensors by name (see :func:`dedupe_shared` for tied ones).
        metadata: optional string metadata for the header.

    Returns:
        ``(chunks, infos)``: an iterator over the file's bytes, and each tensor's header entry.

    Raises:
        InvalidSourceError: a value is not a tensor, or its dtype can't be stored.
    """
    import torch

    entries = []
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise InvalidSourceError(f"state dict entry {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in _CODES:
            raise InvalidSourceError(f"tensor {name!r} has dtype {dtype}, which safetensors can't store; cast it first")
        entries.append((_WRITE_ORDER.index(_CODES[dtype]), name, tensor, dtype))
    entries.sort(key=lambda e: (e[0], e[1]))

    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    infos: dict[str, TensorInfo] = {}
    offset = 0
    for _, name, tensor, dtype in entries:
        nbytes = tensor.numel() * tensor.element_size()
        infos[name] = TensorInfo(dtype, tuple(tensor.shape), offset, offset + nbytes)
        header[name] = {"dtype": _CODES[dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)

    def chunks() -> Iterator[memoryview | bytes]:
        yield struct.pack("<Q", len(raw)) + raw
        for _, name, tensor, _ in entries:
            data = _as_bytes(name, tensor)
            for start in range(0, data.nbytes, CHUNK_SIZE):
                yield data[start : start + CHUNK_SIZE]

    return chunks(), infos
