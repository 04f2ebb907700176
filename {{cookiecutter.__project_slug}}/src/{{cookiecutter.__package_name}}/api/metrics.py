"""GET /metrics: the Prometheus metrics (metrics.py), for any authenticated caller; and the count
of every response by route and status.

/metrics only when METRICS_PORT is unset: with it, they are served on that port instead
(api/app.py).
"""

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .security import authenticate

router = APIRouter(dependencies=[Depends(authenticate)], include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class ResponseCountMiddleware:
    """Counts each response by the path template of the route that answered it (which routing
    leaves in the scope), so that the label takes as many values as there are routes, not as
    there are session ids: `none` when no route did (an unknown path, a file of the playground,
    or a request that middleware refused before its route ran)."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def count(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", "none")
                self.counter.labels(route=route, status=str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, count)
