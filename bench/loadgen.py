"""A closed-loop HTTP/1.1 load generator for the serving benchmark, run in a process of its own.

``python bench/loadgen.py SPEC.json`` opens ``clients`` keep-alive connections to one server and,
on each, sends a request, reads the whole answer and sends the next (one in flight per
connection), cycling through the spec's pre-encoded request bodies, for ``warmup_s`` unmeasured
seconds and then ``seconds`` measured ones; then it stops sending, lets the requests in flight
finish and prints one JSON line: the requests answered inside the measured window, their
latencies (p50, p99, mean: from the request's first byte written to its answer's last byte
read), the throughput, errors, and the CPU seconds of this process and of the server's
processes (``pids`` and their children, read with psutil) over the window.

It is written on plain asyncio streams (no HTTP library: httpx costs ~10x the CPU per request,
and the generator shares the cores with the server it measures); ``trivial_server`` is an
endpoint that answers every request with a fixed body, to measure the generator against.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["encode_request", "run_load", "trivial_server", "main"]

LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.IGNORECASE)
DRAIN_TIMEOUT_S = 30.0


def encode_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One ``POST path`` with a JSON ``body``, as the bytes sent on a keep-alive connection."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class _State:
    stop_at: float
    done: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each 200
    errors: int = 0
    first_error: str = ""


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 answer (``Content-Length`` or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = LENGTH.search(head)
    if length:
        return status, await reader.readexactly(int(length.group(1)))
    if not CHUNKED.search(head):
        raise RuntimeError(f"an answer with neither Content-Length nor chunked encoding: {head[:200]!r}")
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if not size:
            return status, b"".join(parts)
        parts.append(data[:-2])


async def _client(host: str, port: int, requests: list[bytes], offset: int, state: _State) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        index = offset
        while time.perf_counter() < state.stop_at:
            request = requests[index % len(requests)]
            index += 1
            start = time.perf_counter()
            writer.write(request)
            status, body = await _read_answer(reader)
            end = time.perf_counter()
            if status == 200:
                state.done.append((start, end))
            else:
                state.errors += 1
                state.first_error = state.first_error or f"HTTP {status}: {body[:500].decode(errors='replace')}"
    finally:
        writer.close()


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` and all their descendants so far."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for each in [process, *process.children(recursive=True)]:
                times = each.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, clients = spec["host"], spec["port"], spec["clients"]
    requests = [encode_request(host, port, spec["path"], body.encode(), spec.get("headers")) for body in spec["bodies"]]
    started = time.perf_counter()
    window_start = started + spec["warmup_s"]
    window_end = window_start + spec["seconds"]
    state = _State(stop_at=window_end)
    tasks = [asyncio.create_task(_client(host, port, requests, i * 7, state)) for i in range(clients)]
    await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
    cpu_start, server_start = time.process_time(), _cpu_seconds(spec["pids"])
    await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
    cpu_end, server_end = time.process_time(), _cpu_seconds(spec["pids"])
    await asyncio.wait_for(asyncio.gather(*tasks), DRAIN_TIMEOUT_S)
    measured = [end - start for start, end in state.done if window_start <= end <= window_end]
    if not measured:
        raise RuntimeError(f"no request was answered in the measured window ({state.errors} errors; {state.first_error})")
    return {"requests": len(measured), "rps": len(measured) / spec["seconds"], "p50_s": _percentile(measured, 0.50),
            "p99_s": _percentile(measured, 0.99), "mean_s": statistics.fmean(measured), "errors": state.errors,
            "first_error": state.first_error, "client_cpu_s": cpu_end - cpu_start, "server_cpu_s": server_end - server_start}


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Drive one server as the module docstring says.

    Args:
        spec: ``host``, ``port``, ``path``, ``bodies`` (JSON texts, sent in turn), ``clients``,
            ``warmup_s``, ``seconds``, ``pids`` (the server's processes, for their CPU seconds),
            optional ``headers``.

    Returns:
        ``requests``, ``rps``, ``p50_s``, ``p99_s``, ``mean_s``, ``errors``, ``first_error``,
        ``client_cpu_s``, ``server_cpu_s``.

    Raises:
        RuntimeError: no request was answered with a 200 inside the window.
    """
    return asyncio.run(_measure(spec))


class _Trivial(asyncio.Protocol):
    """Answers every request on its connection with the fixed answer ``ANSWER`` (requests carry a Content-Length body)."""

    ANSWER = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = LENGTH.search(self.buffer, 0, end + 2)
            total = end + 4 + (int(length.group(1)) if length else 0)
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.transport.write(self.ANSWER)


async def _serve_trivial(body: bytes) -> None:
    _Trivial.ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " + str(len(body)).encode()
                       + b"\r\n\r\n" + body)
    server = await asyncio.get_running_loop().create_server(_Trivial, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def trivial_server(body: bytes) -> None:
    """Serve on a free loopback port, answering every request with ``body`` (JSON); print the port first."""
    asyncio.run(_serve_trivial(body))


def main() -> None:
    if sys.argv[1:2] == ["--trivial"]:
        trivial_server(sys.argv[2].encode())
        return
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    print(json.dumps(run_load(spec)))


if __name__ == "__main__":
    main()
