"""X-Request-ID: every request has an id, in each of its log lines and in its response's header.

The client's own id is kept when it is sane (a proxy or a caller that already logged it); any
other is replaced with a fresh one, so that a log line never carries what a client made up.
"""

import re
from uuid import uuid4

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import request_id

HEADER = "X-Request-ID"
SANE_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(HEADER, "")
        value = given if SANE_ID.fullmatch(given) else uuid4().hex
        token = request_id.set(value)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
