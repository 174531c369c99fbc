"""uvicorn's HTTP/1.1 protocol (``httptools``) with a larger request-body buffer, for uploads.

uvicorn stops reading a connection once 64 KiB of request body wait for the app
(``HIGH_WATER_LIMIT`` in ``uvicorn.protocols.http.flow_control``, a constant with no setting of its
own), and reads on when the app asks for more: for a ``PATCH`` of a blob, a pause and a wake-up of
the event loop every 64 KiB. :class:`UploadProtocol` lets :data:`BODY_BUFFER` bytes wait instead.
(Much more buffers no better: each piece is copied twice inside uvicorn, and copies of pieces that
no longer fit in the CPU's cache cost more than they save.) It is uvicorn's ``http=`` setting, a
protocol class, as :func:`hub.server.running.serve` gives it.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["UploadProtocol", "BODY_BUFFER"]

BODY_BUFFER = 1024 * 1024  # bytes of a request body read ahead of the app, per connection


class UploadProtocol(HttpToolsProtocol):
    """:class:`~uvicorn.protocols.http.httptools_impl.HttpToolsProtocol` that pauses reading a
    request body at :data:`BODY_BUFFER` bytes not yet taken by the app, not at 64 KiB."""

    def on_body(self, body: bytes) -> None:
        # uvicorn 0.54's on_body, with BODY_BUFFER in place of HIGH_WATER_LIMIT
        if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
            return
        self.cycle.body += body
        if len(self.cycle.body) > BODY_BUFFER:
            self.flow.pause_reading()
        self.cycle.message_event.set()
