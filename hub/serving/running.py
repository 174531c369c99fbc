"""Running the inference server: :func:`serve_models` loads the models, binds the address, prints it,
and runs uvicorn (one process: each model's batcher is a thread of it)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from hub.errors import InvalidArgumentError, PermissionDeniedError

__all__ = ["serve_models", "build_server", "default_threads"]

logger = logging.getLogger("hub.serving")


def _check(max_batch_size: int, max_delay_ms: float, poll_seconds: float, max_body_mb: float) -> None:
    if max_batch_size < 1:
        raise InvalidArgumentError(f"--max-batch-size {max_batch_size}: need at least 1 (1: batching off)")
    if not 0 <= max_delay_ms <= 10_000:
        raise InvalidArgumentError(f"--max-delay-ms {max_delay_ms:g}: give 0 to 10000 milliseconds")
    if not 0.05 <= poll_seconds <= 3600:
        raise InvalidArgumentError(f"--poll-seconds {poll_seconds:g}: give 0.05 to 3600 seconds")
    if not 0 < max_body_mb <= 4096:
        raise InvalidArgumentError(f"--max-body-mb {max_body_mb:g}: give more than 0 and at most 4096 megabytes")


def _check_host(hub: object, host: str) -> None:
    """Refuse a non-loopback address over a local hub with no authentication configured.

    Raises:
        PermissionDeniedError: anyone on the network could infer on every model, private ones too.
    """
    from hub.access import open_to_network

    if getattr(hub, "endpoint", None) is None and open_to_network(hub.db, host):  # type: ignore[attr-defined]
        raise PermissionDeniedError(
            f"an inference server on {host} would answer anyone on the network, and this hub has no authentication "
            "configured: add a token (`hub token create --user NAME --scope read`) or a user with a password "
            "(`hub user create NAME --password-stdin`), or serve on 127.0.0.1")


def _log_to_stderr(level: str) -> None:
    """The server's own log (loads, alias switches, failures) on stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, level.upper(), logging.INFO))
    logger.propagate = False


def default_threads() -> int:
    """Torch's CPU threads by default: half the machine's cores (at least 1), leaving the rest to HTTP and JSON.

    (On a busy 2-core machine, a 2-thread pool ran the digits convnet at 8-30 ms a batch of one, against
    0.16 ms with one thread: the pool's threads wait on each other whenever one is descheduled.)
    """
    return max(1, (os.cpu_count() or 2) // 2)


def build_server(refs: Sequence[str], *, host: str = "127.0.0.1", runtime: str = "torch", max_batch_size: int = 32,
                 max_delay_ms: float = 5.0, poll_seconds: float = 2.0, max_body_mb: float = 16.0,
                 threads: int | None = None) -> tuple[Any, Any, Any]:
    """Load ``refs`` from the default hub and build the app: ``(app, models, follower)``.

    Raises:
        InvalidArgumentError, PermissionDeniedError, ModelNotFoundError: see :func:`serve_models`.
    """
    import hub as hub_module
    from hub.serving.app import create_inference_app
    from hub.serving.auth import Gate
    from hub.serving.metrics import Metrics
    from hub.serving.models import Follower, ServedModel, ServedModels
    from hub.serving.runtimes import RUNTIMES

    _check(max_batch_size, max_delay_ms, poll_seconds, max_body_mb)
    if threads is not None and not 1 <= threads <= 1024:
        raise InvalidArgumentError(f"--threads {threads}: give 1 or more")
    if runtime not in RUNTIMES:
        raise InvalidArgumentError(f"--runtime {runtime!r}: pick one of {', '.join(RUNTIMES)}")
    import torch

    torch.set_num_threads(threads or default_threads())
    hub = hub_module.default_hub()  # HUB_ENDPOINT set: a RemoteHub, loads through its cache
    _check_host(hub, host)
    if getattr(hub, "endpoint", None) is None:
        hub.db.ensure_schema()
    twice = next((ref for ref in refs if list(refs).count(ref) > 1), None)
    if twice is not None:
        raise InvalidArgumentError(f"{twice} is given twice; give each REF once")
    metrics = Metrics()
    loaded: list[ServedModel] = []
    for ref in refs:
        loaded.append(ServedModel(hub, ref, runtime=runtime, max_batch_size=max_batch_size,
                                  max_delay=max_delay_ms / 1000, metrics=metrics))
    models = ServedModels(loaded)
    app = create_inference_app(models, Gate(hub), metrics, max_body_bytes=int(max_body_mb * 1024 * 1024))
    settle_garbage()
    return app, models, Follower(models, poll_seconds)


def settle_garbage() -> None:
    """Collect once, then move every object alive now (the loaded models, torch's and the libraries'
    own) out of the garbage collector's reach (``gc.freeze``): under load a full collection walked
    those few hundred thousand objects about once a second, 185-225 ms each with every request in
    flight stalled (a digits convnet's p99: ~200 ms with it, 28-40 ms without)."""
    import gc

    gc.collect()
    gc.freeze()


def serve_models(refs: Sequence[str], *, host: str = "127.0.0.1", port: int = 8080, runtime: str = "torch",
                 max_batch_size: int = 32, max_delay_ms: float = 5.0, poll_seconds: float = 2.0,
                 max_body_mb: float = 16.0, threads: int | None = None, log_level: str = "info", access_log: bool = False) -> None:
    """Serve ``refs`` over the Open Inference Protocol v2 until Ctrl-C or SIGTERM.

    Every model is loaded (and run once) before the server listens; then it prints one line,
    ``serving N models at http://HOST:PORT``.

    Args:
        refs: ``name``, ``name:N`` or ``name@alias`` (an alias, and a bare name's latest, are followed).
        host, port: where to listen (port 0: a free port, printed).
        runtime: ``"torch"`` (``hub.load``) or ``"onnx"`` (the version's ONNX export in onnxruntime).
        max_batch_size: the most rows in one batch (1: batching off).
        max_delay_ms: how long a batch's first request waits for others.
        poll_seconds: how often followed aliases are checked.
        max_body_mb: the largest request body (413 above it).
        threads: torch's CPU threads (None: :func:`default_threads`).
        log_level: uvicorn's and the server's log level.
        access_log: uvicorn's one line per request (off by default: it costs throughput).

    Raises:
        InvalidArgumentError: a bad option, host or port, or the address taken.
        PermissionDeniedError: a non-loopback host over a local hub with no authentication configured.
        ModelNotFoundError: a REF names nothing, or ``onnx`` for a version without an ONNX export.
    """
    import uvicorn

    from hub.server.running import _bind, _http_protocol, _Server, _url

    _log_to_stderr(log_level)
    app, models, follower = build_server(refs, host=host, runtime=runtime, max_batch_size=max_batch_size,
                                         max_delay_ms=max_delay_ms, poll_seconds=poll_seconds, max_body_mb=max_body_mb,
                                         threads=threads)
    sock = _bind(host, port)
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="off", timeout_graceful_shutdown=5,
                            server_header=False, http=_http_protocol(), backlog=2048)
    follower.start()
    print(f"serving {len(models.models)} model{'s' if len(models.models) != 1 else ''} at {_url(sock)}", flush=True)
    try:
        _Server(config).run(sockets=[sock])
    finally:
        follower.stop()
        models.close()
    print("stopped", file=sys.stderr, flush=True)
