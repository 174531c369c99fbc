"""uvicorn's HTTP/1.1 protocol (``httptools``), handing request bodies to the app piece by piece, for uploads.

uvicorn gathers a request body into one ``bytearray`` and gives the app a ``bytes`` copy of it,
two copies of every byte of an upload before the app sees it, and it stops reading a connection
once 64 KiB wait for the app (``HIGH_WATER_LIMIT`` in ``uvicorn.protocols.http.flow_control``, a
constant with no setting of its own): for a ``PATCH`` of a blob, a pause and a wake-up of the
event loop every 64 KiB. :class:`UploadProtocol` queues the pieces the parser hands over as they
are (no copy), lets :data:`BODY_BUFFER` bytes of them wait before it pauses, and gives the app one
piece per ``receive()``. It is uvicorn's ``http=`` setting, a protocol class, as
:func:`hub.server.running.serve` gives it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

__all__ = ["UploadProtocol", "BODY_BUFFER"]

BODY_BUFFER = 1024 * 1024  # bytes of a request body read ahead of the app, per connection


class _PieceCycle(RequestResponseCycle):
    """uvicorn's request/response cycle whose body is a queue of the parser's pieces (``pieces``,
    ``held`` bytes together) instead of one buffer copied out whole."""

    pieces: deque[bytes]
    held: int

    async def receive(self) -> Any:
        # uvicorn 0.54's receive, one queued piece at a time
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.pieces and not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = self.pieces.popleft() if self.pieces else b""
        self.held -= len(body)
        if self.held <= BODY_BUFFER:
            self.flow.resume_reading()
        return {"type": "http.request", "body": body, "more_body": bool(self.pieces) or self.more_body}


class UploadProtocol(HttpToolsProtocol):
    """:class:`~uvicorn.protocols.http.httptools_impl.HttpToolsProtocol` whose requests queue their
    body's pieces (:class:`_PieceCycle`) and pause reading at :data:`BODY_BUFFER` bytes not yet taken by
    the app, not at 64 KiB."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle  # made just now; its task has not run yet
        cycle.__class__ = _PieceCycle
        cycle.pieces, cycle.held = deque(), 0

    def on_body(self, body: bytes) -> None:
        # uvicorn 0.54's on_body, the piece queued as it is, BODY_BUFFER in place of HIGH_WATER_LIMIT
        if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
            return
        cycle = self.cycle
        cycle.pieces.append(body)
        cycle.held += len(body)
        if cycle.held > BODY_BUFFER:
            self.flow.pause_reading()
        cycle.message_event.set()
