"""Limits on request bodies, answered like every other error with the JSON error body: 413 for a
body too large, 408 for one too slow.

(Starlette's own body limit answers in plain text, and uvicorn puts no time limit on a body.)
"""

import asyncio

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import CLOSE_CONNECTION, error_response


class BodyLimitsMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        # The server reads no more than Content-Length bytes as this request's body.
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return

        # Every body (chunked or not) is read whole, under one deadline, before the app is called:
        # the route never runs on part of a body or on one over the limit, and a client that
        # sends its body slowly holds no route and no turn while it does.
        try:
            async with asyncio.timeout(self.timeout):
                body = await self._read_body(receive)
        except TimeoutError:
            await self._timed_out(scope, receive, send)
            return
        if body is None:  # the client left: there is no one to answer
            return
        if len(body) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return

        body_sent = False

        async def replay_receive() -> Message:
            nonlocal body_sent
            if body_sent:  # what comes after the body: the client leaving
                return await receive()
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay_receive, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or its first chunks past the limit; None if the client left."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_bytes or not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body is larger than {self.max_bytes} bytes (MAX_BODY_BYTES)."
        response = error_response(413, "request_too_large", message, CLOSE_CONNECTION)
        await response(scope, receive, send)

    async def _timed_out(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = (
            f"The request body took longer than {self.timeout:g} seconds to arrive "
            "(REQUEST_BODY_TIMEOUT)."
        )
        response = error_response(408, "request_timeout", message, CLOSE_CONNECTION)
        await response(scope, receive, send)
