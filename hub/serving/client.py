"""A small client of an Open Inference Protocol v2 server (``hub serve-models``, KServe, Triton):
:func:`infer` posts numpy arrays and strings, and gives back the outputs as numpy arrays.

    from hub.serving.client import infer
    outputs = infer("http://127.0.0.1:8080", "acme/digits-cnn", {"input": images})
    outputs["label"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hub.errors import AuthenticationError, InvalidArgumentError, ModelNotFoundError, RemoteError

__all__ = ["infer"]


def _tensor(name: str, value: Any) -> dict[str, Any]:
    import numpy as np

    from hub.serving.protocol import encode_tensor

    if isinstance(value, str) or (isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value)):
        value = np.asarray([value] if isinstance(value, str) else list(value), dtype=object)
    elif hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return encode_tensor(name, np.asarray(value) if not isinstance(value, np.ndarray) else value)


def infer(url: str, name: str, inputs: Mapping[str, Any], *, version: str | int | None = None, token: str | None = None,
          timeout: float = 60.0) -> dict[str, Any]:
    """Run model ``name`` on an inference server.

    Args:
        url: the server (``http://host:8080``).
        name: the model's name (``acme/digits-cnn``).
        inputs: each input's name -> a numpy array or torch tensor (its dtype gives the v2 datatype),
            or strings (BYTES).
        version: a version number or alias (None: the server's default for the name).
        token: sent as ``Authorization: Bearer``.
        timeout: seconds.

    Returns:
        Each output's name -> a numpy array of its shape (BYTES: an object array of strings).

    Raises:
        InvalidArgumentError: the server refused the request (400, 413), with its message.
        AuthenticationError: 401. ModelNotFoundError: 404.
        RemoteError: the server is not reachable or failed (5xx).
    """
    import httpx
    import numpy as np

    path = f"{url.rstrip('/')}/v2/models/{name}" + (f"/versions/{version}" if version is not None else "") + "/infer"
    body = {"inputs": [_tensor(key, value) for key, value in inputs.items()]}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(path, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        raise RemoteError(f"can't reach the inference server at {url} ({type(error).__name__}: {error}); "
                                   "is `hub serve-models` running there?") from None
    if response.status_code != 200:
        try:
            message = str(response.json().get("error"))
        except ValueError:
            message = response.text[:300]
        said = f"the inference server at {url} answered {response.status_code}: {message}"
        kind = {401: AuthenticationError, 404: ModelNotFoundError}.get(response.status_code)
        if kind is None:
            kind = InvalidArgumentError if 400 <= response.status_code < 500 else RemoteError
        raise kind(said)
    outputs = {}
    for output in response.json().get("outputs", []):
        dtype = object if output["datatype"] == "BYTES" else None
        outputs[output["name"]] = np.asarray(output["data"], dtype=dtype).reshape(output["shape"])
    return outputs
