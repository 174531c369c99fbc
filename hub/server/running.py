"""Running the server: :func:`serve` binds the address, prints it, and runs uvicorn (one process or several)."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from typing import Any

from hub.errors import InvalidArgumentError

__all__ = ["serve", "APP_FACTORY"]

APP_FACTORY = "hub.server.app:create_app"  # what each uvicorn worker imports and calls


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one).

    Raises:
        InvalidArgumentError: the port is out of range, the host unknown, or the address taken.
    """
    if not 0 <= port <= 65535:
        raise InvalidArgumentError(f"port {port} is out of range; pick one from 1 to 65535 (0: any free port)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidArgumentError(f"can't listen on host {host!r}: {exc}; give an address of this machine "
                                   "(127.0.0.1, 0.0.0.0) or its name") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "the address is in use (another server?); pick another --port" if exc.errno == 98 else exc.strerror
        raise InvalidArgumentError(f"can't listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(host: str = "127.0.0.1", port: int = 8000, *, workers: int = 1, log_level: str = "info") -> None:
    """Serve the local hub of ``HUB_HOME`` and ``HUB_REGISTRY_URL`` over HTTP until Ctrl-C or SIGTERM.

    Prints one line with the address (``serving <home> at http://HOST:PORT``) once it listens.

    Args:
        host, port: where to listen (port 0: a free port, printed).
        workers: processes (uvicorn's multi-process mode, each building the app from :data:`APP_FACTORY`).
        log_level: uvicorn's (its access log shows each request's method, path and query, never a header).

    Raises:
        InvalidArgumentError: a bad host or port, the address taken, fewer than one worker.
        SchemaOutdatedError: the registry needs `hub db upgrade`.
    """
    import uvicorn

    from hub.api import Hub

    if workers < 1:
        raise InvalidArgumentError(f"--workers {workers}: need at least 1")
    hub = Hub()  # the local hub: HUB_ENDPOINT plays no part in a server
    hub.db.ensure_schema()  # once, here, before the workers start
    sock = _bind(host, port)
    config = uvicorn.Config(APP_FACTORY, factory=True, workers=workers, log_level=log_level, lifespan="off",
                            timeout_graceful_shutdown=5, server_header=False, http=_http_protocol())
    print(f"serving {hub.home} at {_url(sock)}", flush=True)
    hub.close()
    if workers == 1:
        _Server(config).run(sockets=[sock])
    else:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
    print("stopped", file=sys.stderr, flush=True)


def _http_protocol() -> str:
    """uvicorn's ``http=``: :class:`hub.server.protocol.UploadProtocol` (uploads read in large pieces)
    where ``httptools`` is installed, else uvicorn's choice."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return "auto"
    return "hub.server.protocol:UploadProtocol"


class _Server:
    """uvicorn's server, but a Ctrl-C or SIGTERM ends it with a clean exit (uvicorn re-raises the signal)."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                with super().capture_signals():
                    yield
                    self._captured_signals.clear()

        return Server(config)
