"""Liveness and readiness probes."""

import logging
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

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


@router.get(
    "/ready", responses=documented({503: "The database is unreachable (database_unavailable)"})
)
async def ready(request: Request) -> Health:
    """Readiness: the database answers.

    Open, like /health: the probes of Kubernetes and of load balancers send no credential, and
    the answer tells no more than whether this replica can serve.
    """

    # On the turns' engine, whose pool keeps a connection beyond what requests may hold at once
    # (for renewing leases): the probe does not queue behind a burst of turns, nor behind slow
    # /sessions requests, so a busy replica stays ready.
    async def ping() -> None:
        async with request.app.state.turn_engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        await again_if_dropped(ping)
    except SQLAlchemyError as error:
        logger.warning("readiness check failed: %s", error)
        raise ApiError(503, "database_unavailable", "The database is unreachable.") from None
    return Health()
