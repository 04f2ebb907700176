"""Liveness and readiness probes."""

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..database import schema_revisions
from ..session_store import again_if_dropped
from .errors import ApiError, database_unavailable, documented

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


# Each probe answers HEAD as well: uptime monitors that probe with it (most do, by default).
@router.get("/health")
@router.head("/health", include_in_schema=False)
async def health() -> Health:
    """Liveness: the process serves requests. Touches neither the database nor the model."""
    return Health()


class SchemaNotMigratedError(Exception):
    """The database answers, but its schema is older than this release's (or has none)."""


class DatabasePing:
    """Whether the database answers with a schema this release works with, for /ready: a
    replica started before its release's migration ran must not take requests (nor, in a
    rollout, take the place of one that serves).

    Asked on the turns' engine, whose pool keeps a connection beyond what requests may hold at
    once (for renewing leases), so that the probe waits neither for a burst of turns nor for slow
    /sessions requests, and a busy replica stays ready. Asked once for all the probes that come
    while it is asked: the route is open to anyone, and renewing leases must wait at most for one
    probe's two statements."""

    def __init__(self, engine: AsyncEngine, earlier_revisions: frozenset[str]) -> None:
        self._engine = engine
        self._earlier_revisions = earlier_revisions
        self._asking: asyncio.Task[None] | None = None

    async def __call__(self) -> None:
        if self._asking is None or self._asking.done():
            self._asking = asyncio.create_task(again_if_dropped(self._read_revision))
        # A probe that gives up does not cancel what the others wait for.
        await asyncio.shield(self._asking)

    async def _read_revision(self) -> None:
        async with self._engine.connect() as connection:
            revisions = await connection.run_sync(schema_revisions)
        if not revisions or revisions & self._earlier_revisions:
            raise SchemaNotMigratedError(f"the database's schema is at {sorted(revisions)}")


@router.head("/ready", include_in_schema=False)
@router.get(
    "/ready",
    responses=documented(
        {
            503: "The database is unreachable (database_unavailable), or its schema is older "
            "than this release's (schema_not_migrated)"
        }
    ),
)
async def ready(request: Request) -> Health:
    """Readiness: the database answers, migrated for this release.

    Open, like /health: the probes of Kubernetes and of load balancers send no credential, and
    the answer tells no more than whether this replica can serve.
    """
    try:
        await request.app.state.database_ping()
    except SchemaNotMigratedError as error:
        logger.warning("readiness check failed: %s: run the migrations", error)
        message = "The database is not migrated for this release."
        raise ApiError(503, "schema_not_migrated", message) from None
    except SQLAlchemyError as error:
        logger.warning("readiness check failed: %s", error)
        raise database_unavailable() from None
    return Health()
