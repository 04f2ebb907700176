"""GET /metrics: the Prometheus metrics (metrics.py), for any authenticated caller.

Only when METRICS_PORT is unset: with it, they are served on that port instead (api/app.py).
"""

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .security import authenticate

router = APIRouter(dependencies=[Depends(authenticate)], include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
