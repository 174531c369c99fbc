"""A real ``hub serve`` process for tests: :func:`start_server` starts one on a free loopback port.

    server = start_server(home, registry_url)
    httpx.get(f"{server.url}/api/v1/models")
    server.stop()

The server gets its own environment (``HUB_HOME``, ``HUB_REGISTRY_URL``, never ``HUB_ENDPOINT``),
so a client in the test process reaches the hub only over HTTP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Server", "start_server"]

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


class Server:
    """A running ``hub serve`` subprocess.

    Attributes:
        url: ``http://127.0.0.1:PORT`` (no trailing slash).
        process: the ``subprocess.Popen``.
        home, registry_url: the hub it serves.
    """

    def __init__(self, process: subprocess.Popen, url: str, stderr_path: Path, home: Path, registry_url: str) -> None:
        self.process, self.url, self._stderr_path = process, url, stderr_path
        self.home, self.registry_url = home, registry_url

    def stderr_text(self) -> str:
        """Everything the server wrote to stderr so far (uvicorn's log, tracebacks)."""
        try:
            return self._stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self) -> str:
        """Everything the server wrote to stdout so far (its address line, uvicorn's access log)."""
        try:
            return self._stderr_path.with_name("stdout").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> int:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` s); return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(home: str | os.PathLike[str], registry_url: str, *, env: dict[str, str] | None = None,
                 workers: int = 1, timeout: float = START_TIMEOUT_S, command: Sequence[str] | None = None,
                 health: str = "/healthz") -> Server:
    """Start ``hub serve --port 0`` on 127.0.0.1 for the hub at ``home`` and ``registry_url``, and wait
    until its ``/healthz`` answers.

    Args:
        home: the server's ``HUB_HOME``.
        registry_url: its ``HUB_REGISTRY_URL``.
        env: more environment variables for the server (``HUB_DEFAULT_VISIBILITY``, ...).
        workers: ``--workers``.
        timeout: seconds to wait for it to answer.
        command: another ``hub`` command that prints ``... at http://HOST:PORT`` once it listens (``["serve-models",
            "acme/x"]``: ``--host 127.0.0.1 --port 0`` are added); ``workers`` then plays no part.
        health: the path that answers 200 once it is up (``/v2/health/ready`` for serve-models).

    Returns:
        The :class:`Server` (stop it with ``.stop()``, or use it as a context manager).

    Raises:
        RuntimeError: it exited or did not answer within ``timeout``; the message holds its stderr.
    """
    import httpx

    home = Path(home)
    environment = {k: v for k, v in os.environ.items() if k not in ("HUB_ENDPOINT", "HUB_TOKEN", "HUB_OFFLINE")}
    environment.update({"HUB_HOME": str(home), "HUB_REGISTRY_URL": registry_url, "PYTHONUNBUFFERED": "1", **(env or {})})
    logs = Path(tempfile.mkdtemp(prefix="hub-serve-"))
    stdout_path, stderr_path = logs / "stdout", logs / "stderr"
    arguments = ["serve", "--workers", str(workers)] if command is None else list(command)
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub", *arguments, "--host", "127.0.0.1", "--port", "0"],
            stdout=out, stderr=err, env=environment, cwd=ROOT,
        )
    deadline = time.monotonic() + timeout
    url = None
    server = Server(process, "", stderr_path, home, registry_url)

    def fail(why: str) -> RuntimeError:
        server.stop(5)
        return RuntimeError(f"hub serve {why}; its stderr:\n{server.stderr_text()[-5000:]}")

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise fail(f"exited with status {process.returncode} before it answered")
        if url is None:
            line = stdout_path.read_text().strip().splitlines()
            if line and " at http://" in line[0]:
                url = line[0].rsplit(" at ", 1)[1].strip()
                server.url = url
        if url is not None:
            try:
                if httpx.get(f"{url}{health}", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise fail(f"did not answer {health} within {timeout:g} s")
