"""The inference server (``hub serve-models``): published models over the Open Inference Protocol v2.

:func:`serve_models` is what the command runs; :func:`build_server` gives the ASGI app over loaded
models. The parts: :mod:`hub.serving.protocol` (v2 JSON and tensors), :mod:`hub.serving.runtimes`
(torch and onnxruntime), :mod:`hub.serving.batching` (the dynamic batcher), :mod:`hub.serving.models`
(served REFs, alias following), :mod:`hub.serving.auth` (tokens), :mod:`hub.serving.metrics`
(Prometheus) and :mod:`hub.serving.app` (the routes). See docs/SERVING.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve_models", "build_server"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hub.serving import running

        return getattr(running, name)
    raise AttributeError(f"module 'hub.serving' has no attribute {name!r}")
