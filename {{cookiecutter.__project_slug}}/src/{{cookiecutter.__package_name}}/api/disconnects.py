"""A client leaving a streamed turn is routine, not a server error.

When a client disconnects from /process-streaming, FastAPI's SSE keepalive task can be writing
to the response's stream at the moment the disconnect closes it: the BrokenResourceError it then
raises (fastapi discussion #15725) would reach uvicorn, which logs it with a traceback as
"Exception in ASGI application", on about half of all dropped streams. The turn itself is not
affected: it runs on and is stored whole (turns.py).
"""

import logging

from anyio import BrokenResourceError, ClosedResourceError
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)


class DroppedStreamMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except* (BrokenResourceError, ClosedResourceError):
            # Only a response whose reader is gone raises these: there is no one to answer.
            logger.debug("client left a stream: %s %s", scope.get("method"), scope.get("path"))
