"""The Open Inference Protocol v2 (KServe, Triton) in JSON: requests' tensors in, answers' tensors out.

A request is ``{"id"?, "inputs": [{"name", "shape", "datatype", "data", "parameters"?}], "outputs"?:
[{"name"}], "parameters"?}``; ``data`` is the tensor's elements in row-major order, flat or nested.
Answers are ``{"model_name", "model_version", "id"?, "outputs": [{"name", "datatype", "shape", "data"}]}``
and errors ``{"error": "message"}`` (:func:`error_body`). Every malformed request is an
:class:`hub.errors.InvalidArgumentError` (400) saying what was wrong; a body too large one with
``http_status`` 413.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hub.errors import InvalidArgumentError

__all__ = ["DATATYPES", "InferRequest", "parse_request", "decode_tensor", "encode_tensor", "error_body", "too_large"]

# v2 datatypes this server reads and writes, with their numpy dtype names (BYTES: strings)
DATATYPES = {"FP32": "float32", "FP64": "float64", "INT64": "int64", "INT32": "int32", "BYTES": "object"}
MAX_DIMENSIONS = 8


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request.

    Attributes:
        id: the request's ``id`` (echoed in the answer), or None.
        inputs: each input's name -> ``(datatype, numpy array)`` (BYTES: an object array of ``str``).
        outputs: the output names asked for, or None for all.
        parameters: the request's ``parameters`` object (unused by the built-in runtimes).
    """

    id: str | None
    inputs: dict[str, tuple[str, Any]]
    outputs: tuple[str, ...] | None
    parameters: dict[str, Any]


def error_body(message: str) -> dict[str, str]:
    """The v2 error body."""
    return {"error": message}


def too_large(size: int, limit: int) -> InvalidArgumentError:
    """The error for a request body over ``limit`` bytes (answered 413)."""
    error = InvalidArgumentError(f"the request body is {'more than ' if size > limit else ''}{size:,} bytes; "
                                 f"this server takes at most {limit:,} (hub serve-models --max-body-mb)")
    error.http_status = 413  # type: ignore[attr-defined]
    return error


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_DIMENSIONS or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value):
        raise InvalidArgumentError(f"{where}: 'shape' must be a list of at most {MAX_DIMENSIONS} whole numbers >= 0, "
                                   f"got {str(value)[:80]}")
    return tuple(value)


def decode_tensor(item: Any, where: str) -> tuple[str, str, Any]:
    """One input tensor of a request as ``(name, datatype, numpy array of its shape)``.

    Raises:
        InvalidArgumentError: not an object with ``name``, ``shape``, ``datatype`` and ``data``; a
            datatype this server does not read; elements that are not of the datatype; or as many
            elements as the shape does not hold.
    """
    import numpy as np

    if not isinstance(item, dict):
        raise InvalidArgumentError(f"{where} must be an object with name, shape, datatype and data")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"{where}: 'name' must be a non-empty string")
    where = f"input {name!r}"
    shape = _shape(item.get("shape"), where)
    datatype = item.get("datatype")
    if datatype not in DATATYPES:
        raise InvalidArgumentError(f"{where}: datatype {str(datatype)[:20]!r} is not one this server reads "
                                   f"({', '.join(DATATYPES)})")
    data = item.get("data")
    if not isinstance(data, list):
        raise InvalidArgumentError(f"{where}: 'data' must be a list of the tensor's elements (row-major), "
                                   f"got {type(data).__name__}")
    try:
        array = np.asarray(data, dtype=object if datatype == "BYTES" else None)  # nested lists: numpy flattens them
    except ValueError:  # ragged nesting
        raise InvalidArgumentError(f"{where}: 'data' must be a flat list, or lists nested evenly") from None
    if array.size != math.prod(shape):
        raise InvalidArgumentError(f"{where}: shape {list(shape)} holds {math.prod(shape)} elements but 'data' has {array.size}")
    if datatype == "BYTES":
        flat = array.reshape(-1)
        if not all(isinstance(element, str) for element in flat):
            raise InvalidArgumentError(f"{where}: BYTES data must be strings")
        return name, datatype, flat.reshape(shape)
    integer = datatype.startswith("INT")
    if array.dtype.kind not in ("i" if integer else "if") or array.dtype == object:
        kind = "whole numbers" if integer else "numbers"
        raise InvalidArgumentError(f"{where}: {datatype} data must be {kind}")
    if not integer and not np.isfinite(array).all():
        raise InvalidArgumentError(f"{where}: data must be finite numbers")
    wanted = DATATYPES[datatype]
    if integer and array.size and (array.min() < np.iinfo(wanted).min or array.max() > np.iinfo(wanted).max):
        raise InvalidArgumentError(f"{where}: data don't fit {datatype}")
    return name, datatype, array.astype(wanted, copy=False).reshape(shape)


def parse_request(body: Any) -> InferRequest:
    """A request body (parsed JSON) as an :class:`InferRequest`.

    Raises:
        InvalidArgumentError: not an object with a list of inputs, an input named twice, a bad
            tensor (:func:`decode_tensor`), or ``outputs`` that are not objects with names.
    """
    if not isinstance(body, dict):
        raise InvalidArgumentError("the request must be a JSON object with 'inputs': [{name, shape, datatype, data}, ...]")
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgumentError("the request needs 'inputs': a non-empty list of {name, shape, datatype, data}")
    inputs: dict[str, tuple[str, Any]] = {}
    for position, raw in enumerate(raw_inputs):
        name, datatype, array = decode_tensor(raw, f"inputs[{position}]")
        if name in inputs:
            raise InvalidArgumentError(f"input {name!r} is given twice")
        inputs[name] = (datatype, array)
    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
            raise InvalidArgumentError("'outputs' must be a list of {\"name\": ...} objects")
        outputs = tuple(o["name"] for o in outputs)
    identifier = body.get("id")
    if identifier is not None and not isinstance(identifier, str):
        raise InvalidArgumentError("'id' must be a string")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidArgumentError("'parameters' must be an object")
    return InferRequest(identifier, inputs, outputs, parameters)


def encode_tensor(name: str, array: Any) -> dict[str, Any]:
    """An output tensor in v2 JSON: its datatype from the array's dtype (strings: BYTES), data flat."""
    import numpy as np

    if array.dtype == object or array.dtype.kind in "US":
        datatype = "BYTES"
    else:
        datatype = next((key for key, value in DATATYPES.items() if value == array.dtype.name), None)
        if datatype is None:
            array, datatype = array.astype(np.float32), "FP32"
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}
