"""The inference server's ASGI app: the Open Inference Protocol v2 REST API over served models.

| route | answer |
|---|---|
| ``GET /v2/health/live`` | ``{"live": true}`` |
| ``GET /v2/health/ready`` | ``{"ready": true}`` once every model is loaded (503 before) |
| ``GET /v2`` | ``{"name": "modelhub", "version", "extensions": []}`` |
| ``GET /v2/models/{name}[/versions/{v}]`` | ``{"name", "versions", "platform", "inputs", "outputs"}`` |
| ``GET /v2/models/{name}[/versions/{v}]/ready`` | ``{"name", "ready": true}`` |
| ``POST /v2/models/{name}[/versions/{v}]/infer`` | ``{"model_name", "model_version", "id"?, "outputs"}`` |
| ``GET /metrics`` | Prometheus' text format (:mod:`hub.serving.metrics`) |

``{name}`` is the hub's model name, ``/`` and all (``/v2/models/acme/digits-cnn/infer``): the path
after ``/v2/models/`` is matched against the served names. ``{v}`` is a version number (the one
a REF serves now) or the alias of a REF (``production``). Errors are ``{"error": "message"}``:
400 a malformed request or one that does not fit the model, 401 a bad token, 404 an unknown (or
unreadable) model or version, 405 a wrong method, 413 a body over the limit, 500 anything else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from hub.errors import HubError, InvalidArgumentError, ModelNotFoundError
from hub.serving.auth import Gate
from hub.serving.metrics import CONTENT_TYPE, Metrics
from hub.serving.models import ServedModel, ServedModels
from hub.serving.protocol import encode_tensor, error_body, parse_request, too_large

__all__ = ["create_inference_app", "DEFAULT_MAX_BODY_BYTES"]

logger = logging.getLogger("hub.serving")
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
_ACTIONS = ("", "/ready", "/infer")


class _Wrong(HubError):
    """A wrong method on a known route (405)."""

    http_status = 405


def _status(error: HubError) -> int:
    from hub.server.errors import status_of

    return getattr(error, "http_status", None) or status_of(error)


def _answer(body: Any, status: int = 200) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(body, status_code=status, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


async def _read_json(request: Any, limit: int) -> Any:
    """The request body as JSON, read up to ``limit`` bytes.

    Raises:
        InvalidArgumentError: over the limit (413), or not JSON (400).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        parts.append(chunk)
    try:
        return json.loads(b"".join(parts))
    except (ValueError, RecursionError) as error:
        raise InvalidArgumentError(f"the request body is not valid JSON ({str(error)[:200]}); send a v2 infer "
                                   "request: {\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}]}") from None


def create_inference_app(models: ServedModels, gate: Gate, metrics: Metrics, *,
                         max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Any:
    """The ASGI app (Starlette) serving ``models``.

    Args:
        models: what it serves (loaded).
        gate: who may infer on what (:class:`hub.serving.auth.Gate`).
        metrics: where it counts.
        max_body_bytes: the largest infer request body (413 above it).
    """
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import Response
    from starlette.routing import Route

    import hub

    names = sorted(models.names(), key=len, reverse=True)  # the longest name first: acme/x/y before acme/x

    def locate(path: str) -> tuple[str, str | None, str]:
        """``(model name, version or None, action)`` of the path after /v2/models/.

        Raises:
            ModelNotFoundError: no served model or route there.
        """
        for name in names:
            if path == name or path.startswith(name + "/"):
                rest, version = path[len(name):], None
                if rest.startswith("/versions/"):
                    version, _, after = rest[len("/versions/"):].partition("/")
                    rest = "/" + after if after else ""
                    if not version:
                        break
                if rest in _ACTIONS:
                    return name, version, rest
                break
        raise ModelNotFoundError(f"this server serves no model at /v2/models/{path[:200]}; it serves "
                                 f"{', '.join(models.names())} (/v2/models/NAME[/versions/V]/infer)")

    def metadata(model: ServedModel, name: str) -> dict[str, Any]:
        runtime = model.current.runtime
        versions = [str(m.current.version.version) for m in models.of_name(name)]
        return {"name": name, "versions": list(dict.fromkeys(versions)), "platform": runtime.platform,
                "inputs": runtime.inputs, "outputs": runtime.outputs}

    async def model_route(request: Any) -> Any:
        started = time.perf_counter()
        label, path = "unknown", request.scope["path"]  # request.url would build the whole URL: 50 us a request
        infer = path.endswith("/infer")
        try:
            name, version, action = locate(request.path_params["path"])
            label = name
            wanted = "POST" if action == "/infer" else "GET"
            if request.method != wanted:
                raise _Wrong(f"{request.method} is not allowed on {path}; use {wanted}")
            model = models.find(name, version)
            await gate.check(request.headers.get("authorization"), request.client.host if request.client else "?", name)
            if action == "":
                return _answer(metadata(model, name))
            if action == "/ready":
                return _answer({"name": name, "ready": True})
            infer = True
            parsed = parse_request(await _read_json(request, max_body_bytes))
            loaded, future = model.submit(parsed.inputs, parsed.outputs)
            outputs = await asyncio.wrap_future(future)
            body = {"model_name": name, "model_version": str(loaded.version.version),
                    **({"id": parsed.id} if parsed.id else {}),  # the request's id, echoed where it sent one
                    "outputs": [encode_tensor(key, array) for key, array in outputs.items()
                                if parsed.outputs is None or key in parsed.outputs]}
            metrics.answered(name, 200, time.perf_counter() - started)
            return _answer(body)
        except HubError as error:
            status = _status(error)
            if infer:
                metrics.answered(label, status, None)
            return _answer(error_body(str(error)), status)
        except Exception as error:
            logger.error("%s %s failed", request.method, path, exc_info=error)
            if infer:
                metrics.answered(label, 500, None)
            return _answer(error_body(f"the server failed ({type(error).__name__}); its log has the details"), 500)

    async def live(request: Any) -> Any:
        return _answer({"live": True})

    async def ready(request: Any) -> Any:
        return _answer({"ready": True})

    async def server_metadata(request: Any) -> Any:
        return _answer({"name": "modelhub", "version": hub.__version__, "extensions": []})

    async def metrics_route(request: Any) -> Any:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    async def http_error(request: Any, error: HTTPException) -> Any:
        message = (f"no route {request.url.path}; the API is under /v2 (/v2/models/NAME/infer)" if error.status_code == 404
                   else f"{request.method} is not allowed on {request.url.path}" if error.status_code == 405 else str(error.detail))
        return _answer(error_body(message), error.status_code)

    routes = [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/models/{path:path}", model_route, methods=["GET", "POST"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
