"""HTTP to a hub server (``hub serve``): one pooled connection set, the token, retries, typed errors.

Every answer that is an error carries ``{"error": {"type": ..., "message": ...}}``; :func:`error_from`
turns it back into the :mod:`hub.errors` class of that name, so a remote hub raises what a local
one does. A server that can't be reached is a :class:`~hub.errors.RemoteError` naming
``HUB_ENDPOINT`` and what to do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from hub import errors
from hub.errors import HubError, OfflineError, RemoteError

__all__ = ["Client", "error_from", "endpoint_folder", "API"]

API = "/api/v1"
RETRIES = 3  # attempts for a request that may be sent again
_BACKOFF_S = (0.2, 0.5, 1.0)
_IDEMPOTENT = {"GET", "HEAD", "PUT", "OPTIONS"}


def endpoint_folder(endpoint: str) -> str:
    """One folder name for an endpoint URL (its host, port and path): ``http://h:8000`` -> ``h_8000``."""
    parts = urlsplit(endpoint)
    text = (parts.netloc + parts.path).strip("/")
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in text) or "endpoint"


def error_from(status: int, body: Any, *, what: str) -> HubError:
    """The :mod:`hub.errors` exception an error answer stands for (by its ``type``), else a :class:`RemoteError`.

    Args:
        status: the HTTP status code.
        body: the decoded JSON body (anything: a server that is no hub server answers what it likes).
        what: the request, for the message (``GET /api/v1/models``).
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        if status == 401:
            return errors.AuthenticationError(f"{what}: the server wants a token (HTTP 401); set HUB_TOKEN to one "
                                              "(`hub token create` on the server)")
        return RemoteError(f"{what}: the server answered HTTP {status}, not a hub server's error; check HUB_ENDPOINT")
    kind, message = error.get("type"), error["message"]
    cls = getattr(errors, kind, None) if isinstance(kind, str) and kind in errors.__all__ else None
    if not (isinstance(cls, type) and issubclass(cls, HubError)):
        return RemoteError(f"{message} (the server's {kind or 'error'}, HTTP {status})")
    try:
        if issubclass(cls, errors.MissingBlobsError):
            made: HubError = cls([d for d in error.get("digests") or [] if isinstance(d, str)], message)
        else:
            made = cls(message)
    except TypeError:  # a class whose constructor wants more
        return RemoteError(f"{message} (the server's {kind}, HTTP {status})")
    settings = error.get("settings")
    if isinstance(settings, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in settings.items()):
        made.settings = dict(settings)
    return made


def _open(connection: Any) -> bool:
    """Whether an idle keep-alive ``http.client`` connection is still open (the server has not closed it)."""
    import select

    sock = connection.sock
    if sock is None:
        return False
    try:  # an idle connection that is readable holds the server's close (or bytes no request asked for)
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False


class Client:
    """Requests to one hub server, over pools of keep-alive connections shared by threads: ``httpx``
    for the API, plain ``http.client`` for blob bytes (:meth:`raw` reads them, :meth:`send_file` and
    :meth:`send_chunks` send them). It connects directly (no proxy
    from the environment).

    Args:
        endpoint: the server's URL (``HUB_ENDPOINT``), without a trailing slash.
        token: the API token sent as ``Authorization: Bearer`` (None: anonymous).
        offline: refuse every request (``HUB_OFFLINE=1``) with :class:`~hub.errors.OfflineError`.
        timeout: seconds to wait to connect, and between bytes of an answer.

    Attributes:
        requests: how many requests were sent (what a test counts to see the cache at work).
    """

    def __init__(self, endpoint: str, token: str | None = None, *, offline: bool = False, timeout: float = 60.0) -> None:
        import httpx

        self.endpoint, self.offline, self.requests = endpoint.rstrip("/"), offline, 0
        headers = {"User-Agent": "modelhub-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        self._http = httpx.Client(base_url=self.endpoint, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0),
                                  limits=limits, follow_redirects=False, trust_env=False)
        self._count_lock = threading.Lock()
        self._headers, self._timeout = headers, timeout
        self._idle: list[Any] = []  # keep-alive http.client connections for blob bytes

    def __repr__(self) -> str:
        return f"Client({self.endpoint!r})"

    @property
    def authenticated(self) -> bool:
        """Whether requests carry a token."""
        return "Authorization" in self._headers

    def close(self) -> None:
        """Close the connections."""
        self._http.close()
        with self._count_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _counted(self) -> None:
        with self._count_lock:
            self.requests += 1

    def _unreachable(self, what: str, exc: Exception) -> RemoteError:
        return RemoteError(f"{what}: can't reach the hub server at HUB_ENDPOINT={self.endpoint} ({type(exc).__name__}: {exc}); "
                           "start it (`hub serve`) or fix HUB_ENDPOINT, or set HUB_OFFLINE=1 to use what is cached")

    def _check_online(self, what: str) -> None:
        if self.offline:
            raise OfflineError(f"{what} needs the hub server, and HUB_OFFLINE=1 allows the local cache alone; "
                               "unset HUB_OFFLINE to ask the server")

    def send(self, method: str, path: str, *, what: str | None = None, expect: tuple[int, ...] = (200,),
             **kwargs: Any) -> Any:
        """Send one request and return its answer (an ``httpx.Response``, read whole).

        A request that never reached the server is sent again (up to ``RETRIES`` times), and so is
        an idempotent one (GET, HEAD, PUT) whose connection broke.

        Args:
            method: ``GET``, ``POST``, ...
            path: under the endpoint, e.g. ``/api/v1/models``.
            what: the request in words, for errors (default ``METHOD path``).
            expect: the status codes that are answers; any other is raised as an error.
            kwargs: for ``httpx.Client.request`` (``json``, ``params``, ``headers``, ``content``).

        Raises:
            The :mod:`hub.errors` class the server's error answer names; RemoteError where it can't be
            reached or answers what a hub server does not; OfflineError with ``offline``.
        """
        import httpx

        what = what or f"{method} {path}"
        self._check_online(what)
        retry_all = method in _IDEMPOTENT and not callable(getattr(kwargs.get("content"), "__next__", None))
        for attempt in range(RETRIES):
            try:
                self._counted()
                response = self._http.request(method, path, **kwargs)
                break
            except httpx.ConnectError as exc:  # never sent: safe to send again
                if attempt == RETRIES - 1:
                    raise self._unreachable(what, exc) from None
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ReadTimeout) as exc:
                if not retry_all or attempt == RETRIES - 1:
                    raise self._unreachable(what, exc) from None
            except httpx.TransportError as exc:
                raise self._unreachable(what, exc) from None
            time.sleep(_BACKOFF_S[attempt])
        if response.status_code not in expect:
            raise self.error(response, what)
        return response

    def error(self, response: Any, what: str) -> HubError:
        """The error an answer stands for (see :func:`error_from`)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        return error_from(response.status_code, body, what=what)

    def json(self, method: str, path: str, *, what: str | None = None, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """:meth:`send`, and the answer's JSON.

        Raises:
            RemoteError: the answer is not JSON; else see :meth:`send`.
        """
        response = self.send(method, path, what=what, expect=expect, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise RemoteError(f"{what or method + ' ' + path}: the server's answer is not JSON; check HUB_ENDPOINT") from None

    # --- blob bytes: plain http.client, read straight into the caller's buffers ------------

    def _connection(self) -> Any:
        import http.client

        while True:
            with self._count_lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                break
            if _open(connection):
                return connection
            connection.close()  # the server closed it while it was idle (its keep-alive timeout)
        parts = urlsplit(self.endpoint)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        return kind(parts.hostname, parts.port, timeout=self._timeout)

    def send_file(self, method: str, path: str, source: Any, offset: int, length: int, *, what: str | None = None,
                  expect: tuple[int, ...] = (200,), headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send ``length`` bytes of the open file ``source`` from ``offset`` as the request body, straight
        from the page cache to the socket (``socket.sendfile``: no copy in Python), on a keep-alive
        connection of the :meth:`raw` pool. Sent once, never again (a PATCH is continued by its caller).

        Returns:
            ``(status, headers, body)``: the answer's status, headers (names lowercase) and body.

        Raises:
            RemoteError: the connection broke (the request may have been partly received); the server's
            errors as they are; IntegrityError: the file is shorter than ``offset + length``; OfflineError
            with ``offline``.
        """
        what = what or f"{method} {path}"

        def body(sock: Any) -> None:
            sent = sock.sendfile(source, offset, length) if length else 0
            if sent != length:
                raise errors.IntegrityError(f"{what}: {getattr(source, 'name', 'the file')} ended {length - sent} bytes "
                                            "early while it was sent (it changed under the upload); publish again")

        return self._send_body(method, path, length, body, what=what, expect=expect, headers=headers)

    def send_chunks(self, method: str, path: str, chunks: Iterable[bytes | memoryview], length: int, *,
                    what: str | None = None, expect: tuple[int, ...] = (200,),
                    headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """:meth:`send_file`, the body ``chunks`` (``length`` bytes together, each written to the socket as it is).

        Raises:
            See :meth:`send_file`; RemoteError also when ``chunks`` are not ``length`` bytes (the request is
            cut off), and what ``chunks`` raises.
        """
        what = what or f"{method} {path}"

        def body(sock: Any) -> None:
            sent = 0
            for chunk in chunks:
                sent += memoryview(chunk).nbytes
                if sent > length:
                    raise OSError(f"the body is longer than its {length} bytes")
                sock.sendall(chunk)
            if sent != length:
                raise OSError(f"the body ended {length - sent} bytes before its {length} bytes")

        return self._send_body(method, path, length, body, what=what, expect=expect, headers=headers)

    def _send_body(self, method: str, path: str, length: int, body: Callable[[Any], None], *, what: str,
                   expect: tuple[int, ...], headers: dict[str, str] | None) -> tuple[int, dict[str, str], bytes]:
        import http.client

        self._check_online(what)
        prefix = urlsplit(self.endpoint).path.rstrip("/")
        connection = self._connection()
        kept = False
        try:
            self._counted()
            connection.putrequest(method, prefix + path, skip_accept_encoding=True)
            for name, value in {**self._headers, **(headers or {}), "Content-Length": str(length)}.items():
                connection.putheader(name, value)
            connection.endheaders()
            body(connection.sock)
            response = connection.getresponse()
            content = response.read()
            if response.status not in expect:
                try:
                    decoded = json.loads(content)
                except ValueError:
                    decoded = None
                raise error_from(response.status, decoded, what=what)
            kept = not response.will_close
            return response.status, {name.lower(): value for name, value in response.getheaders()}, content
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(what, exc) from None
        finally:
            if kept:
                with self._count_lock:
                    self._idle.append(connection)
            else:
                connection.close()

    @contextmanager
    def raw(self, method: str, path: str, *, what: str | None = None, expect: tuple[int, ...] = (200,),
            headers: dict[str, str] | None = None) -> Iterator[Any]:
        """A GET or HEAD whose body the block reads with ``response.readinto(buffer)`` (an
        ``http.client.HTTPResponse``): blob bytes land in the caller's buffer with no copy on the
        way, several times faster than a streamed ``httpx`` body. The connection is kept for the
        next request when the block read the body whole.

        Raises:
            See :meth:`send`; RemoteError also when the connection breaks while the block reads.
        """
        import http.client

        what = what or f"{method} {path}"
        self._check_online(what)
        prefix = urlsplit(self.endpoint).path.rstrip("/")
        for attempt in range(RETRIES):
            connection = self._connection()
            try:
                self._counted()
                connection.request(method, prefix + path, headers={**self._headers, **(headers or {})})
                response = connection.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:  # refused, or a keep-alive connection the server closed
                connection.close()
                if attempt == RETRIES - 1:
                    raise self._unreachable(what, exc) from None
                time.sleep(_BACKOFF_S[attempt] if isinstance(exc, ConnectionRefusedError) else 0)
        whole = False
        try:
            if response.status not in expect:
                body = response.read()
                whole = True
                try:
                    decoded = json.loads(body)
                except ValueError:
                    decoded = None
                raise error_from(response.status, decoded, what=what)
            try:
                yield response
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(what, exc) from None
            whole = response.isclosed() or response.length == 0
        finally:
            if whole and not response.will_close:
                response.close()
                with self._count_lock:
                    self._idle.append(connection)
            else:
                connection.close()
