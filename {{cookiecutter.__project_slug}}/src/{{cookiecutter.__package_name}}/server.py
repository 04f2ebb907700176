"""The HTTP protocol `serve` runs: uvicorn's own, with limits on each request's headers.

uvicorn (0.54) times only the idle wait between requests (keep-alive), and stops even that timer at
a request's first byte: a client that sends its headers a byte at a time, or connects and sends
nothing, keeps its connection, and a place under `--limit-concurrency`, as long as it likes. Nor
does its httptools parser bound the headers' size, before the body or after it (the trailers a
chunked body may end with): one client sending headers without end grows the process by gigabytes
in seconds. Here a request's headers must arrive within REQUEST_HEADER_TIMEOUT of the connection
being opened, or of the request's first byte, or the connection is closed; and its headers, those
after the body too, must fit in MAX_HEADER_BYTES, or the client gets 431 and the connection is
closed. The body has limits of its own, in the app (api/limits.py).

The liveness probes are answered beyond `--limit-concurrency`, where uvicorn answers every other
request 503: a replica with as many connections open as it allows is busy, not hung, and a
probe that failed then would have it restarted, its running turns with it. Readiness is not:
it takes a full replica out of the load balancer's rotation until it has room again.

It extends the httptools protocol, the parser uvicorn chooses when it is installed (as
uvicorn[standard] installs it) and the one the template's benchmarks measured. It uses the
protocol's attributes `loop`, `transport`, `cycle`, `url` and `limit_concurrency` and its parser
callbacks `on_message_begin`, `on_headers_complete`, `on_body` and `on_message_complete`, which
uvicorn does not document: tests/api/test_slow_clients.py fails if a release changes them.
Without `serve`:
`uvicorn --http {{ cookiecutter.__package_name }}.server:HeaderLimitsProtocol`.
"""

import asyncio
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .api.errors import CLOSE_CONNECTION, error_response
from .config import get_settings

# The request targets of the liveness probes: the Deployment's, and AgentCore's where it is served.
LIVENESS_PROBES = {b"/health", b"/ping"}


class HeaderLimitsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.request_header_timeout
        self.max_header_bytes = settings.max_header_bytes
        self.header_deadline: asyncio.TimerHandle | None = None  # set while headers are read
        self.reading_request = False  # from a request's first byte to its last
        self.header_bytes = 0  # of the request being read
        self.body_in_read = False  # whether the data being parsed holds some of its body

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.start_header_deadline()

    def data_received(self, data: bytes) -> None:
        self.body_in_read = False
        super().data_received(data)
        # Counted after the parser has read them, which tells whether these bytes belong to a
        # request (its callbacks below mark where one begins and ends) and whether they hold any
        # of its body. A read of a request that holds none holds its headers: those before the
        # body, or those that a chunked body may end with (trailers, which uvicorn keeps too).
        # (So headers that end in the read that passes the limit, or in a read with some of the
        # body, get through: the bound is the limit and one read, some 256 KiB.)
        if self.reading_request and not self.body_in_read:
            self.header_bytes += len(data)
            if self.header_bytes > self.max_header_bytes and not self.transport.is_closing():
                self.refuse_headers()

    def on_message_begin(self) -> None:
        # A request's first byte: of the first, of the next after a response, or of one sent
        # behind a request still being answered (pipelined), whose headers count all the same.
        super().on_message_begin()
        self.reading_request, self.header_bytes = True, 0
        if self.header_deadline is None:
            self.start_header_deadline()

    def on_headers_complete(self) -> None:  # the parser has read a request's headers
        self.cancel_header_deadline()
        if self.url not in LIVENESS_PROBES:
            super().on_headers_complete()
            return
        limit, self.limit_concurrency = self.limit_concurrency, None
        try:
            super().on_headers_complete()
        finally:
            self.limit_concurrency = limit

    def on_body(self, body: bytes) -> None:
        self.body_in_read = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.reading_request = False
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_header_deadline()
        super().connection_lost(exc)

    def start_header_deadline(self) -> None:
        self.header_deadline = self.loop.call_later(self.header_timeout, self.transport.close)

    def cancel_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def refuse_headers(self) -> None:
        """431 with the service's error body, and the connection closed: no route has run. Sent
        behind a request still being answered, the 431 would land inside its response: the
        connection is only closed."""
        self.cancel_header_deadline()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        message = f"The request's headers are larger than {self.max_header_bytes} bytes."
        status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
        response = error_response(status, "headers_too_large", message, CLOSE_CONNECTION)
        lines = [f"HTTP/1.1 {status} {status.phrase}".encode()]
        lines += [name + b": " + value for name, value in response.raw_headers]
        self.transport.write(b"\r\n".join([*lines, b"", response.body]))
        self.transport.close()
