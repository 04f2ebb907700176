"""Liveness and readiness probes."""

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..session_store import again_if_dropped
from .errors import ApiError, documented

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


@router.get("/health")
async def health() -> Health:
    """Liveness: the process serves requests. Touches neither the database nor the model."""
    return Health()


class DatabasePing:
    """Whether the database answers, for /ready: asked on the turns' engine, whose pool keeps a
    connection beyond what requests may hold at once (for renewing leases), so that the probe
    waits neither for a burst of turns nor for slow /sessions requests, and a busy replica stays
    ready. Asked once for all the probes that come while it is asked: the route is open to
    anyone, and renewing leases must wait at most for one SELECT 1."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._asking: asyncio.Task[None] | None = None

    async def __call__(self) -> None:
        if self._asking is None or self._asking.done():
            self._asking = asyncio.create_task(again_if_dropped(self._select_one))
        # A probe that gives up does not cancel what the others wait for.
        await asyncio.shield(self._asking)

    async def _select_one(self) -> None:
        async with self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))


@router.get(
    "/ready", responses=documented({503: "The database is unreachable (database_unavailable)"})
)
async def ready(request: Request) -> Health:
    """Readiness: the database answers.

    Open, like /health: the probes of Kubernetes and of load balancers send no credential, and
    the answer tells no more than whether this replica can serve.
    """
    try:
        await request.app.state.database_ping()
    except SQLAlchemyError as error:
        logger.warning("readiness check failed: %s", error)
        raise ApiError(503, "database_unavailable", "The database is unreachable.") from None
    return Health()
